"""The command line itself: every command is there, and a command that cannot load says so."""

from __future__ import annotations

import sys

import pytest

from sdstudio.cli import COMMANDS, build_parser


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
