"""One container of a local pod: its process, probes, restarts and reported state.

The pod worker (kubelet.py) owns one ContainerRunner per container. run() starts the process built
by containers.build(), runs the startup probe and then liveness and readiness with their periods and
thresholds, restarts the process when it exits (restartPolicy) or fails liveness or startup, with the
kubelet's exponential back-off (10 s doubling to 300 s, reset after 10 minutes of running; times scaled
by `period_scale`), and reports every change through `on_change`. `before_start` runs before every
start (the pod worker checks the pod's address there); `pod_ip` is read at each probe, because the
worker may move the pod to a new address between starts. Processes run in their own process
group; stop() sends SIGTERM to the group and SIGKILL after the grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelfleet.local.apistore import now_rfc3339
from modelfleet.local.apitypes import JSON
from modelfleet.local.containers import ContainerConfigError, ProcessSpec
from modelfleet.local.probes import probe_once

log = logging.getLogger(__name__)

BACKOFF_START_S = 10.0
BACKOFF_MAX_S = 300.0
BACKOFF_RESET_S = 600.0
CONFIG_RETRY_S = 2.0


@dataclass
class ContainerState:
    """What the pod status says about a container (containerStatuses[])."""

    state: JSON = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: JSON = field(default_factory=dict)
    restart_count: int = 0
    ready: bool = False
    started: bool = False
    pid: int | None = None


class ContainerRunner:
    def __init__(
        self,
        container: JSON,
        *,
        build: Callable[[JSON], ProcessSpec],
        build_exec: Callable[[list[str]], ProcessSpec],
        pod_ip: Callable[[], str],
        log_path: Path,
        restart_policy: str,
        grace_s: float,
        period_scale: float,
        on_change: Callable[[], None],
        before_start: Callable[[JSON], Awaitable[None]] | None = None,
    ) -> None:
        self.container = container
        self.name = str(container["name"])
        self.status = ContainerState()
        self._build = build
        self._build_exec = build_exec
        self._pod_ip = pod_ip
        self._log_path = log_path
        self._restart_policy = restart_policy
        self._grace_s = grace_s
        self._scale = period_scale
        self._on_change = on_change
        self._before_start = before_start
        self._stopping = asyncio.Event()
        self._process: asyncio.subprocess.Process | None = None
        self.finished = False

    @property
    def running(self) -> bool:
        """Whether this container's process is alive now (not waiting, backing off or done)."""
        return self._process is not None and self._process.returncode is None

    # ---- reporting ---------------------------------------------------------------------------
    def _set(self, **changes: Any) -> None:
        for key, value in changes.items():
            setattr(self.status, key, value)
        self._on_change()

    def status_entry(self, image: str) -> JSON:
        entry: JSON = {
            "name": self.name,
            "image": image,
            "imageID": "",
            "ready": self.status.ready,
            "started": self.status.started,
            "restartCount": self.status.restart_count,
            "state": self.status.state,
        }
        if self.status.pid is not None:
            entry["containerID"] = f"local://{self.status.pid}"
        if self.status.last_state:
            entry["lastState"] = self.status.last_state
        return entry

    # ---- lifecycle ---------------------------------------------------------------------------
    async def run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            if self._before_start is not None:
                await self._before_start(self.container)  # e.g. move the pod off an address in use
            try:
                spec = self._build(self.container)
            except ContainerConfigError as exc:
                if exc.reason == "StartError":
                    self._terminated(128, "StartError", exc.message, now_rfc3339())
                    if not await self._back_off(failures := failures + 1):
                        return
                    continue
                self._set(state={"waiting": {"reason": exc.reason, "message": exc.message}})
                await self._sleep(CONFIG_RETRY_S * self._scale)
                continue
            started_at, started_clock = now_rfc3339(), time.monotonic()
            code, reason = await self._run_once(spec, started_at)
            if self._stopping.is_set():
                return
            self._terminated(code, reason, "", started_at)
            if time.monotonic() - started_clock > BACKOFF_RESET_S:
                failures = 0
            if self._restart_policy == "Never" or (self._restart_policy == "OnFailure" and code == 0):
                self.finished = True
                self._on_change()
                return
            failures += 1
            if not await self._back_off(failures):
                return

    def _terminated(self, code: int, reason: str, message: str, started_at: str) -> None:
        terminated: JSON = {"exitCode": code, "reason": reason, "startedAt": started_at, "finishedAt": now_rfc3339()}
        if message:
            terminated["message"] = message
        self._set(
            state={"terminated": terminated},
            last_state={"terminated": terminated},
            ready=False,
            started=False,
            pid=None,
        )

    async def _back_off(self, failures: int) -> bool:
        """Wait out the restart back-off (CrashLoopBackOff); False when stopped meanwhile."""
        delay = min(BACKOFF_START_S * 2 ** (failures - 1), BACKOFF_MAX_S) * self._scale
        self._set(
            state={
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off {delay:.1f}s restarting failed container={self.name}",
                }
            },
            restart_count=self.status.restart_count + 1,
        )
        await self._sleep(delay)
        return not self._stopping.is_set()

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _run_once(self, spec: ProcessSpec, started_at: str) -> tuple[int, str]:
        self._log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._log_path, "ab") as log_file:
            self._process = await asyncio.create_subprocess_exec(
                *spec.argv,
                env=dict(spec.env),
                cwd=spec.cwd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        process = self._process
        has_startup = "startupProbe" in self.container
        self._set(state={"running": {"startedAt": started_at}}, pid=process.pid, started=not has_startup, ready=False)
        killed = asyncio.Event()
        probes = asyncio.create_task(self._probe(process, killed))
        exited = asyncio.create_task(process.wait())
        stopping = asyncio.create_task(self._stopping.wait())
        try:
            await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            probes.cancel()
            stopping.cancel()
            await asyncio.gather(probes, stopping, return_exceptions=True)
        if not exited.done():
            await self._terminate(process)
        code = await exited
        self._kill_group(process.pid)
        self._process = None
        if code < 0:
            code = 128 - code  # killed by signal N: the runtime reports 128+N
        return code, "Completed" if code == 0 and not killed.is_set() else "Error"

    async def _probe(self, process: asyncio.subprocess.Process, killed: asyncio.Event) -> None:
        container = self.container
        startup = container.get("startupProbe")
        if startup is not None:
            if not await self._until(startup, want=True):
                log.warning("container %s failed its startup probe: restarting", self.name)
                killed.set()
                await self._terminate(process)
                return
            self._set(started=True)
        tasks = []
        if "readinessProbe" in container:
            tasks.append(asyncio.create_task(self._readiness(container["readinessProbe"])))
        else:
            self._set(ready=True)
        if "livenessProbe" in container:
            tasks.append(asyncio.create_task(self._liveness(container["livenessProbe"], process, killed)))
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()

    async def _until(self, probe: JSON, *, want: bool) -> bool:
        """Probe until it succeeds `successThreshold` times (True) or fails `failureThreshold` (False)."""
        await asyncio.sleep(float(probe.get("initialDelaySeconds", 0)) * self._scale)
        successes = failures = 0
        while True:
            ok, message = await probe_once(
                probe, pod_ip=self._pod_ip(), container=self.container, exec_spec=self._build_exec
            )
            successes, failures = (successes + 1, 0) if ok else (0, failures + 1)
            if successes >= int(probe.get("successThreshold", 1)):
                return want
            if failures >= int(probe.get("failureThreshold", 3)):
                log.info("container %s probe failed: %s", self.name, message)
                return not want
            await asyncio.sleep(float(probe.get("periodSeconds", 10)) * self._scale)

    async def _readiness(self, probe: JSON) -> None:
        await asyncio.sleep(float(probe.get("initialDelaySeconds", 0)) * self._scale)
        successes = failures = 0
        while True:
            ok, _ = await probe_once(probe, pod_ip=self._pod_ip(), container=self.container, exec_spec=self._build_exec)
            successes, failures = (successes + 1, 0) if ok else (0, failures + 1)
            if ok and successes >= int(probe.get("successThreshold", 1)) and not self.status.ready:
                self._set(ready=True)
            elif not ok and failures >= int(probe.get("failureThreshold", 3)) and self.status.ready:
                self._set(ready=False)
            await asyncio.sleep(float(probe.get("periodSeconds", 10)) * self._scale)

    async def _liveness(self, probe: JSON, process: asyncio.subprocess.Process, killed: asyncio.Event) -> None:
        if not await self._until(dict(probe, successThreshold=10**9), want=True):
            log.warning("container %s failed its liveness probe: restarting", self.name)
            killed.set()
            await self._terminate(process)

    async def _terminate(self, process: asyncio.subprocess.Process, grace_s: float | None = None) -> None:
        grace = self._grace_s if grace_s is None else grace_s
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(process.wait()), grace)
        except TimeoutError:
            self._kill_group(process.pid)
            await process.wait()

    @staticmethod
    def _kill_group(pid: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)

    async def stop(self, grace_s: float) -> None:
        """Stop for good: SIGTERM the process group, SIGKILL after `grace_s`."""
        self._grace_s = grace_s
        self._stopping.set()
        process = self._process
        if process is not None and process.returncode is None:
            await self._terminate(process, grace_s)
