"""Training: the trainer's lifecycle, the step loss, the example source and caches, checkpoint
state, validation samples and class images. May import core's top level, io/ and lora/."""
