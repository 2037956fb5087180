"""Smoke of the operator benchmark (benchmarks/operator.py --quick): the one command runs on the local
fleet (one server pod, ten replicas-0 ModelDeployments, the real operator process) and prints its three
tables with every row measured and no failure. The full run is by hand (see benchmarks/README.md).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NUMBER = r"\d+(?:\.\d+)?"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_quick_run_prints_the_three_tables_with_every_row_measured(tmp_path: Path) -> None:
    command = [sys.executable, str(REPO / "benchmarks" / "operator.py"), "--quick", "--workdir", str(tmp_path / "work")]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO) as bench:
        try:
            stdout, stderr = bench.communicate(timeout=220)
        except subprocess.TimeoutExpired:
            bench.terminate()  # SIGTERM: the benchmark stops the operator and every pod before it exits
            stdout, stderr = bench.communicate(timeout=60)
            pytest.fail(f"operator benchmark smoke ran past 220 s\n{stdout}\n{stderr[-3000:]}")
    assert bench.returncode == 0, stdout + stderr[-3000:]
    assert "FAILED" not in stdout, stdout

    # (a) both timed changes on the 1-pod fleet, each confirmed by asking the pod itself.
    for change in ("add 2.0 + default 1.0->2.0", "default 2.0->1.0 (loaded)"):
        row = re.search(
            rf"^1\s+{re.escape(change)}\s+({NUMBER})\s+yes\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}/\d+$", stdout, re.M
        )
        assert row is not None, stdout
        assert 0 < float(row.group(1)) < 120
    assert re.search(rf"model load time, apart .* median {NUMBER} s", stdout), stdout

    # (b) ten resources handled, with the operator's CPU and RSS read from /proc.
    row = re.search(rf"^10\s+(\d+)(\s+{NUMBER}){{8}}\s+{NUMBER}/\d+$", stdout, re.M)
    assert row is not None, stdout
    assert int(row.group(1)) <= 10
    rss_handled = float(row.group(0).split()[5])
    assert 20 < rss_handled < 2000  # a Python process with kopf: tens of MiB, not zero, not garbage

    # (c) one idle window per scenario, each over at least two resync intervals.
    for scenario in ("1 pods, converged", "10 resources, replicas 0"):
        row = re.search(rf"^{re.escape(scenario)}\s+({NUMBER})\s+({NUMBER})\s+(\d+)\s+{NUMBER}", stdout, re.M)
        assert row is not None, stdout
        assert float(row.group(2)) >= 2.0
        assert row.group(3) == "0", stdout  # no API write while nothing changes
    assert "targets" in stdout and "0 writes per idle resync: PASS" in stdout
