"""File plumbing: atomic writes, the safetensors header and streaming, safe loading of pickles,
LDM <-> diffusers key layouts. Imports only core.errors (and the standard library, torch lazily)."""
