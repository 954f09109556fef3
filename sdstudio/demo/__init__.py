"""The demo world, not the engine: the shapes it draws, the picture judge, tiny-model builders and
the demo evaluation. Used by tests, tools and benchmarks; may import core, never the TUI."""
