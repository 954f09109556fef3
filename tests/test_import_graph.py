"""The package layout holds: no import cycle between sdstudio's packages, no arrow from the engine
(or the demo world) to the TUI, the engine never imports Textual, and importing it stays cheap.

The graph is built from the source (every `import`, also the lazy ones inside functions), so an
import that only runs on some path still counts.
"""

from __future__ import annotations

import ast
import importlib.util
import pkgutil
import subprocess
import sys
from pathlib import Path

import sdstudio

ROOT = Path(sdstudio.__file__).parent
PACKAGES = ("core.training", "core.lora", "core.generation", "core.merge", "core.io", "core.runs")


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every sdstudio module a source file names in an import statement."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            # `from sdstudio.core.io import atomic` names the module sdstudio.core.io.atomic
            for alias in node.names:
                if importlib.util.find_spec(node.module) and (ROOT.parent / (node.module + "." + alias.name).replace(".", "/")).with_suffix(".py").exists():
                    found.add(f"{node.module}.{alias.name}")
    return {m for m in found if m == "textual" or m.startswith(("sdstudio", "textual"))}


def graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p) for p in ROOT.rglob("*.py")}


def node_of(module: str) -> str:
    """The unit a cycle is judged on: each capability package, each top-level core module,
    the demo world, the TUI, the commands."""
    name = module.removeprefix("sdstudio.")
    for pkg in PACKAGES:
        if name == pkg or name.startswith(pkg + "."):
            return pkg
    for pkg in ("demo", "tui", "commands"):
        if name == pkg or name.startswith(pkg + "."):
            return pkg
    return name


def package_graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for src, targets in graph().items():
        a = node_of(src)
        for t in targets:
            if t.startswith("sdstudio"):
                b = node_of(t)
                if a != b and b not in ("", "sdstudio") and not (a.startswith("core.") and b == "core"):
                    edges.setdefault(a, set()).add(b)
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(edges.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (cycle := visit(m)):
                return cycle
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(edges):
        if n not in state and (cycle := visit(n)):
            return cycle
    return None


def test_find_cycle_sees_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}}) is None


def test_no_import_cycle_between_packages():
    edges = package_graph()
    assert "core.training" in edges and "core.io" in edges["core.training"]  # the graph is real
    assert find_cycle(edges) is None


def test_no_import_cycle_between_modules():
    """Not even inside a package (io/ldm_layout and io/sgm_layout once pointed at each other)."""
    edges = {src: {t for t in targets if t.startswith("sdstudio") and t != src} for src, targets in graph().items()}
    assert find_cycle(edges) is None


def test_engine_and_demo_never_import_the_tui_or_textual():
    offenders = sorted(f"{src} -> {t}" for src, targets in graph().items()
                       if src.startswith(("sdstudio.core", "sdstudio.demo"))
                       for t in targets if t.startswith(("sdstudio.tui", "textual")))
    assert offenders == []


def test_importing_every_core_module_loads_neither_textual_nor_torch():
    names = [m.name for m in pkgutil.walk_packages([str(ROOT / "core")], prefix="sdstudio.core.")]
    assert len(names) > 30
    code = ("import importlib, sys\n"
            f"for n in {names!r}: importlib.import_module(n)\n"
            "print(sorted(m for m in ('textual', 'torch', 'diffusers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
