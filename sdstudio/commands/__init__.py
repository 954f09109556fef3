"""Subcommands of the `sdstudio` CLI, one module each."""
