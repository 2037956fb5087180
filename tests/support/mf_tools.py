"""Absolute paths of the programs the tests run (on the path as `mf_tools`).

The README's test command is `.venv/bin/python -m pytest -q` with no activated venv and without
.tools/bin on PATH, so no test looks a program up on PATH: console scripts and pip-installed binaries
(grpcurl, hadolint) sit next to `sys.executable`, kubectl and helm where scripts/setup.sh puts them.
A PATH lookup would also pick whatever kubectl the machine happens to have (an older one in /usr/bin).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TOOLS_BIN = REPO / ".tools" / "bin"
"""kubectl and helm, installed by scripts/install-k8s-tools.sh (called by scripts/setup.sh)."""
VENV_BIN = Path(sys.executable).parent
"""Not resolved: .venv/bin/python is a link to the base interpreter, whose folder holds no scripts."""


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def console_script(name: str) -> str:
    """A console script of this interpreter's environment (`modelfleet-operator`, `grpcurl`, ...)."""
    path = VENV_BIN / name
    if not _executable(path):
        raise FileNotFoundError(f"{name} is not next to {sys.executable}: run `bash scripts/setup.sh`")
    return str(path)


def tool_path(name: str) -> str:
    """`name` from .tools/bin (kubectl, helm), else from next to `sys.executable`; never from PATH."""
    for folder in (TOOLS_BIN, VENV_BIN):
        if _executable(folder / name):
            return str(folder / name)
    raise FileNotFoundError(
        f"{name} is in neither {TOOLS_BIN} nor {VENV_BIN}: run `bash scripts/setup.sh` "
        "(kubectl and helm alone: `bash scripts/install-k8s-tools.sh .tools/bin`)"
    )
