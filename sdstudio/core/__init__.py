"""The engine: data, models, training, runs, LoRA formats, generation, merging.

Never imports Textual; torch and diffusers are imported lazily inside functions so
that `import sdstudio.core.<module>` stays cheap for the CLI and the TUI.
"""
