"""Generation: sampling a base model with LoRAs, comparison runs and their contact sheets.
May import core's top level, io/ and lora/."""
