"""Action dispatch is exhaustive and mypy proves it: a `match` over the Action union that leaves a
kind out fails type checking at its `assert_never`, and the same match with every kind passes.
operator/.../dispatch.py has this shape; the project's strict mypy run checks it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

SNIPPET = """
from typing import assert_never

from modelfleet.operator.actions import Action, Register, Scale, SetDefault, Unregister


def handle(action: Action) -> str:
    match action:
        case Register():
            return "register"
        case Scale():
            return "scale"
        case SetDefault():
            return "set_default"
{unregister}
        case _:
            assert_never(action)
"""
UNREGISTER = '''        case Unregister():
            return "unregister"'''


def _mypy(tmp_path: Path, source: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "dispatch_snippet.py"
    path.write_text(source)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--no-incremental",
            "--follow-imports=silent",
            "--config-file=",
            "--cache-dir",
            str(tmp_path / "cache"),
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env={"MYPYPATH": f"{ROOT / 'operator'}:{ROOT / 'protos'}", "PATH": "/usr/bin:/bin"},
    )


def test_a_match_that_leaves_out_an_action_kind_fails_type_checking(tmp_path: Path) -> None:
    checked = _mypy(tmp_path, SNIPPET.format(unregister="").replace("\n\n        case _", "\n        case _"))
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert 'Argument 1 to "assert_never" has incompatible type "Unregister"' in checked.stdout, checked.stdout


def test_the_match_with_every_action_kind_type_checks(tmp_path: Path) -> None:
    checked = _mypy(tmp_path, SNIPPET.format(unregister=UNREGISTER))
    assert checked.returncode == 0, checked.stdout + checked.stderr
