"""`sdstudio doctor`: the facts a GPU box is first asked about, each with a verdict.

Each check returns `Check`s; `run_checks` gathers them in display order. A `fail` is something that
blocks training (the command exits non-zero and says what to do); `warn` is worth knowing but
training still runs; `info` is a plain fact. Checks never raise: a check that breaks reports itself
as failed with the error, so one broken library does not hide the other facts.
"""

from __future__ import annotations

from sdstudio.core.doctor.check import FAIL, Check, guarded

__all__ = ["Check", "run_checks", "blocking"]


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
