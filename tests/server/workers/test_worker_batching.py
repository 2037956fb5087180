"""Dynamic batching through the real registry, worker threads and default handler (issue 6's list):
batches form under concurrency and never exceed batch_size, results match unbatched eager outputs,
one bad input fails only its own call, and the two dispatch modes behave as documented.

Batch composition is made deterministic without timing: either the only worker is held at a gate
while requests pile up (adaptive mode), or fixed mode with a delay far longer than the test waits
for a full batch."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest
import torch

from modelfleet.server.errors import ErrorKind, ModelFleetError, Reason
from modelfleet.server.models.batching import BatchPolicy, Job, JobQueue
from modelfleet.server.models.contracts import RegisterSpec
from modelfleet.server.models.registry import ModelRegistry
from modelfleet.server.models.workers import BATCH_SIZE_BUCKETS

import mf_domain_harness as h

LONG_DELAY_MS = 60_000
"""One minute (the default --batch-delay-limit): far beyond any test's wait, so an answer proves the delay was
not waited out."""


def largest_batch_bucket(registry: ModelRegistry, name: str = "tiny") -> int:
    """Upper bound of the largest batch-size histogram bucket that holds a batch."""
    counts = registry.get(name).pool.stats().batch_size_counts
    used = [i for i, count in enumerate(counts) if count]
    return (*BATCH_SIZE_BUCKETS, 10**9)[max(used)]


async def test_requests_arriving_while_the_worker_is_busy_run_in_batches_of_at_most_batch_size(
    registries: Any, tiny_model: Any, handler_module: Any
) -> None:
    handler = handler_module(h.HOLDING_HANDLER)
    registry: ModelRegistry = registries.new(trusted_handlers=(handler.__name__,))
    await registry.register(
        RegisterSpec(url="tiny.pt", handler=handler.__name__, synchronous=True, initial_workers=1, batch_size=4)
    )
    blocker = asyncio.ensure_future(h.predict(registry, "tiny", h.held(h.seeded_rows(1, seed=0))))
    assert await h.in_thread(lambda: handler.ENTERED.acquire(timeout=h.WAIT_S))
    inputs = [h.seeded_rows(1, seed=100 + i) for i in range(18)]
    calls = [asyncio.ensure_future(h.predict(registry, "tiny", h.rows_json(rows))) for rows in inputs]
    await h.eventually(lambda: len(registry.get("tiny").pool.queue) == 18, what="18 requests queued")
    handler.GATE.set()
    answers = await asyncio.gather(*calls)
    await blocker

    reference = h.eager()
    for rows, answer in zip(inputs, answers):  # each caller got its own row back
        assert torch.allclose(h.as_tensor(answer), reference(rows), atol=1e-6)
    stats = registry.get("tiny").pool.stats()
    assert stats.requests == 19
    assert stats.batches == 1 + 5  # the held one alone, then 18 queued ones as 4+4+4+4+2
    assert stats.batch_size_sum == 19
    assert largest_batch_bucket(registry) == 4  # no batch larger than batch_size


async def test_a_free_worker_holds_back_until_half_a_batch_waits_while_another_is_busy(
    registries: Any, tiny_model: Any, handler_module: Any
) -> None:
    """Adaptive mode with two workers: requests that trickle in while one worker is busy are not
    taken one by one by the other; they wait (never past max_batch_delay) until half a batch is
    queued, then go as one forward pass."""
    handler = handler_module(h.HOLDING_HANDLER)
    registry: ModelRegistry = registries.new(trusted_handlers=(handler.__name__,))
    await registry.register(
        RegisterSpec(
            url="tiny.pt",
            handler=handler.__name__,
            synchronous=True,
            initial_workers=2,
            batch_size=8,
            max_batch_delay_ms=LONG_DELAY_MS,
        )
    )
    pool = registry.get("tiny").pool
    blocker = asyncio.ensure_future(h.predict(registry, "tiny", h.held(h.seeded_rows(1, seed=0))))
    assert await h.in_thread(lambda: handler.ENTERED.acquire(timeout=h.WAIT_S))
    inputs = [h.seeded_rows(1, seed=300 + i) for i in range(4)]
    calls = []
    for count, rows in enumerate(inputs[:3], start=1):  # one at a time: each reaches the queue alone
        calls.append(asyncio.ensure_future(h.predict(registry, "tiny", h.rows_json(rows))))
        await h.eventually(lambda: len(pool.queue) == count, what=f"{count} request(s) held in the queue")  # noqa: B023
    assert pool.stats().batches == 0  # the free worker took none of them
    calls.append(asyncio.ensure_future(h.predict(registry, "tiny", h.rows_json(inputs[3]))))
    answers = await asyncio.gather(*calls)  # 4 = half of batch_size 8: the free worker takes all four

    reference = h.eager()
    for rows, answer in zip(inputs, answers):
        assert torch.allclose(h.as_tensor(answer), reference(rows), atol=1e-6)
    assert (pool.stats().batches, pool.stats().requests) == (1, 4)  # one batch; the held call still runs
    handler.GATE.set()
    await blocker
    assert (pool.stats().batches, pool.stats().requests) == (2, 5)


async def test_batched_results_equal_the_unbatched_eager_outputs(registries: Any, make_model: Any) -> None:
    make_model("mlp.pt", kind="mlp", seed=3)
    registry: ModelRegistry = registries.new(adaptive_batching=False)
    # fixed mode, 8 per batch, a delay never reached: the 8 concurrent calls go as exactly one batch
    await registry.register(
        RegisterSpec(url="mlp.pt", synchronous=True, initial_workers=1, batch_size=8, max_batch_delay_ms=LONG_DELAY_MS)
    )
    inputs = [h.seeded_rows(1 + i % 3, seed=200 + i, width=256) for i in range(8)]  # 1 to 3 rows each
    answers = await asyncio.gather(*(h.predict(registry, "mlp", h.rows_json(rows)) for rows in inputs))
    reference = h.eager("mlp", seed=3)
    for rows, answer in zip(inputs, answers):
        assert torch.allclose(h.as_tensor(answer), reference(rows), atol=1e-5)
    stats = registry.get("mlp").pool.stats()
    assert (stats.batches, stats.requests) == (1, 8)


async def test_one_malformed_request_fails_alone_inside_a_batch(registries: Any, tiny_model: Any) -> None:
    registry: ModelRegistry = registries.new(adaptive_batching=False)
    await registry.register(
        RegisterSpec(url="tiny.pt", synchronous=True, initial_workers=1, batch_size=6, max_batch_delay_ms=LONG_DELAY_MS)
    )
    good = [h.seeded_rows(1, seed=300 + i) for i in range(3)]
    bad = {
        "not json": b"{nope",
        "wrong width": json.dumps([[1.0, 2.0, 3.0]]).encode(),
        "ragged": json.dumps([[1.0] * 16, [1.0] * 15]).encode(),
    }
    outcomes = await h.gather_outcomes(
        [
            h.predict(registry, "tiny", h.rows_json(good[0])),
            h.predict(registry, "tiny", bad["not json"]),
            h.predict(registry, "tiny", h.rows_json(good[1])),
            h.predict(registry, "tiny", bad["wrong width"]),
            h.predict(registry, "tiny", bad["ragged"]),
            h.predict(registry, "tiny", h.rows_json(good[2])),
        ]
    )
    assert registry.get("tiny").pool.stats().batches == 1  # all six shared one batch
    reference = h.eager()
    for rows, outcome in zip(good, (outcomes[0], outcomes[2], outcomes[5])):
        assert isinstance(outcome, bytes)
        assert torch.allclose(h.as_tensor(outcome), reference(rows), atol=1e-6)
    for outcome in (outcomes[1], outcomes[3], outcomes[4]):
        assert isinstance(outcome, ModelFleetError)
        assert (outcome.kind, outcome.reason) == (ErrorKind.INVALID_ARGUMENT, Reason.BAD_INPUT)
    assert registry.get("tiny").pool.stats().errors == 3
    # the model keeps serving: the next full batch is all good
    again = await asyncio.gather(*(h.predict(registry, "tiny", h.rows_json(good[i % 3])) for i in range(6)))
    for i, answer in enumerate(again):
        assert torch.allclose(h.as_tensor(answer), reference(good[i % 3]), atol=1e-6)


async def test_adaptive_mode_answers_a_lone_request_without_waiting_out_the_delay(
    registries: Any, tiny_model: Any
) -> None:
    registry: ModelRegistry = registries.new()  # adaptive_batching is the default
    await registry.register(
        RegisterSpec(
            url="tiny.pt", synchronous=True, initial_workers=1, batch_size=32, max_batch_delay_ms=LONG_DELAY_MS
        )
    )
    queue = registry.get("tiny").pool.queue
    assert (queue.policy.adaptive, queue.policy.batch_size, queue.policy.max_delay_s) == (True, 32, 60.0)
    # the queue's decision for one waiting job of a batch of 32: take it now
    probe = Job(inputs={}, future=None, deadline=None, enqueued=50.0)
    assert queue.policy.decide(pending=1, oldest_enqueued=probe.enqueued, now=probe.enqueued) == 0.0
    rows = h.seeded_rows(1, seed=9)
    answer = await h.predict(registry, "tiny", h.rows_json(rows))  # bounded by WAIT_S, far below 60 s
    assert torch.allclose(h.as_tensor(answer), h.eager()(rows), atol=1e-6)


async def test_fixed_mode_holds_a_partial_batch_for_the_delay_and_sends_a_full_one_at_once(
    registries: Any, tiny_model: Any
) -> None:
    registry: ModelRegistry = registries.new(adaptive_batching=False)
    await registry.register(
        RegisterSpec(url="tiny.pt", synchronous=True, initial_workers=1, batch_size=3, max_batch_delay_ms=LONG_DELAY_MS)
    )
    policy = registry.get("tiny").pool.queue.policy
    assert (policy.adaptive, policy.max_delay_s) == (False, 60.0)
    # the rule the worker applies (clock injected): a partial batch waits for the rest of the delay
    assert policy.decide(pending=2, oldest_enqueued=10.0, now=10.0) == pytest.approx(60.0)
    assert policy.decide(pending=2, oldest_enqueued=10.0, now=69.0) == pytest.approx(1.0)
    assert policy.decide(pending=2, oldest_enqueued=10.0, now=70.0) == 0.0
    assert policy.decide(pending=3, oldest_enqueued=10.0, now=10.0) == 0.0
    # and through the real worker: two requests stay queued; the third completes the batch
    rows = [h.seeded_rows(1, seed=400 + i) for i in range(3)]
    first_two = [asyncio.ensure_future(h.predict(registry, "tiny", h.rows_json(r))) for r in rows[:2]]
    await h.eventually(lambda: len(registry.get("tiny").pool.queue) == 2, what="two requests queued")
    assert not any(call.done() for call in first_two)
    third = await h.predict(registry, "tiny", h.rows_json(rows[2]))
    answers = [*(await asyncio.gather(*first_two)), third]
    for r, answer in zip(rows, answers):
        assert torch.allclose(h.as_tensor(answer), h.eager()(r), atol=1e-6)
    assert registry.get("tiny").pool.stats().batches == 1


def test_a_blocked_worker_takes_a_partial_batch_once_the_injected_clock_passes_the_delay() -> None:
    now = [100.0]
    queue = JobQueue(
        capacity=10, policy=BatchPolicy(batch_size=4, max_delay_s=0.5, adaptive=False), clock=lambda: now[0]
    )
    jobs = [Job(inputs={}, future=None, deadline=None, enqueued=100.0) for _ in range(2)]
    for job in jobs:
        queue.put(job)
    taken: list[object] = []
    worker = threading.Thread(target=lambda: taken.append(queue.take(lambda: False)))
    worker.start()
    try:
        assert queue.try_take(now=100.4) == pytest.approx(0.1)  # what the worker is told: wait for the rest
        assert len(queue) == 2
        now[0] = 100.5  # the oldest job is due by the worker's own clock
        queue.wake_all()
        worker.join(timeout=h.WAIT_S)
        assert taken == [jobs]
    finally:
        queue.close()
        worker.join(timeout=h.WAIT_S)
