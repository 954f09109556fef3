"""One doctor check's result: a fact and its verdict (see core/doctor/__init__.py)."""

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
