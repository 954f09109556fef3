"""Merging: model sources, streaming outputs, the merge methods and the live preview.
May import core's top level, io/ and lora/."""
