"""The work queue deduplicates, delays, and never runs one key twice at once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
from typing import Any

from modelfleet.operator.workqueue import WorkQueue


async def _running(queue: WorkQueue, handler: Any, workers: int = 4) -> asyncio.Task[None]:
    return asyncio.create_task(queue.run(handler, workers=workers))


async def test_a_key_added_many_times_while_waiting_runs_once(poll: Callable[..., Any]) -> None:
    seen: list[Hashable] = []

    async def handle(key: Hashable) -> None:
        seen.append(key)

    queue = WorkQueue()
    for _ in range(5):
        queue.add("a")
    queue.add("b")
    task = await _running(queue, handle)
    await poll(lambda: len(seen) >= 2 and queue.idle())  # idle: a duplicate would still be queued or running
    task.cancel()
    assert sorted(map(str, seen)) == ["a", "b"]


async def test_a_key_added_while_running_runs_again_after_and_never_concurrently(poll: Callable[..., Any]) -> None:
    active, runs, overlap = set(), [], []
    release = asyncio.Event()

    async def handle(key: Hashable) -> None:
        if key in active:
            overlap.append(key)
        active.add(key)
        runs.append(key)
        if len(runs) == 1:
            await release.wait()
        active.discard(key)

    queue = WorkQueue()
    queue.add("k")
    task = await _running(queue, handle)
    await poll(lambda: runs == ["k"])
    queue.add("k")
    queue.add("k")
    release.set()
    await poll(lambda: len(runs) == 2 and queue.idle())  # idle: a third run would still be queued or running
    task.cancel()
    assert runs == ["k", "k"] and overlap == []


async def test_a_returned_delay_requeues_the_key_and_an_error_does_not_stop_the_queue(poll: Callable[..., Any]) -> None:
    runs: list[str] = []

    async def handle(key: Hashable) -> float | None:
        runs.append(str(key))
        if key == "boom":
            raise RuntimeError("bug")
        return 0.05 if runs.count("again") < 3 and key == "again" else None

    queue = WorkQueue()
    queue.add("boom")
    queue.add("again")
    task = await _running(queue, handle)
    await poll(lambda: runs.count("again") == 3)
    task.cancel()
    assert runs.count("boom") == 1


async def test_an_earlier_add_wins_over_a_later_delay(poll: Callable[..., Any]) -> None:
    runs: list[str] = []

    async def handle(key: Hashable) -> None:
        runs.append(str(key))

    queue = WorkQueue()
    queue.add("k", after=30)
    queue.add("k")
    task = await _running(queue, handle)
    await poll(lambda: runs == ["k"], timeout=2)
    task.cancel()
