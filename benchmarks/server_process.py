"""One `python -m modelfleet.server` child with token files, for the fuzzer and the soak.

fuzz.py and soak.py (and their tests) start the real server as a process, as production runs it:
token auth on (inference and management token files), the model API on, ports picked by the
server (`127.0.0.1:0`) and read from its log. Stopped through its own process group by PID
(processes.stop_group); nothing else on the machine is touched. Reads memory from /proc.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import processes

PORT_LINE = re.compile(r"ModelFleet (inference|management) on 127\.0\.0\.1:(\d+)")
START_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Tokens:
    inference: str
    management: str

    def metadata(self, scope: str) -> tuple[tuple[str, str], ...]:
        token = self.inference if scope == "inference" else self.management
        return (("authorization", f"Bearer {token}"),)


def read_kib(pid: int, field: str) -> int:
    """A `/proc/<pid>/status` field in KiB (VmRSS, VmHWM); 0 when the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


class ServerProcess:
    """A started server: its ports, tokens, log and memory; `stop()` ends its process group."""

    def __init__(
        self,
        workdir: Path,
        model_store: Path,
        *,
        status_codes: str = "conventional",
        extra: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.log_path = workdir / "server.log"
        self.tokens = Tokens(secrets.token_urlsafe(24), secrets.token_urlsafe(24))
        files = {}
        for scope in ("inference", "management"):
            path = workdir / f"{scope}.token"
            path.touch(mode=0o600)
            path.write_text(getattr(self.tokens, scope) + "\n")
            files[scope] = path
        command = [
            sys.executable, "-m", "modelfleet.server",
            "--inference-address", "127.0.0.1:0", "--management-address", "127.0.0.1:0",
            "--model-store", str(model_store), "--enable-model-api",
            "--inference-token-file", str(files["inference"]), "--management-token-file", str(files["management"]),
            "--key-file", str(workdir / "key_file.json"), "--status-codes", status_codes,
            "--log-level", "INFO", "--drain-delay", "0", "--grace", "5", *extra,
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] = processes.spawn(
            command, cwd=workdir, log=self.log_path, env={**os.environ, **(env or {})}
        )
        self.ports: dict[str, int] = {}

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def inference(self) -> str:
        return f"127.0.0.1:{self.ports['inference']}"

    @property
    def management(self) -> str:
        return f"127.0.0.1:{self.ports['management']}"

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_started(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Poll the log until both ports are announced (the server binds port 0 itself; INFO lines)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for kind, port in PORT_LINE.findall(self.log()):
                self.ports[kind] = int(port)
            if len(self.ports) == 2:
                return
            if not self.alive():
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log()[-3000:]}")
            time.sleep(0.05)
        raise RuntimeError(f"server did not announce its ports within {timeout_s:g} s:\n{self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def rss_kib(self) -> int:
        return read_kib(self.pid, "VmRSS")

    def hwm_kib(self) -> int:
        """Peak RSS since start (VmHWM)."""
        return read_kib(self.pid, "VmHWM")

    def stop(self) -> None:
        processes.stop_group(self.pid, process=self.process, grace_s=15.0)
        self.process.wait(timeout=10)  # reap it: the group is gone, only the leader's status is left
