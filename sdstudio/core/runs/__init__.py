"""The run lifecycle, in one room: the run directory (`run_dir`), its lock and the one liveness
check (`lock`), commands and signals to a trainer (`control`), following a run from its files
(`follow`), the one-line overview of every run (`overview`), the queue (`queue`, `queue_runner`)
detached trainers (`detach`) and run names and paths (`naming`).

May import the shared vocabulary (config, errors, events, paths) and io/; never training/ at
(`training.launch` starts a trainer with the lock and the command reader), nor Textual.
"""
