"""LoRA files: key names, the file formats (diffusers/PEFT, kohya, legacy attn-procs), export and
convert. May import core's top level and io/."""
