"""What health reads from the registry (health_view/healthy) and the change callbacks that drive the
health service's Watch: they fire after every register, scale, unregister and default switch, and
the state they see is already the new one.

A worker that cannot start on its device is the real way a version falls below minWorkers here:
`cuda:99` exists on no machine, so its worker fails at start (on a GPU host too)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from modelfleet.server.errors import ModelFleetError, Reason
from modelfleet.server.models.contracts import RegisterSpec
from modelfleet.server.models.registry import ModelRegistry

import mf_domain_harness as h

UNUSABLE = "cuda:99"


class Recorder:
    """A subscriber that snapshots what health would report each time it is called."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry
        self.views: list[dict[str, bool]] = []
        registry.subscribe(self)

    def __call__(self) -> None:
        self.views.append(self.registry.health_view())

    def calls_since(self, mark: int) -> list[dict[str, bool]]:
        return self.views[mark:]


async def test_an_empty_registry_is_healthy(registries: Any) -> None:
    registry = registries.new()
    assert registry.health_view() == {}
    assert registry.healthy() is True


async def test_observers_see_register_scale_set_default_and_unregister(registries: Any, tiny_model: Any) -> None:
    registry = registries.new(devices=("cpu", UNUSABLE))  # workers alternate: cpu, cuda:99, cpu, ...
    seen = Recorder(registry)

    await registry.register(RegisterSpec(url="tiny.pt#version=1.0", synchronous=True, initial_workers=1))  # on cpu
    assert seen.views and seen.views[-1] == {"tiny": True, "tiny/1.0": True}
    assert registry.healthy() is True

    mark = len(seen.views)
    await registry.register(RegisterSpec(url="tiny.pt#version=2.0", initial_workers=1))  # on cuda:99
    await h.eventually(lambda: not registry.get("tiny", "2.0").pool.workers, what="worker on cuda:99 gave up")
    assert seen.calls_since(mark)[-1] == {"tiny": True, "tiny/1.0": True, "tiny/2.0": False}
    assert registry.healthy() is True  # only default versions count

    mark = len(seen.views)
    registry.set_default("tiny", "2.0")
    assert seen.calls_since(mark) == [{"tiny": False, "tiny/1.0": True, "tiny/2.0": False}]
    assert registry.healthy() is False
    mark = len(seen.views)
    registry.set_default("tiny", "2.0")  # no change, no call
    assert seen.calls_since(mark) == []

    mark = len(seen.views)
    # the cycle is at cpu again: this worker starts and 2.0 serves
    await registry.scale("tiny", "2.0", min_workers=1, max_workers=1, synchronous=True, timeout_s=h.WAIT_S)
    assert seen.calls_since(mark)[-1] == {"tiny": True, "tiny/1.0": True, "tiny/2.0": True}
    assert registry.healthy() is True

    mark = len(seen.views)
    registry.set_default("tiny", "1.0")
    await registry.unregister("tiny", "2.0")
    assert seen.calls_since(mark)[-1] == {"tiny": True, "tiny/1.0": True}
    mark = len(seen.views)
    await registry.unregister("tiny", "1.0")
    assert seen.calls_since(mark)[-1] == {}


async def test_a_version_is_serving_only_with_min_workers_ready(registries: Any, tiny_model: Any) -> None:
    registry = registries.new(devices=("cpu", UNUSABLE))
    await registry.register(RegisterSpec(url="tiny.pt", synchronous=True, initial_workers=1))
    # two workers wanted: the one on cuda:99 never becomes ready, so the version is below its minimum
    await registry.scale("tiny", None, min_workers=2, max_workers=2, synchronous=False, timeout_s=None)
    await h.eventually(lambda: len(registry.get("tiny").pool.workers) == 1, what="failed worker removed")
    assert registry.get("tiny").pool.ready_count == 1
    assert registry.health_view() == {"tiny": False, "tiny/1.0": False}
    assert registry.healthy() is False
    assert registry.describe("tiny", None)[0].min_workers == 2


async def test_a_failing_observer_does_not_break_the_registry(registries: Any, tiny_model: Any) -> None:
    registry = registries.new()
    calls: list[str] = []

    def broken() -> None:
        calls.append("broken")
        raise RuntimeError("observer bug")

    registry.subscribe(broken)
    registry.subscribe(lambda: calls.append("fine"))
    await registry.register(RegisterSpec(url="tiny.pt", synchronous=True, initial_workers=1))
    assert "fine" in calls and calls.count("broken") == calls.count("fine")
    await h.predict(registry, "tiny", h.rows_json(h.seeded_rows(1, seed=0)))


async def test_a_synchronous_register_whose_workers_cannot_start_fails_and_registers_nothing(
    registries: Any, tiny_model: Any
) -> None:
    registry = registries.new(devices=(UNUSABLE,))
    with pytest.raises(ModelFleetError) as caught:
        await asyncio.wait_for(
            registry.register(RegisterSpec(url="tiny.pt", synchronous=True, initial_workers=1)), h.WAIT_S
        )
    assert caught.value.reason is Reason.LOAD_FAILED
    assert registry.model_names() == [] and registry.health_view() == {}
