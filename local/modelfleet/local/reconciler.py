"""The loop every local controller runs: watch some kinds, map each event to keys, reconcile each key.

Level-based, as controller-runtime does it: an event only marks a key dirty; reconcile(key) reads the
current state from the store and converges it. Keys are de-duplicated while waiting, one key is never
reconciled twice at once, a reconcile may ask to be run again after a delay, and a failing one is
retried with backoff. Reconcile functions are synchronous (the store is in-process) and must be quick.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from modelfleet.local.apitypes import JSON, ResourceType
from modelfleet.local.localclient import LocalClient

Key = TypeVar("Key")
Mapper = Callable[[JSON], Iterable[Key]]

log = logging.getLogger(__name__)


class Controller(Generic[Key]):
    """Subclasses set `name`, register watches with watch(), and implement reconcile()."""

    name = "controller"

    def __init__(self, client: LocalClient) -> None:
        self.client = client
        self._watches: list[tuple[ResourceType, Mapper[Key]]] = []
        self._dirty: set[Key] = set()
        self._queue: asyncio.Queue[Key] = asyncio.Queue()
        self._failures: dict[Key, int] = {}
        self._timers: dict[Key, asyncio.TimerHandle] = {}

    def watch(self, rtype: ResourceType, mapper: Mapper[Key]) -> None:
        self._watches.append((rtype, mapper))

    def enqueue(self, key: Key) -> None:
        if key not in self._dirty:
            self._dirty.add(key)
            self._queue.put_nowait(key)

    def enqueue_after(self, key: Key, delay: float) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        self._timers[key] = asyncio.get_running_loop().call_later(delay, self._fire, key)

    def _fire(self, key: Key) -> None:
        self._timers.pop(key, None)
        self.enqueue(key)

    def reconcile(self, key: Key) -> float | None:
        """Converge one key; return seconds after which to look again, or None."""
        raise NotImplementedError

    async def _pump(self, rtype: ResourceType, mapper: Mapper[Key]) -> None:
        watch = self.client.watch(rtype)
        try:
            async for event in watch:
                if event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                    for key in mapper(event["object"]):
                        self.enqueue(key)
        finally:
            watch.close()

    async def run(self) -> None:
        pumps = [
            asyncio.create_task(self._pump(rtype, mapper), name=f"{self.name}-watch-{rtype.plural}")
            for rtype, mapper in self._watches
        ]
        try:
            while True:
                key = await self._queue.get()
                self._dirty.discard(key)
                try:
                    again = self.reconcile(key)
                except Exception:  # noqa: BLE001 - a controller must survive any one object
                    failures = self._failures[key] = self._failures.get(key, 0) + 1
                    log.exception("%s: reconcile of %s failed (attempt %d)", self.name, key, failures)
                    self.enqueue_after(key, min(0.05 * 2**failures, 5.0))
                    continue
                self._failures.pop(key, None)
                if again is not None:
                    self.enqueue_after(key, again)
                await asyncio.sleep(0)  # let watch pumps and the API run between keys
        finally:
            for pump in pumps:
                pump.cancel()
            for timer in self._timers.values():
                timer.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
