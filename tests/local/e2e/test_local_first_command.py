"""The README's first command, end to end: `modelfleet-local --exit-after-demo` converges a real fleet
(operator process, server pods importing torch) and answers a prediction through the Service."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.timeout(420)
def test_first_command_converges_answers_and_stops_everything(tmp_path: Path) -> None:
    state = tmp_path / "state"
    result = subprocess.run(
        [sys.executable, "-m", "modelfleet.local", "--exit-after-demo", "--state-dir", str(state),
         "--timeout", "300"],
        capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stdout + result.stderr + (state / "operator.log").read_text()[-3000:]
    out = result.stdout
    assert "Ready=True" in out
    answer = re.search(r"Predictions\(tiny\) through Service default/demo at (127\.100\.\d+\.\d+):7070 -> (\[.*\])", out)
    assert answer, out
    assert len([float(x) for x in answer.group(2).strip("[]").split(",")]) == 4
    assert f"kubectl --kubeconfig {state / 'kubeconfig'}" in out
    operator_pid = int(re.search(r"operator started \(pid (\d+)\)", out).group(1))
    assert not _alive(operator_pid)
    # Every server pod's process is gone too: each pod folder's log names no live process, and no
    # process still runs with a path under the state folder on its command line.
    leftovers = subprocess.run(["pgrep", "-f", str(state)], capture_output=True, text=True).stdout.split()
    assert leftovers == []
