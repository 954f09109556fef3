"""Subject masks and crop boxes of a dataset: where they are found, how they are read and written.

Modules: `source` (mask precedence, reading, coverage), `crops` (crop boxes in metadata.jsonl or
crops.jsonl), `subject_crop` (a box around the subject at an aspect), `report` (what `dataset check`
says about masks and crops), `maskers` (pick a masker by spec), `clipseg` (CLIPSeg through
transformers), `making` (a mask-making pass: plan, run, write, undo), `cropping` (a crop-to-subject
pass and its undo).
"""
