"""Start a server as its own process group, and stop exactly that group, by PID.

Used by systems.py and torchserve/ts_ctl.py. Each server gets a new session (so its children, e.g.
TorchServe's java frontend and python workers, share its process group) and is stopped with
SIGTERM to that group, then SIGKILL after a grace period. Nothing else on the machine is touched.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import procstats


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def spawn(
    command: Sequence[str], *, cwd: Path, log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Run `command` in a new session with stdout+stderr appended to `log`."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            list(command),
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _group_alive(pgid: int) -> bool:
    """Whether any process of the group still runs (zombies have exited for our purposes)."""
    with os.scandir("/proc") as entries:  # closed on the early return too (ResourceWarning otherwise)
        for entry in entries:
            if not entry.name.isdigit():
                continue
            try:
                fields = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":  # fields: state ppid pgrp ...
                return True
    return False


def stop_group(leader: int, *, process: subprocess.Popen[bytes] | None = None, grace_s: float = 30.0) -> None:
    """SIGTERM the process group led by PID `leader`, SIGKILL what is left after `grace_s`.

    `process`, when we started the leader, is polled so that it is reaped.

    Descendants that left the group (none of ours should) are remembered with their start time
    and get the same signals, so a stop leaves no worker behind and never hits a reused PID.
    """
    pgid = leader
    strays = {}
    if _identity(leader) is not None:
        for pid in procstats.tree_pids(leader):
            identity = _identity(pid)
            if identity is not None and identity[0] != pgid:
                strays[pid] = identity
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        if _group_alive(pgid):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                pass
        for pid, identity in strays.items():
            if _identity(pid) == identity:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if process is not None:
                process.poll()
            if not _group_alive(pgid) and not any(_identity(p) == i for p, i in strays.items()):
                return
            time.sleep(0.05)
    if process is not None:
        process.poll()


def _identity(pid: int) -> tuple[int, str] | None:
    """(process group, start time) of a live, non-zombie process; None when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    if fields[0] == "Z":
        return None
    return int(fields[2]), fields[19]  # pgrp (field 5), starttime (field 22)
