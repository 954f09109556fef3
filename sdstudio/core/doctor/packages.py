"""Installed library versions against the ranges sdstudio declares.

The ranges are read from the installed distribution's metadata (pyproject's `dependencies`, as pip
saw them), so there is one list of supported versions: pyproject.toml's.
"""

from __future__ import annotations

import sys
from importlib import metadata

from sdstudio.core.doctor.check import FAIL, OK, WARN, Check

CHECKED = ("diffusers", "transformers", "peft", "accelerate")


def declared_ranges() -> dict[str, str]:
    """{package: specifier} from sdstudio's installed metadata (no extras); {} when not installed."""
    from packaging.requirements import Requirement

    try:
        requires = metadata.requires("sdstudio") or []
    except metadata.PackageNotFoundError:
        return {}
    out = {}
    for line in requires:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            out[req.name.lower()] = str(req.specifier)
    return out


def python_range() -> str | None:
    try:
        return metadata.metadata("sdstudio").get("Requires-Python")
    except metadata.PackageNotFoundError:
        return None


def version_check(name: str, spec: str | None) -> Check:
    """One package: its installed version and whether the declared range contains it."""
    from packaging.specifiers import SpecifierSet

    try:
        installed = metadata.version(name)
    except metadata.PackageNotFoundError:
        return Check(name, FAIL, "not installed" + (f" (needs {spec})" if spec else ""),
                     f"pip install \"{name}{spec or ''}\"")
    if spec is None:
        return Check(name, WARN, f"{installed} (supported range unknown: sdstudio's metadata is missing)",
                     "install sdstudio (`pip install -e .` in a clone) so its dependency ranges can be checked")
    if SpecifierSet(spec).contains(installed, prereleases=True):
        return Check(name, OK, f"{installed} (supported: {spec})")
    return Check(name, FAIL, f"{installed}, outside the supported range {spec}", f"pip install \"{name}{spec}\"")


def package_checks() -> list[Check]:
    ranges = declared_ranges()
    return [version_check(name, ranges.get(name) if ranges else None) for name in CHECKED]


def python_version_check() -> Check:
    from packaging.specifiers import SpecifierSet

    version = ".".join(map(str, sys.version_info[:3]))
    spec = python_range()
    if spec and not SpecifierSet(spec).contains(version):
        return Check("python", FAIL, f"{version} at {sys.executable}, outside {spec}",
                     f"use a Python {spec} (e.g. `pipx install --python python3.11 sdstudio`)")
    return Check("python", OK, f"{version} at {sys.executable}" + (f" (supported: {spec})" if spec else ""))
