"""Last line of defence for finding 3 (issue 10): if a runner raises for a whole batch instead of
answering the bad input in its slot (a handler bug), the worker runs the batch's inputs one by one,
so only the input that sets the bug off fails and its neighbours are answered."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from modelfleet.server.errors import ErrorKind, ModelFleetError, Reason
from modelfleet.server.models.batching import BatchPolicy, JobQueue
from modelfleet.server.models.contracts import LoadedModel
from modelfleet.server.models.workers import WorkerPool

import mf_domain_harness as h
from mf_handlers import RunnerHandler


class _CrashesOnBoom:
    """Echoes each input, but raises for the whole batch when any input is `boom`."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    def run_batch(self, inputs: Sequence[Mapping[str, bytes]]) -> list[bytes | ModelFleetError]:
        self.batches.append(len(inputs))
        if any(one["data"] == b"boom" for one in inputs):
            raise KeyError("F8_E8M0")
        return [one["data"] for one in inputs]


async def test_a_runner_that_fails_a_whole_batch_fails_only_the_input_that_broke_it() -> None:
    runner = _CrashesOnBoom()
    loaded = LoadedModel("m", "1.0", "default", "torchscript", handler=RunnerHandler(lambda device: runner))
    pool = WorkerPool(
        name="m/1.0",
        loaded=loaded,
        queue=JobQueue(capacity=10, policy=BatchPolicy(4, 60.0, False)),  # one full batch of 4, no timing
        response_timeout_s=30,
        loop=asyncio.get_running_loop(),
        on_change=lambda: None,
        next_device=lambda: "cpu",
    )
    try:
        pool.scale(1)
        await pool.wait_ready(1, h.WAIT_S)
        calls = [pool.submit({"data": data}, None) for data in (b"a", b"boom", b"c", b"d")]
        outcomes: list[Any] = await asyncio.wait_for(h.gather_outcomes(calls), h.WAIT_S)
    finally:
        pool.close(ModelFleetError(ErrorKind.UNAVAILABLE, Reason.SHUTTING_DOWN, "test over"))
    assert runner.batches[0] == 4  # they really ran as one batch first
    assert [outcomes[0], outcomes[2], outcomes[3]] == [b"a", b"c", b"d"]
    assert isinstance(outcomes[1], ModelFleetError) and outcomes[1].kind is ErrorKind.INTERNAL
