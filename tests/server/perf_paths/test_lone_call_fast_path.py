"""The only call in flight to a cheap `default`-handler model runs on the event loop (fastpath.py):
answers stay exact and counted, calls in flight together still go to the workers and batch, every
PROBE_EVERY-th lone call still goes to a worker (so load hidden inside grpc shows itself), and only
models whose recent runs were cheap, with small inputs and adaptive batching, take the fast path."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import torch

from modelfleet.server.errors import ModelFleetError, Reason
from modelfleet.server.models.contracts import RegisterSpec
from modelfleet.server.models.fastpath import InlineGate, LoneCall
from modelfleet.server.models.inflight import InFlight
from modelfleet.server.models.registry import ModelRegistry

import mf_domain_harness as h

MEASURING_RUNS = 40
"""Bound on the lone requests a test sends until the moving average of the model's cost is under
the budget (TorchScript's first runs profile the graph and are slow; tiny's later runs are ~10 us)."""


async def until_inline(registry: ModelRegistry, name: str = "tiny") -> None:
    """Send lone requests until one runs on the loop (the first ones measure the model on a worker).

    The cost budget is lifted: on a loaded test machine tiny's runs can average over a millisecond
    (the budget's own rule is checked in test_the_gate_needs_a_measured_cheap_model_and_a_small_input)."""
    pool = registry.get(name).pool
    pool.inline.budget_s = 1.0
    before = pool.inline_requests
    for seed in range(MEASURING_RUNS):
        await h.eventually(lambda: pool.queue.busy_workers == 0, what="the worker is idle")
        await h.predict(registry, name, h.rows_json(h.seeded_rows(1, seed=1000 + seed)))
        if pool.inline_requests > before:
            return
    raise AssertionError(f"no lone request ran on the loop in {MEASURING_RUNS} tries")


async def test_a_lone_request_runs_on_the_loop_once_a_worker_has_measured_the_model(
    registries: Any, tiny_model: Any
) -> None:
    registry: ModelRegistry = registries.new()
    await registry.register(RegisterSpec(url="tiny.pt", synchronous=True, initial_workers=2))
    pool = registry.get("tiny").pool
    first = await h.predict(registry, "tiny", h.rows_json(h.seeded_rows(1, seed=30)))
    assert pool.inline_requests == 0  # no cost known yet: a worker ran it
    assert torch.allclose(h.as_tensor(first), h.eager()(h.seeded_rows(1, seed=30)), atol=1e-6)
    await until_inline(registry)
    registry.lone_calls.probe_every = 100  # no probe in the next two
    before, inline = pool.stats().requests, pool.inline_requests
    rows = h.seeded_rows(2, seed=31)
    for row in rows:
        answer = await h.predict(registry, "tiny", h.rows_json(row))
        assert torch.allclose(h.as_tensor(answer), h.eager()(row), atol=1e-6)
    assert pool.inline_requests == inline + 2
    stats = pool.stats()
    assert (stats.requests - before, stats.errors) == (2, 0)  # inline runs are counted like a worker's
    assert (registry.in_flight.now, pool.queue.in_flight.now) == (0, 0)


async def test_every_few_lone_calls_one_goes_to_a_worker_to_probe_for_hidden_load(
    registries: Any, tiny_model: Any
) -> None:
    registry: ModelRegistry = registries.new()
    await registry.register(RegisterSpec(url="tiny.pt", synchronous=True, initial_workers=1))
    pool = registry.get("tiny").pool
    await until_inline(registry)
    registry.lone_calls.probe_every = 3
    worker_runs, inline = pool.stats().requests - pool.inline_requests, pool.inline_requests
    for seed in range(8):
        # a lone client's next call comes after the worker is back in the queue (a network round trip)
        await h.eventually(lambda: pool.queue.busy_workers == 0, what="the worker is idle")
        await h.predict(registry, "tiny", h.rows_json(h.seeded_rows(1, seed=seed)))
    # eight lone calls: never more than three in a row inline, then one on a worker
    worker_now = pool.stats().requests - pool.inline_requests - worker_runs
    assert (pool.inline_requests - inline, worker_now) == (6, 2)


async def test_calls_that_come_while_one_is_on_a_worker_go_to_the_workers_and_batch(
    registries: Any, tiny_model: Any
) -> None:
    registry: ModelRegistry = registries.new()
    await registry.register(RegisterSpec(url="tiny.pt", synchronous=True, initial_workers=1, batch_size=8))
    pool = registry.get("tiny").pool
    await until_inline(registry)
    registry.lone_calls.probe_every = 0  # the first of the eight goes to a worker: the loop stays free
    inline, batches = pool.inline_requests, pool.stats().batches
    rows = h.seeded_rows(8, seed=33)
    answers = await asyncio.gather(*(h.predict(registry, "tiny", h.rows_json(row)) for row in rows))
    for row, answer in zip(rows, answers):
        assert torch.allclose(h.as_tensor(answer), h.eager()(row), atol=1e-6)
    assert pool.inline_requests == inline
    assert pool.stats().batches == batches + 1  # all eight were staged in one loop iteration
    assert registry.in_flight.now == 0


async def test_a_bad_input_on_the_fast_path_fails_alone_with_bad_input(registries: Any, tiny_model: Any) -> None:
    registry: ModelRegistry = registries.new()
    await registry.register(RegisterSpec(url="tiny.pt", synchronous=True, initial_workers=1))
    pool = registry.get("tiny").pool
    await until_inline(registry)
    registry.lone_calls.probe_every = 100
    inline = pool.inline_requests
    failure = (await h.gather_outcomes([h.predict(registry, "tiny", b"[1, 2")]))[0]
    assert isinstance(failure, ModelFleetError) and failure.reason is Reason.BAD_INPUT
    row = h.seeded_rows(1, seed=35)
    answer = await h.predict(registry, "tiny", h.rows_json(row))
    assert torch.allclose(h.as_tensor(answer), h.eager()(row), atol=1e-6)
    assert pool.inline_requests == inline + 2
    assert pool.stats().errors == 1
    assert registry.in_flight.now == 0


async def test_fixed_batching_never_takes_the_fast_path(registries: Any, tiny_model: Any) -> None:
    registry: ModelRegistry = registries.new(adaptive_batching=False)
    await registry.register(
        RegisterSpec(url="tiny.pt", synchronous=True, initial_workers=1, batch_size=1, max_batch_delay_ms=1)
    )
    for seed in range(MEASURING_RUNS):
        await h.predict(registry, "tiny", h.rows_json(h.seeded_rows(1, seed=seed)))
    assert registry.get("tiny").pool.inline_requests == 0


def test_a_call_is_lone_only_when_nothing_else_was_in_flight_server_wide_recently() -> None:
    now = [100.0]
    total = InFlight(window_s=0.02, clock=lambda: now[0])
    lone = LoneCall(total, probe_every=2, clock=lambda: now[0])
    total.enter()
    total.enter()
    assert not lone.admits()  # another call is in flight
    total.leave()
    assert not lone.admits()  # none now, but two were in flight within the window
    now[0] += 0.05  # both windows passed without a call: the old peak is forgotten
    assert lone.admits() and lone.admits()
    assert not lone.admits()  # the third lone call in a row is a probe (goes to a worker)
    assert lone.admits()


def test_the_gate_needs_a_measured_cheap_model_and_a_small_input() -> None:
    small = {"data": b"x" * 100}
    gate = InlineGate(budget_s=0.001, max_bytes=100)
    assert not gate.admits(small)  # nothing measured yet
    gate.observe(0.0004, 2)
    assert gate.admits(small)
    assert not gate.admits({"data": b"x" * 60, "shape": b"y" * 41})  # every entry counts
    gate.observe(0.5, 1)  # one slow run closes the gate ...
    assert not gate.admits(small)
    for _ in range(40):  # ... until cheap runs bring the moving average back under the budget
        gate.observe(0.0001, 1)
    assert gate.admits(small)
    gate.enabled = False
    assert not gate.admits(small)


async def test_calls_are_counted_in_flight_until_their_answer_is_back_on_both_paths(
    registries: Any, tiny_model: Any
) -> None:
    registry: ModelRegistry = registries.new()
    await registry.register(RegisterSpec(url="tiny.pt", synchronous=True, initial_workers=1))
    queue = registry.get("tiny").pool.queue
    stream = registry.stream("tiny", None, {"data": h.rows_json(h.seeded_rows(1, seed=40))}, deadline=None)
    answer = await asyncio.wait_for(anext(stream), h.WAIT_S)
    assert (registry.in_flight.now, queue.in_flight.now) == (1, 1)  # the stream is still open
    assert torch.allclose(h.as_tensor(answer), h.eager()(h.seeded_rows(1, seed=40)), atol=1e-6)
    await stream.aclose()
    registry.lone_calls.probe_every = 0  # all go to the worker, so the three are in flight together
    calls = [h.predict(registry, "tiny", h.rows_json(h.seeded_rows(1, seed=41))) for _ in range(3)]
    calls.append(h.predict(registry, "nope", b"[1]"))
    outcomes = await h.gather_outcomes(calls)
    assert isinstance(outcomes[3], ModelFleetError)
    assert (registry.in_flight.now, queue.in_flight.now) == (0, 0)
    assert queue.in_flight.peak(time.monotonic()) >= 3  # seen together: expected back soon


async def test_when_the_loop_cannot_get_a_runner_lone_calls_still_get_answers_from_the_workers(
    registries: Any, tiny_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry: ModelRegistry = registries.new()
    await registry.register(RegisterSpec(url="tiny.pt", synchronous=True, initial_workers=1))
    pool = registry.get("tiny").pool
    pool.inline.budget_s = 1.0

    def refuse(device: str) -> Any:
        raise RuntimeError("no runner for the loop thread")

    monkeypatch.setattr(pool.loaded, "make_runner", refuse)  # the workers made theirs at start
    for seed in range(4):
        await h.eventually(lambda: pool.queue.busy_workers == 0, what="the worker is idle")
        row = h.seeded_rows(1, seed=50 + seed)
        answer = await h.predict(registry, "tiny", h.rows_json(row))
        assert torch.allclose(h.as_tensor(answer), h.eager()(row), atol=1e-6)
    assert pool.inline_requests == 0 and not pool.inline.enabled
