"""Child processes the local fleet starts outside pods (the operator, the demo model builder).

Each runs in its own process group with its output in a log file, and is stopped by its process
group id: SIGTERM, then SIGKILL after a grace period. Only processes started here are ever signalled.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path


class ChildProcess:
    def __init__(
        self, argv: Sequence[str], *, log_path: Path, env: Mapping[str, str] | None = None, cwd: Path | None = None
    ) -> None:
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log_file:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def wait(self) -> int:
        assert self.process is not None
        return await self.process.wait()

    async def stop(self, grace_s: float = 10.0) -> int | None:
        """SIGTERM the process group, SIGKILL it after `grace_s`; the exit code (None if never started)."""
        process = self.process
        if process is None:
            return None
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), grace_s)
            except TimeoutError:
                pass
        # Anything left in the group (the process's own children) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        return await process.wait()

    def tail(self, lines: int = 20) -> str:
        if not self.log_path.exists():
            return ""
        return "".join(self.log_path.read_text(errors="replace").splitlines(keepends=True)[-lines:])


async def run_to_end(argv: Sequence[str], *, log_path: Path, timeout_s: float, cwd: Path | None = None) -> int:
    """Run a command to completion (bounded); its exit code."""
    child = ChildProcess(argv, log_path=log_path, cwd=cwd)
    await child.start()
    try:
        return await asyncio.wait_for(child.wait(), timeout_s)
    except TimeoutError:
        await child.stop(grace_s=2)
        raise
