"""One module per studio screen."""
