"""ScaleWorker in the domain: the number of workers that really execute requests follows the scale,
synchronous scaling returns with the workers READY, and the TorchServe rules for min/max hold.

"Really execute" is shown with a trusted test handler that holds requests at a gate: N held requests
running at the same time need N worker threads."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
import torch

from modelfleet.server.errors import ErrorKind, ModelFleetError, Reason
from modelfleet.server.models.contracts import RegisterSpec
from modelfleet.server.models.registry import ModelRegistry

import mf_domain_harness as h


async def holding_registry(registries: Any, handler: Any, *, workers: int = 1) -> ModelRegistry:
    registry: ModelRegistry = registries.new(trusted_handlers=(handler.__name__,), cpus=4)
    await registry.register(
        RegisterSpec(url="tiny.pt", handler=handler.__name__, synchronous=True, initial_workers=workers)
    )
    return registry


def live_worker_threads() -> int:
    return sum(1 for thread in threading.enumerate() if thread.name.startswith("worker-tiny/1.0-"))


async def scale(registry: ModelRegistry, low: int, high: int = 0, *, synchronous: bool = True) -> None:
    await registry.scale("tiny", None, min_workers=low, max_workers=high, synchronous=synchronous, timeout_s=h.WAIT_S)


async def test_scaling_up_runs_that_many_requests_at_once(
    registries: Any, tiny_model: Any, handler_module: Any
) -> None:
    handler = handler_module(h.HOLDING_HANDLER)
    registry = await holding_registry(registries, handler)
    await scale(registry, 3, 4)
    described = registry.describe("tiny", None)[0]
    assert (described.min_workers, described.max_workers) == (3, 4)
    assert [w.status for w in described.workers] == ["READY"] * 3  # synchronous: ready on return

    rows = h.seeded_rows(1, seed=2)
    calls = [asyncio.ensure_future(h.predict(registry, "tiny", h.held(rows))) for _ in range(3)]
    for _ in range(3):  # all three are inside the model at the same time: three workers execute
        assert await h.in_thread(lambda: handler.ENTERED.acquire(timeout=h.WAIT_S))
    threads = {name for name, _ in handler.SEEN}
    assert threads == {f"worker-tiny/1.0-{w.id}" for w in described.workers}
    handler.GATE.set()
    for answer in await asyncio.gather(*calls):
        assert torch.allclose(h.as_tensor(answer), h.eager()(rows), atol=1e-6)


async def test_scaling_down_leaves_only_that_many_workers_executing(
    registries: Any, tiny_model: Any, handler_module: Any
) -> None:
    handler = handler_module(h.HOLDING_HANDLER)
    registry = await holding_registry(registries, handler, workers=3)
    await scale(registry, 1)
    [survivor] = registry.describe("tiny", None)[0].workers
    await h.eventually(lambda: live_worker_threads() == 1, what="stopped worker threads exited")

    rows = h.seeded_rows(1, seed=3)
    first = asyncio.ensure_future(h.predict(registry, "tiny", h.held(rows)))
    assert await h.in_thread(lambda: handler.ENTERED.acquire(timeout=h.WAIT_S))
    rest = [asyncio.ensure_future(h.predict(registry, "tiny", h.rows_json(rows))) for _ in range(4)]
    await h.eventually(lambda: len(registry.get("tiny").pool.queue) == 4, what="requests queued behind the one worker")
    assert [(f"worker-tiny/1.0-{survivor.id}", {"hold": True, "rows": rows.tolist()})] == handler.SEEN
    handler.GATE.set()
    await asyncio.gather(first, *rest)
    assert {name for name, _ in handler.SEEN} == {f"worker-tiny/1.0-{survivor.id}"}


async def test_counters_survive_scaling_down(registries: Any, tiny_model: Any, handler_module: Any) -> None:
    handler = handler_module(h.HOLDING_HANDLER)
    registry = await holding_registry(registries, handler, workers=3)
    rows = h.seeded_rows(1, seed=4)
    calls = [asyncio.ensure_future(h.predict(registry, "tiny", h.held(rows))) for _ in range(3)]
    for _ in range(3):  # one request on each of the three workers
        assert await h.in_thread(lambda: handler.ENTERED.acquire(timeout=h.WAIT_S))
    handler.GATE.set()
    await asyncio.gather(*calls)
    assert registry.get("tiny").pool.stats().requests == 3
    await scale(registry, 1, synchronous=False)
    # right away (the stopped threads may not have exited yet) and after they have: never fewer
    assert registry.get("tiny").pool.stats().requests == 3
    await h.eventually(lambda: live_worker_threads() == 1, what="stopped worker threads exited")
    assert registry.get("tiny").pool.stats().requests == 3


async def test_min_zero_means_one_worker_and_max_zero_means_min(registries: Any, tiny_model: Any) -> None:
    registry: ModelRegistry = registries.new()
    await registry.register(RegisterSpec(url="tiny.pt", synchronous=True, initial_workers=2))
    await scale(registry, 0, 0)
    described = registry.describe("tiny", None)[0]
    assert (described.min_workers, described.max_workers, len(described.workers)) == (1, 1, 1)
    await scale(registry, 2, 0)
    described = registry.describe("tiny", None)[0]
    assert (described.min_workers, described.max_workers, len(described.workers)) == (2, 2, 2)


async def test_max_below_min_is_bad_input_and_changes_nothing(registries: Any, tiny_model: Any) -> None:
    registry: ModelRegistry = registries.new()
    await registry.register(RegisterSpec(url="tiny.pt", synchronous=True, initial_workers=2))
    before = registry.describe("tiny", None)[0]
    with pytest.raises(ModelFleetError) as caught:
        await scale(registry, 3, 2)
    assert (caught.value.kind, caught.value.reason) == (ErrorKind.INVALID_ARGUMENT, Reason.BAD_INPUT)
    after = registry.describe("tiny", None)[0]
    assert (after.min_workers, after.max_workers) == (before.min_workers, before.max_workers) == (2, 2)
    assert [w.id for w in after.workers] == [w.id for w in before.workers]


async def test_scaling_one_version_leaves_the_others_alone(registries: Any, tiny_model: Any) -> None:
    registry: ModelRegistry = registries.new()
    await registry.register(RegisterSpec(url="tiny.pt#version=1.0", synchronous=True, initial_workers=1))
    await registry.register(RegisterSpec(url="tiny.pt#version=2.0", synchronous=True, initial_workers=1))
    await registry.scale("tiny", "2.0", min_workers=3, max_workers=3, synchronous=True, timeout_s=h.WAIT_S)
    assert [len(d.workers) for d in registry.describe("tiny", "all")] == [1, 3]
