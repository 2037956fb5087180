"""One watch stream of the in-memory API: a queue of events already filtered for its watcher.

The store (apistore.py) offers every change to every open watch of that resource; this module decides
what the watcher sees, as the API server does: namespace, label and field selectors, and a DELETED
event when a modified object stops matching a label selector (ADDED when it starts matching).
Must not block: offer() only enqueues.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

from modelfleet.local.apitypes import JSON

LabelPredicate = Callable[[Mapping[str, str]], bool]
ObjectPredicate = Callable[[Mapping[str, Any]], bool]


def _labels(obj: JSON | None) -> Mapping[str, str]:
    return ((obj or {}).get("metadata") or {}).get("labels") or {}


class Watch:
    """Events for one watcher; iterate with `async for`, stop with close() (then iteration ends)."""

    def __init__(
        self,
        *,
        namespace: str | None,
        name: str | None = None,
        labels: LabelPredicate | None = None,
        fields: ObjectPredicate | None = None,
        on_close: Callable[[Watch], None] | None = None,
    ) -> None:
        self.namespace = namespace
        self.name = name
        self._labels = labels
        self._fields = fields
        self._queue: asyncio.Queue[JSON | None] = asyncio.Queue()
        self._on_close = on_close
        self.closed = False

    def _matches(self, obj: JSON | None) -> bool:
        if obj is None:
            return False
        meta = obj.get("metadata") or {}
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        if self.name is not None and meta.get("name") != self.name:
            return False
        if self._labels is not None and not self._labels(_labels(obj)):
            return False
        return self._fields is None or self._fields(obj)

    def offer(self, event_type: str, obj: JSON, old: JSON | None = None) -> None:
        """Enqueue the event this watcher should see for a change (maybe none)."""
        if self.closed:
            return
        now, before = self._matches(obj), self._matches(old)
        if event_type == "MODIFIED" and now and not before and old is not None:
            event_type = "ADDED"
        elif event_type == "MODIFIED" and before and not now:
            event_type = "DELETED"
        elif not now:
            return
        self._queue.put_nowait({"type": event_type, "object": obj})

    def send(self, event: JSON) -> None:
        """Enqueue an event unfiltered (initial ADDED snapshot, BOOKMARK, ERROR)."""
        if not self.closed:
            self._queue.put_nowait(event)

    def wants(self, obj: JSON) -> bool:
        return self._matches(obj)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._queue.put_nowait(None)
            if self._on_close is not None:
                self._on_close(self)

    def __aiter__(self) -> Watch:
        return self

    async def __anext__(self) -> JSON:
        event = await self._queue.get()
        if event is None:
            raise StopAsyncIteration
        return event

    async def next(self, timeout: float | None = None) -> JSON | None:
        """The next event, or None when closed or when `timeout` seconds pass with none."""
        try:
            event = await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None
        if event is None:
            self._queue.put_nowait(None)  # keep the stream ended for later readers
        return event
