"""The README's first command, end to end: `modelfleet-local --exit-after-demo` converges a real fleet
(operator process, server pods importing torch) on `examples/cpu.yaml` in the namespace `ml-serving`,
answers a prediction through the Service, prints hints that work when pasted, stops everything and
removes its state folder."""

from __future__ import annotations

import os
import re
import shlex
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


def _failure(result: subprocess.CompletedProcess[str], state: Path) -> str:
    """The fleet prints the failing pods' log tails itself; the operator's log is kept in the state folder."""
    operator_log = state / "operator.log"
    tail = operator_log.read_text(errors="replace")[-3000:] if operator_log.is_file() else "(no operator log)"
    return f"{result.stdout}\n{result.stderr}\n--- operator.log ---\n{tail}"


@pytest.mark.timeout(420)
def test_first_command_converges_answers_and_stops_everything(tmp_path: Path) -> None:
    state = tmp_path / "state"
    result = subprocess.run(
        [sys.executable, "-m", "modelfleet.local", "--exit-after-demo", "--state-dir", str(state), "--timeout", "300"],
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert result.returncode == 0, _failure(result, state)
    out = result.stdout
    assert "Ready=True" in out
    assert "applied ModelDeployment ml-serving/cpu-tiny from " in out
    answer = re.search(
        r"Predictions\(tiny\) through Service ml-serving/cpu-tiny at (127\.100\.\d+\.\d+):7070 "
        r"-> (\[.*\])",
        out,
    )
    assert answer, out
    assert len([float(x) for x in answer.group(2).strip("[]").split(",")]) == 4
    # Every hint names its tool by an absolute path that exists (nothing relies on PATH).
    kubectl = re.search(
        r"^  (\S+) --kubeconfig (\S+) get modeldeployments,pods,services --namespace ml-serving$", out, re.MULTILINE
    )
    grpcurl = re.search(
        rf"^  (\S+) -plaintext .* {re.escape(answer.group(1))}:7070 grpc.health.v1.Health/Check$", out, re.MULTILINE
    )
    assert kubectl and grpcurl, out
    for tool in (kubectl.group(1), grpcurl.group(1)):
        assert Path(tool).is_absolute() and Path(tool).is_file(), tool
    assert kubectl.group(2) == shlex.quote(str(state / "kubeconfig"))
    export = re.search(r"^  export KUBECONFIG=\S+ PATH=(\S+):\"\$PATH\"$", out, re.MULTILINE)
    assert export, out
    assert all(Path(folder).is_dir() for folder in export.group(1).split(":"))
    operator_pid = int(re.search(r"operator started \(pid (\d+)\)", out).group(1))
    assert not _alive(operator_pid)
    # Every server pod's process is gone too: no process still runs with a path under the state folder
    # on its command line, and the state folder itself is gone (this run created it).
    leftovers = subprocess.run(["pgrep", "-f", str(state)], capture_output=True, text=True).stdout.split()
    assert leftovers == []
    assert f"state folder: {state} (removed at exit; --keep-state keeps it)" in out
    assert not state.exists()
