"""The command line itself: every command is there, and a command that cannot load says so; a
closed pipe, a runs listing with queue entries, a dataset folder without images."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from sdstudio.cli import COMMANDS, build_parser, main


def test_every_command_registers() -> None:
    choices = next(a for a in build_parser()._actions if a.dest == "command").choices
    assert set(COMMANDS) <= set(choices)


def test_a_command_module_that_fails_to_import_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sdstudio.commands.convert", None)  # import now raises ImportError
    with pytest.raises(SystemExit) as exc:
        build_parser()
    assert "'convert' command" in str(exc.value) and "sdstudio.commands.convert" in str(exc.value)


def test_convert_and_export_share_the_overwrite_flag() -> None:
    parser = build_parser()
    for argv in (["convert", "x.bin", "--overwrite"], ["export", "run", "--overwrite"],
                 ["merge", "a", "b", "-o", "o", "--overwrite"]):
        assert parser.parse_args(argv).overwrite is True


def test_runs_into_a_pipe_closed_early_ends_quietly(runs_root: Path) -> None:
    """`sdstudio runs | head -1` with many runs: no BrokenPipeError traceback, the exit of a SIGPIPE."""
    import subprocess
    import sys

    from test_tui_fixtures import make_run

    make_run(runs_root, "one-run")
    proc = subprocess.Popen([sys.executable, "-m", "sdstudio", "runs"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before anything was written
    err = proc.stderr.read().decode()
    assert "BrokenPipeError" not in err and err == ""
    assert proc.wait(timeout=60) == 141


def test_runs_lists_waiting_queue_entries_also_when_their_run_folder_exists(runs_root: Path, tmp_path: Path,
                                                                             capsys) -> None:
    from sdstudio.core.runs import queue as run_queue
    from test_tui_fixtures import make_dataset, make_run

    cut = make_run(runs_root, "cut-off", checkpoints=(10,), state="stopped")
    config = tmp_path / "night.toml"
    config.write_text(f'pretrained_model_name_or_path = "demo"\ntrain_data_dir = "{make_dataset(tmp_path / "data")}"\n')
    for name in ("cut-off", "tonight"):
        run_queue.add(runs_root, str(config), {"run_name": name})
    with run_queue.edit(runs_root) as queue:  # what a runner that died leaves: waiting, to be resumed
        queue.items[0].resume = True
    assert main(["runs"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert "queued" in rows["tonight"] and "queued (resume)" in rows["cut-off"], rows
    assert cut.status()["state"] == "stopped"


def test_dataset_check_on_a_folder_without_images_says_so(tmp_path: Path, capsys) -> None:
    (tmp_path / "notes.md").write_text("no pictures here")
    assert main(["dataset", "check", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"{tmp_path}: no images, nothing to train on. Put pictures there (" in out and ".png" in out
