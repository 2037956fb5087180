"""Overload and slowness: a full job queue refuses at once with QUEUE_FULL, a model run longer than
response_timeout fails with RESPONSE_TIMEOUT and the worker is replaced, and a request whose deadline
has passed is dropped without running. Outcomes only; the slow model is a trusted test handler held
at a gate (the one wall-clock wait is the 1 s response timeout itself, the smallest it can be)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
import torch

from modelfleet.server.errors import ErrorKind, ModelFleetError, Reason
from modelfleet.server.models.contracts import RegisterSpec
from modelfleet.server.models.registry import ModelRegistry

import mf_domain_harness as h


async def held_registry(registries: Any, handler: Any, **spec: Any) -> ModelRegistry:
    settings = {k: spec.pop(k) for k in ("job_queue_size",) if k in spec}
    registry: ModelRegistry = registries.new(trusted_handlers=(handler.__name__,), **settings)
    await registry.register(
        RegisterSpec(url="tiny.pt", handler=handler.__name__, synchronous=True, initial_workers=1, **spec)
    )
    return registry


async def occupy_the_worker(registry: ModelRegistry, handler: Any, rows: torch.Tensor) -> asyncio.Future[bytes]:
    call = asyncio.ensure_future(h.predict(registry, "tiny", h.held(rows)))
    assert await h.in_thread(lambda: handler.ENTERED.acquire(timeout=h.WAIT_S))
    return call


async def test_a_full_queue_refuses_at_once_and_the_model_keeps_serving(
    registries: Any, tiny_model: Any, handler_module: Any
) -> None:
    handler = handler_module(h.HOLDING_HANDLER)
    registry = await held_registry(registries, handler, job_queue_size=2, batch_size=1)
    rows = h.seeded_rows(1, seed=1)
    running = await occupy_the_worker(registry, handler, rows)
    queued = [asyncio.ensure_future(h.predict(registry, "tiny", h.rows_json(rows))) for _ in range(2)]
    await h.eventually(lambda: len(registry.get("tiny").pool.queue) == 2, what="queue filled")

    with pytest.raises(ModelFleetError) as caught:
        await registry.predict("tiny", None, {"data": h.rows_json(rows)}, deadline=None)  # no wait_for: at once
    assert (caught.value.kind, caught.value.reason) == (ErrorKind.RESOURCE_EXHAUSTED, Reason.QUEUE_FULL)
    assert registry.get("tiny").pool.rejected == 1
    assert (registry.describe("tiny", None)[0].queue_remaining, registry.describe("tiny", None)[0].queue_pending) == (
        0,
        2,
    )

    handler.GATE.set()
    for answer in await asyncio.gather(running, *queued):
        assert torch.allclose(h.as_tensor(answer), h.eager()(rows), atol=1e-6)
    assert torch.allclose(h.as_tensor(await h.predict(registry, "tiny", h.rows_json(rows))), h.eager()(rows), atol=1e-6)


async def test_a_run_longer_than_the_response_timeout_fails_and_a_fresh_worker_takes_over(
    registries: Any, tiny_model: Any, handler_module: Any
) -> None:
    handler = handler_module(h.HOLDING_HANDLER)
    registry = await held_registry(registries, handler, response_timeout_s=1)
    [stuck] = registry.describe("tiny", None)[0].workers
    rows = h.seeded_rows(1, seed=2)
    running = await occupy_the_worker(registry, handler, rows)
    behind = asyncio.ensure_future(h.predict(registry, "tiny", h.rows_json(rows)))  # queued behind it

    with pytest.raises(ModelFleetError) as caught:
        await running  # held at the gate for good: only the response timeout can end it
    assert (caught.value.kind, caught.value.reason) == (ErrorKind.DEADLINE_EXCEEDED, Reason.RESPONSE_TIMEOUT)
    # the queued request is served by the replacement worker while the stuck one is still held
    assert torch.allclose(h.as_tensor(await behind), h.eager()(rows), atol=1e-6)
    described = registry.describe("tiny", None)[0]
    assert len(described.workers) == 1 and described.min_workers == 1
    [fresh] = described.workers
    assert fresh.id != stuck.id and fresh.status == "READY"
    assert registry.health_view()["tiny"] is True
    stats = registry.get("tiny").pool.stats()
    assert stats.requests == 1  # the timed-out run is not counted as answered by the model

    handler.GATE.set()  # the abandoned thread finishes; its late result goes nowhere
    assert torch.allclose(h.as_tensor(await h.predict(registry, "tiny", h.rows_json(rows))), h.eager()(rows), atol=1e-6)
    await h.eventually(
        lambda: not any(name.endswith(stuck.id) for name in (t.name for t in threading.enumerate())),
        what="abandoned worker thread exited",
    )
    assert len(registry.describe("tiny", None)[0].workers) == 1


async def test_a_request_whose_deadline_passed_while_queued_is_dropped_not_run(
    registries: Any, tiny_model: Any, handler_module: Any
) -> None:
    handler = handler_module(h.HOLDING_HANDLER)
    registry = await held_registry(registries, handler)
    rows = h.seeded_rows(1, seed=3)
    running = await occupy_the_worker(registry, handler, rows)
    expired = asyncio.ensure_future(
        h.predict(registry, "tiny", h.rows_json(torch.full((1, 16), 7.0)), deadline=time.monotonic() - 0.001)
    )
    alive = asyncio.ensure_future(h.predict(registry, "tiny", h.rows_json(rows), deadline=time.monotonic() + 3600))
    await h.eventually(lambda: len(registry.get("tiny").pool.queue) == 2, what="both queued")
    handler.GATE.set()

    with pytest.raises(ModelFleetError) as caught:
        await expired
    assert (caught.value.kind, caught.value.reason) == (ErrorKind.DEADLINE_EXCEEDED, Reason.DEADLINE_PASSED)
    for answer in await asyncio.gather(running, alive):
        assert torch.allclose(h.as_tensor(answer), h.eager()(rows), atol=1e-6)
    # the handler never saw the expired request, and the model ran only the other two
    assert [document for _, document in handler.SEEN if document == [[7.0] * 16]] == []
    assert registry.get("tiny").pool.stats().requests == 2


async def test_a_request_whose_caller_left_is_not_run(registries: Any, tiny_model: Any, handler_module: Any) -> None:
    handler = handler_module(h.HOLDING_HANDLER)
    registry = await held_registry(registries, handler)
    rows = h.seeded_rows(1, seed=4)
    running = await occupy_the_worker(registry, handler, rows)
    gone = asyncio.ensure_future(
        registry.predict("tiny", None, {"data": h.rows_json(torch.full((1, 16), 5.0))}, deadline=None)
    )
    await h.eventually(lambda: len(registry.get("tiny").pool.queue) == 1, what="queued")
    gone.cancel()  # what grpc does when the client cancels or its deadline fires
    handler.GATE.set()
    await running
    follow_up = await h.predict(registry, "tiny", h.rows_json(rows))
    assert torch.allclose(h.as_tensor(follow_up), h.eager()(rows), atol=1e-6)
    assert [document for _, document in handler.SEEN if document == [[5.0] * 16]] == []
