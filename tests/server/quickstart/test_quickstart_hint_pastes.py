"""`python -m modelfleet.server.quickstart` prints a grpcurl command that works when pasted into a shell
that has neither the venv activated nor `.venv/bin` on PATH: grpcurl is named by absolute path."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.timeout(180)
def test_the_printed_grpcurl_command_answers_when_pasted_into_a_bare_shell(tmp_path: Path) -> None:
    quickstart = subprocess.Popen(
        [sys.executable, "-m", "modelfleet.server.quickstart", "--workdir", str(tmp_path / "work")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert quickstart.stdout is not None
    seen: list[str] = []
    try:
        for line in quickstart.stdout:  # ends at "Serving on", or at EOF if the quickstart fails
            seen.append(line)
            if line.startswith("Serving on"):
                break
        printed = "".join(seen)
        command = re.search(r"Try it yourself \(paste as printed\):\n  (.+)\n", printed)
        assert command, printed
        grpcurl = command.group(1).split()[0]
        assert Path(grpcurl).is_absolute() and Path(grpcurl).is_file(), grpcurl
        bare = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"}
        pasted = subprocess.run(["bash", "-c", command.group(1)], env=bare, capture_output=True, text=True, timeout=60)
        assert pasted.returncode == 0, pasted.stderr
        assert '"prediction"' in pasted.stdout
    finally:
        os.kill(quickstart.pid, signal.SIGINT)
        rest, _ = quickstart.communicate(timeout=90)
    assert quickstart.returncode == 0, "".join(seen) + rest
