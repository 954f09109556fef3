"""Captioning a dataset folder: where captions live, the captioner families, the pass that
writes them and the log that undoes it.

Modules: `storage` (metadata.jsonl / .txt / .caption, read and written atomically), `compose`
(trigger word, prefix, suffix, word limit, which images a mode touches), `log` (captions.log.jsonl
and undo), `loading` (resolve a model, pick its family, device and dtype), `blip`, `florence`,
`vlm` (the transformers captioners), `runner` (a pass: plan, caption in batches with progress,
apply), `review` (a person's accept / edit / reject decisions before anything is written). torch and transformers are imported only inside the functions
that run a model.
"""
