"""`sdstudio doctor`: the facts a GPU box is first asked about, each with a verdict.

Each check returns `Check`s; `run_checks` gathers them in display order. A `fail` is something that
blocks training (the command exits non-zero and says what to do); `warn` is worth knowing but
training still runs; `info` is a plain fact. Checks never raise: a check that breaks reports itself
as failed with the error, so one broken library does not hide the other facts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

OK, WARN, FAIL, INFO = "ok", "warn", "fail", "info"


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | warn | fail | info
    value: str  # the fact, in a few words
    advice: str = ""  # what to do, when status is warn or fail

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def guarded(name: str, fn: Callable[[], list[Check]]) -> list[Check]:
    """Run one check; an exception becomes a failed check naming it."""
    try:
        return fn()
    except Exception as exc:  # noqa: BLE001 - the doctor reports, it does not crash
        return [Check(name, FAIL, f"the check itself failed: {type(exc).__name__}: {exc}",
                      "reinstall sdstudio and its dependencies (`pip install --force-reinstall sdstudio`)")]


def run_checks(load_demo: bool = True) -> list[Check]:
    """Every check, in display order (the terminal's image support is added by the command, which
    may import the TUI)."""
    from sdstudio.core.doctor import files, packages, system

    checks: list[Check] = []
    checks += guarded("python", system.python_check)
    checks += guarded("torch", system.torch_check)
    checks += guarded("gpu", system.gpu_checks)
    checks += guarded("packages", packages.package_checks)
    checks += guarded("home", files.home_checks)
    checks += guarded("models folder", files.models_folder_checks)
    if load_demo:
        checks += guarded("demo model", files.demo_model_check)
    return checks


def blocking(checks: list[Check]) -> list[Check]:
    return [c for c in checks if c.status == FAIL]
