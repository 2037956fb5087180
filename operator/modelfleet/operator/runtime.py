"""The operator's moving parts inside kopf: the work queue, its workers and the resync loop.

handlers.py creates one Runtime, starts it from kopf's startup handler and stops it at cleanup;
kopf's watch handlers only call enqueue(). The resync loop walks the kopf index of every
ModelDeployment (no per-object kopf timers: those force a finalizer and cost CPU per object, see
docs/kopf-at-scale.md) and enqueues each key; a pass that finds nothing changed writes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable, Iterable

from .kube import Kube
from .reconcile import Key, Reconciler
from .settings import OperatorSettings
from .workqueue import WorkQueue

log = logging.getLogger(__name__)


class Runtime:
    def __init__(self, kube: Kube, settings: OperatorSettings) -> None:
        self.kube = kube
        self.settings = settings
        self.reconciler = Reconciler(kube, settings)
        self.queue: WorkQueue | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.resyncs = 0
        """Completed resync rounds (tests and the benchmark wait on it)."""

    def start(self, keys: Callable[[], Iterable[Key]]) -> None:
        """Start the workers and the resync loop on the running loop (created here, not in __init__,
        because the queue must belong to the loop kopf runs on)."""
        self.queue = WorkQueue()
        self._tasks = [
            asyncio.create_task(self._work(self.queue), name="modelfleet-reconcile-workers"),
            asyncio.create_task(self._resync(keys), name="modelfleet-resync"),
        ]

    def enqueue(self, key: Key) -> None:
        if self.queue is not None:
            self.queue.add(key)

    async def _work(self, queue: WorkQueue) -> None:
        async def handle(key: Hashable) -> float | None:
            assert isinstance(key, tuple)
            return await self.reconciler.reconcile(key)

        await queue.run(handle, workers=self.settings.reconcile.workers)

    async def _resync(self, keys: Callable[[], Iterable[Key]]) -> None:
        interval = self.settings.reconcile.resync_interval_s
        while True:
            await asyncio.sleep(interval)
            for key in list(keys()):
                self.enqueue(key)
            self.resyncs += 1

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.reconciler.close()
