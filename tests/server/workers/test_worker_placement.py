"""Worker placement bookkeeping: workers go round-robin over the registry's device list, across
scale-ups and models, and DescribeModel reports cpu placement. CUDA cannot run here, so the distinct
devices are "cpu:0"/"cpu:1" (real torch devices on which the loader places a copy of the model);
GPU reporting (deviceType gpu, deviceIds) is not exercised on this machine."""

from __future__ import annotations

import asyncio
from typing import Any

import torch

from modelfleet.server.models.contracts import RegisterSpec
from modelfleet.server.models.registry import ModelRegistry

import mf_domain_harness as h


def devices_of(registry: ModelRegistry, name: str) -> list[str]:
    return [worker.device for worker in registry.get(name).pool.workers]


async def test_workers_are_placed_round_robin_over_the_devices(registries: Any, make_model: Any) -> None:
    make_model("tiny.pt")
    make_model("other.pt", seed=5)
    registry: ModelRegistry = registries.new(devices=("cpu:0", "cpu:1"))
    await registry.register(RegisterSpec(url="tiny.pt", synchronous=True, initial_workers=3))
    assert devices_of(registry, "tiny") == ["cpu:0", "cpu:1", "cpu:0"]
    await registry.scale("tiny", None, min_workers=4, max_workers=4, synchronous=True, timeout_s=h.WAIT_S)
    assert devices_of(registry, "tiny") == ["cpu:0", "cpu:1", "cpu:0", "cpu:1"]
    # the cycle is shared: the next model's first worker continues it
    await registry.register(RegisterSpec(url="other.pt", synchronous=True, initial_workers=1))
    assert devices_of(registry, "other") == ["cpu:0"]

    described = registry.describe("tiny", None)[0]
    assert described.device_ids == ()
    assert [w.device_index for w in described.workers] == [None] * 4
    assert [w.status for w in described.workers] == ["READY"] * 4
    # every worker, whichever device copy it runs, answers like the eager model
    rows = h.seeded_rows(2, seed=6)
    answers = await asyncio.gather(*(h.predict(registry, "tiny", h.rows_json(rows)) for _ in range(8)))
    for answer in answers:
        assert torch.allclose(h.as_tensor(answer), h.eager()(rows), atol=1e-6)


async def test_the_default_worker_count_is_the_usable_cpus_when_no_gpu_is_listed(
    registries: Any, tiny_model: Any
) -> None:
    registry: ModelRegistry = registries.new(devices=("cpu",), cpus=3)
    assert registry.default_workers == 3
    await registry.register(RegisterSpec(url="tiny.pt", synchronous=True, initial_workers=0))
    assert devices_of(registry, "tiny") == ["cpu", "cpu", "cpu"]


async def test_listing_gpus_makes_the_default_one_worker_per_gpu(registries: Any) -> None:
    # bookkeeping only: no worker is started on these names
    registry: ModelRegistry = registries.new(devices=("cuda:0", "cuda:1"), cpus=8)
    assert registry.default_workers == 2
