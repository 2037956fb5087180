"""Warm-up at load: a worker gets its device ready and, when the model carries its input shape (.pt2),
runs zero-input forwards before it reports READY; a model without a known shape, or one whose warm-up
fails, still serves. CPU only here: the CUDA steps of TensorRunner.warm_up never ran in this project."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from modelfleet.server.models.batching import BatchPolicy, JobQueue
from modelfleet.server.models.contracts import LoadedModel, RegisterSpec
from modelfleet.server.models.handlers import ModelState
from modelfleet.server.models.handlers.tensor import TensorRunner
from modelfleet.server.models.workers import WorkerPool

import mf_domain_harness as h
from mf_handlers import RunnerHandler


def export_tiny(path: Path, *, dynamic_batch: bool = True) -> Path:
    from modelfleet.server.demo import build_module

    module = build_module("tiny", seed=0).eval()
    shapes = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
    torch.export.save(torch.export.export(module, (torch.zeros(2, 16),), dynamic_shapes=shapes), str(path))
    return path


async def test_a_pt2_worker_runs_a_zero_input_forward_before_it_is_ready_and_then_serves_correctly(
    registries: Any, model_store: Path
) -> None:
    export_tiny(model_store / "tiny.pt2")
    registry = registries.new()
    await registry.register(RegisterSpec(url="tiny.pt2#version=1.0", synchronous=True, initial_workers=2))
    workers = registry.get("tiny").pool.workers
    assert [worker.status for worker in workers] == ["READY", "READY"]
    assert all(worker.warmed_up for worker in workers)
    assert registry.get("tiny").pool.stats().requests == 0  # warm-up is not a request

    rows = h.seeded_rows(3, seed=4)
    answer = await h.predict(registry, "tiny", h.rows_json(rows))
    assert torch.allclose(h.as_tensor(answer), h.eager()(rows), atol=1e-5)
    single = await h.predict(registry, "tiny", h.rows_json(rows[0]))
    assert torch.allclose(h.as_tensor(single), h.eager()(rows[0:1])[0], atol=1e-5)


def test_the_warm_up_input_follows_the_program_example_and_leaves_the_sample_rank_alone(tmp_path: Path) -> None:
    for dynamic in (True, False):
        program = torch.export.load(str(export_tiny(tmp_path / f"m{dynamic}.pt2", dynamic_batch=dynamic)))
        state = ModelState(sample_ndim=1)
        runner = TensorRunner(program.module(), device="cpu", state=state)
        assert runner.warm_up() is True
        assert runner.warmup_forwards == 2  # TorchScript-style profiling run + the optimised one
        assert state.sample_ndim == 1
        # a static program only takes its example's batch size (2); the warm-up used it rather than failing
        rows = h.seeded_rows(1 if dynamic else 2, seed=6)
        answer = runner.run_batch([{"data": h.rows_json(rows)}])[0]
        assert isinstance(answer, bytes)
        assert torch.allclose(h.as_tensor(answer), h.eager()(rows), atol=1e-5)


async def test_a_torchscript_worker_has_no_sample_shape_to_warm_up_with_and_serves_as_before(
    registries: Any, tiny_model: Path
) -> None:
    registry = registries.new()
    await registry.register(RegisterSpec(url="tiny.pt", synchronous=True, initial_workers=1))
    worker = registry.get("tiny").pool.workers[0]
    assert (worker.status, worker.warmed_up) == ("READY", False)
    rows = h.seeded_rows(2, seed=5)
    assert torch.allclose(h.as_tensor(await h.predict(registry, "tiny", h.rows_json(rows))), h.eager()(rows), atol=1e-5)


class _RefusesZeros:
    """A runner whose warm-up fails the way a model that rejects zeros would."""

    def warm_up(self) -> bool:
        raise RuntimeError("index out of range in self")

    def run_batch(self, inputs: Sequence[Mapping[str, bytes]]) -> list[bytes]:
        return [b"ok" for _ in inputs]


async def test_a_failed_warm_up_is_logged_and_the_worker_still_becomes_ready_and_serves(caplog: Any) -> None:
    loop = asyncio.get_running_loop()
    loaded = LoadedModel("m", "1.0", "default", "torchscript", handler=RunnerHandler(lambda device: _RefusesZeros()))
    pool = WorkerPool(
        name="m/1.0",
        loaded=loaded,
        queue=JobQueue(capacity=10, policy=BatchPolicy(8, 0.005, True)),
        response_timeout_s=30,
        loop=loop,
        on_change=lambda: None,
        next_device=lambda: "cpu",
    )
    try:
        pool.scale(1)
        await pool.wait_ready(1, h.WAIT_S)
        assert pool.workers[0].warmed_up is False
        assert await asyncio.wait_for(pool.submit({"data": b"[1]"}, None), h.WAIT_S) == b"ok"
        assert any(
            "warm-up" in record.getMessage() and "serving anyway" in record.getMessage() for record in caplog.records
        )
    finally:
        from modelfleet.server.errors import ErrorKind, ModelFleetError, Reason

        pool.close(ModelFleetError(ErrorKind.UNAVAILABLE, Reason.SHUTTING_DOWN, "test over"))
