"""Subject masks and crop boxes of a dataset: where they are found, how they are read and written."""
