"""The engine never imports Textual, and importing it stays cheap (no torch)."""

from __future__ import annotations

import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import sdstudio.core

CORE = Path(sdstudio.core.__file__).parent


def test_core_sources_do_not_import_textual():
    offenders = [p.name for p in CORE.glob("*.py")
                 if re.search(r"^\s*(from|import)\s+textual", p.read_text(), flags=re.M)]
    assert offenders == []


def test_importing_every_core_module_loads_neither_textual_nor_torch():
    names = [f"sdstudio.core.{m.name}" for m in pkgutil.iter_modules([str(CORE)])]
    code = ("import importlib, sys\n"
            f"for n in {names!r}: importlib.import_module(n)\n"
            "print(sorted(m for m in ('textual', 'torch', 'diffusers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
