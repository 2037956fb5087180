"""`modelfleet-local --no-demo` starts the fleet the README's commands expect (the namespace
`ml-serving` with the model claim, the CRD, the operator) and applies nothing; its printed kubectl
command works when pasted, and Ctrl-C stops it and removes the state folder it created."""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


@pytest.mark.timeout(240)
def test_no_demo_starts_an_empty_fleet_with_the_readme_namespace(tmp_path: Path) -> None:
    state = tmp_path / "state"
    fleet = subprocess.Popen(
        [sys.executable, "-m", "modelfleet.local", "--no-demo", "--state-dir", str(state)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert fleet.stdout is not None
    seen: list[str] = []
    try:
        for line in fleet.stdout:  # up to "Serving until Ctrl-C.", or EOF if it fails
            seen.append(line)
            if line.startswith("Serving until Ctrl-C."):
                break
        out = "".join(seen)
        get = re.search(
            r"^  (\S+ --kubeconfig \S+) get modeldeployments,pods,services --namespace ml-serving$", out, re.MULTILINE
        )
        assert get, out
        assert re.search(
            r"^  \S+ --kubeconfig \S+ apply --namespace ml-serving -f /\S+/examples/cpu.yaml$", out, re.MULTILINE
        ), out
        kubectl = shlex.split(get.group(1))
        assert Path(kubectl[0]).is_absolute() and Path(kubectl[0]).is_file()
        bare = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}

        def pasted(*args: str) -> dict:
            result = subprocess.run(
                [*kubectl, *args, "-o", "json"], env=bare, capture_output=True, text=True, timeout=30
            )
            assert result.returncode == 0, result.stderr
            return dict(json.loads(result.stdout))

        assert pasted("get", "namespace", "ml-serving")["status"]["phase"] == "Active"
        claim = pasted("get", "persistentvolumeclaim", "modelfleet-models", "--namespace", "ml-serving")
        assert claim["status"]["phase"] == "Bound"
        assert pasted("get", "modeldeployments", "--all-namespaces")["items"] == []
        assert (state / "persistentvolumes" / "ml-serving" / "modelfleet-models" / "tiny.pt").is_file()
    finally:
        fleet.send_signal(signal.SIGINT)
        rest, _ = fleet.communicate(timeout=60)
    assert fleet.returncode == 0, out + rest
    assert f"removed the state folder {state}" in rest
    assert not state.exists()
