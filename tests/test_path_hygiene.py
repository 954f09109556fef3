"""Nothing in the repository names a folder of one particular machine: a fresh clone anywhere must
work, so a committed absolute path (a home folder, a CI box's work folder, a temp folder) is a bug."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Written with character classes so that this file does not match itself.
MACHINE_PATH = re.compile(
    r"(?<![\w.~%$-])/(?:wor[k]|roo[t]|tm[p]|mn[t]|hom[e]/[\w.-]+|User[s]/[\w.-]+|var/folder[s]|privat[e]/tmp)/"
    r"|\b[A-Za-z]:[\\/]+(?:User[s]|Document[s] and Settings)[\\/]",
    re.IGNORECASE,
)
SKIP_DIRS = {".git", "__pycache__", ".pytest_cache", "build", "dist"}


def repository_files(root: Path) -> list[Path]:
    """Files git tracks (or would track: new, not ignored); every file when this is not a git checkout."""
    if (root / ".git").exists() and shutil.which("git"):
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                             capture_output=True, check=True).stdout
        return [root / name for name in out.decode().split("\0") if name and (root / name).is_file()]
    return [p for p in root.rglob("*") if p.is_file() and not SKIP_DIRS.intersection(p.relative_to(root).parts)
            and not any(part.endswith(".egg-info") for part in p.parts)]


def machine_paths(files: list[Path], root: Path) -> list[str]:
    """`file:line: text` for each text line naming an absolute machine path (binary files are skipped)."""
    found = []
    for path in files:
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue
        for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
            if MACHINE_PATH.search(line):
                found.append(f"{path.relative_to(root).as_posix()}:{number}: {line.strip()[:120]}")
    return found


def test_no_file_names_an_absolute_machine_path() -> None:
    files = repository_files(REPO)
    assert any(p.name == "pyproject.toml" for p in files)  # the scan sees the repository
    found = machine_paths(files, REPO)
    assert not found, "absolute paths of one machine (use paths relative to the repository):\n" + "\n".join(found)


def test_the_scan_catches_machine_paths_and_leaves_ordinary_text(tmp_path: Path) -> None:
    bad = {"a.py": 'SD15 = Path("/wor' 'k/shared/sd15-config")\n', "b.md": "see /hom" "e/alice/models\n",
           "c.toml": 'out = "C:\\\\Use' 'rs\\\\bob\\\\runs"\n', "d.sh": "cp x /roo" "t/.cache/y\n",
           "e.py": "open('/tm" "p/sdstudio-x')\n", "f.txt": "/User" "s/carol/data\n"}
    good = {"g.py": 'url = "https://example.com/home/page/"\nrel = "../shared/seed-data/"\n',
            "h.md": "models/demo/unet, ~/.config/sdstudio/config.toml, $TMPDIR/x\n", "i.bin": "\0/wor" "k/x\n"}
    for name, text in {**bad, **good}.items():
        (tmp_path / name).write_text(text)
    found = machine_paths(sorted(tmp_path.iterdir()), tmp_path)
    assert sorted(line.split(":")[0] for line in found) == sorted(bad)
