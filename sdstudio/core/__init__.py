"""The engine: config, models, runs, dataset, events, errors and paths (the shared vocabulary), and
the capability packages training/, lora/, generation/, merge/ and io/.

Never imports Textual or sdstudio.tui; torch and diffusers are imported lazily inside functions so
that `import sdstudio.core.<module>` stays cheap for the CLI and the TUI.
"""
