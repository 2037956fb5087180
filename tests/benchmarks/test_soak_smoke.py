"""Smoke of the soak benchmark (benchmarks/soak.py): seconds of load and a few cycles, its table, exit 0.

The soak itself (10 minutes, 1,000 cycles) is run by hand, never in CI; see benchmarks/README.md.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.mark.slow
def test_a_short_soak_prints_its_table_with_zero_errors_and_exits_0(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(BENCH / "soak.py"),
            "--minutes",
            "0.05",
            "--cycles",
            "5",
            "--sample-s",
            "0.5",
            "--concurrency",
            "8",
            "--workdir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert any(line.startswith("load: calls / errors") and line.endswith("/ 0") for line in lines), lines
    assert any(line.startswith("cycles: count / errors") and line.endswith("5 / 0") for line in lines), lines
    for part in (
        "load: RSS start MiB",
        "load: RSS peak MiB",
        "load: RSS end MiB",
        "load: RSS slope MiB/min",
        "cycles: RSS before MiB",
        "cycles: RSS after MiB",
    ):
        assert any(line.startswith(part) for line in lines), part
