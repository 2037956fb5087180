"""A keyed work queue in controller-runtime's shape: deduplicated, delayed, never two at once per key.

runtime.py feeds it from kopf's watch events, the pods' events and the resync loop, and runs a
fixed number of workers over it. A key added while it is being processed is run once more right
after; a key added many times while waiting runs once. No Kubernetes or gRPC knowledge here.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Hashable

log = logging.getLogger(__name__)

Handler = Callable[[Hashable], Awaitable[float | None]]
"""Processes one key; returns a delay after which the key runs again, or None."""


class WorkQueue:
    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._ready: asyncio.Queue[Hashable] = asyncio.Queue()
        self._queued: set[Hashable] = set()
        self._active: set[Hashable] = set()
        self._dirty: set[Hashable] = set()
        self._delayed: list[tuple[float, int, Hashable]] = []
        self._due: dict[Hashable, float] = {}
        self._counter = itertools.count()
        self._wakeup = asyncio.Event()

    def __len__(self) -> int:
        return len(self._queued) + len(self._due)

    def idle(self) -> bool:
        """Nothing ready, delayed or running: every key added so far has been handled."""
        return self._ready.empty() and not self._active and not self._due

    def add(self, key: Hashable, *, after: float = 0.0) -> None:
        if after > 0:
            due = self._clock() + after
            if self._due.get(key, float("inf")) <= due or key in self._queued:
                return  # already due sooner
            self._due[key] = due
            heapq.heappush(self._delayed, (due, next(self._counter), key))
            self._wakeup.set()
            return
        self._due.pop(key, None)
        if key in self._active:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._ready.put_nowait(key)

    async def _timer(self) -> None:
        while True:
            self._wakeup.clear()
            now = self._clock()
            while self._delayed and self._delayed[0][0] <= now:
                due, _, key = heapq.heappop(self._delayed)
                if self._due.get(key) == due:
                    self.add(key)
            timeout = self._delayed[0][0] - now if self._delayed else None
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout)

    async def _worker(self, handler: Handler) -> None:
        while True:
            key = await self._ready.get()
            self._queued.discard(key)
            self._active.add(key)
            delay: float | None = None
            try:
                delay = await handler(key)
            except asyncio.CancelledError:
                raise
            except Exception:  # one object's bug must not stop the others: log and retry later
                log.exception("Reconciling %s failed; retrying in 10 s", key)
                delay = 10.0
            finally:
                self._active.discard(key)
            if key in self._dirty:
                self._dirty.discard(key)
                self.add(key)
            elif delay is not None:
                self.add(key, after=delay)

    async def run(self, handler: Handler, *, workers: int) -> None:
        """Process keys until cancelled."""
        tasks = [asyncio.create_task(self._timer(), name="workqueue-timer")]
        tasks += [asyncio.create_task(self._worker(handler), name=f"workqueue-worker-{i}") for i in range(workers)]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
