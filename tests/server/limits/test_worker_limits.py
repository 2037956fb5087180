"""Workers are bounded per version and per server; a refused scale or register changes nothing.

Issue 10, finding 2: ScaleWorker(min_worker=2^31-1) started one OS thread per worker until the OS
refused, and the requested minimum was kept, leaving the model NOT_SERVING.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2

from modelfleet.protos import management_pb2
from modelfleet.server.errors import ErrorKind, ModelFleetError, Reason
from modelfleet.server.models.contracts import RegisterSpec
from modelfleet.server.models.registry import ModelRegistry
from modelfleet.server.settings import ModelSettings

import mf_domain_harness as h

INT32_MAX = 2**31 - 1


async def refused(call: Any) -> ModelFleetError:
    with pytest.raises(ModelFleetError) as raised:
        await call
    error = raised.value
    assert (error.kind, error.reason) == (ErrorKind.RESOURCE_EXHAUSTED, Reason.LIMIT_EXCEEDED), error
    return error


def state(registry: ModelRegistry) -> list[tuple[str, str, int, int, int, bool]]:
    return [
        (v.key.name, v.key.version, v.min_workers, v.max_workers, len(v.pool.workers), v.serving)
        for v in registry.versions()
    ]


async def test_scaling_one_version_past_its_limit_is_refused_and_changes_nothing(
    registries: Any, tiny_model: Any
) -> None:
    registry: ModelRegistry = registries.new(cpus=2)  # default limit: 4 x 2 CPUs = 8
    await registry.register(RegisterSpec(url="tiny.pt", synchronous=True, initial_workers=1))
    before = state(registry)
    for low, high in ((INT32_MAX, INT32_MAX), (9, 0), (1, INT32_MAX), (2, 9)):
        error = await refused(
            registry.scale("tiny", None, min_workers=low, max_workers=high, synchronous=True, timeout_s=5)
        )
        assert "the server's limit is 8" in error.message
        assert "--worker-limit-per-version" in error.message
        assert "MODELFLEET_WORKER_LIMIT_PER_VERSION" in error.message
        assert state(registry) == before == [("tiny", "1.0", 1, 1, 1, True)]
    assert h.as_tensor(await h.predict(registry, "tiny", h.rows_json(h.seeded_rows(1, seed=1)))).shape == (1, 4)
    await registry.scale("tiny", None, min_workers=8, max_workers=8, synchronous=True, timeout_s=h.WAIT_S)
    assert state(registry) == [("tiny", "1.0", 8, 8, 8, True)]


async def test_the_per_version_limit_follows_gpus_when_workers_go_on_gpus() -> None:
    from modelfleet.server.models.limits import Limits

    assert Limits.from_settings(ModelSettings(), devices=["cuda:0", "cuda:1"], cpus=16).workers_per_version == 8
    assert Limits.from_settings(ModelSettings(), devices=["cpu"], cpus=16).workers_per_version == 64
    chosen = ModelSettings(worker_limit_per_version=3)
    assert Limits.from_settings(chosen, devices=["cpu"], cpus=16).workers_per_version == 3


async def test_register_with_more_initial_workers_than_a_version_may_have_is_refused(
    registries: Any, tiny_model: Any
) -> None:
    registry: ModelRegistry = registries.new(cpus=2)
    error = await refused(registry.register(RegisterSpec(url="tiny.pt", initial_workers=INT32_MAX)))
    assert "initial_workers 2147483647" in error.message
    assert registry.versions() == []
    too_many_by_default: ModelRegistry = registries.new(cpus=2, default_workers=9)
    error = await refused(too_many_by_default.register(RegisterSpec(url="tiny.pt", initial_workers=0)))
    assert "the default worker count 9" in error.message


async def test_the_per_server_total_counts_the_workers_of_every_model(
    registries: Any, make_model: Callable[..., Any]
) -> None:
    make_model("a.pt")
    make_model("b.pt")
    make_model("c.pt")
    registry: ModelRegistry = registries.new(cpus=2, worker_limit=4)
    await registry.register(RegisterSpec(url="a.pt", synchronous=True, initial_workers=2))
    await registry.register(RegisterSpec(url="b.pt", synchronous=True, initial_workers=2))
    before = state(registry)

    error = await refused(registry.scale("a", None, min_workers=3, max_workers=3, synchronous=True, timeout_s=5))
    assert "would make 5 worker threads" in error.message and "--worker-limit " in error.message
    await refused(registry.register(RegisterSpec(url="c.pt", synchronous=True, initial_workers=1)))
    assert state(registry) == before

    await registry.scale("b", None, min_workers=1, max_workers=1, synchronous=True, timeout_s=5)
    await registry.scale("a", None, min_workers=3, max_workers=3, synchronous=True, timeout_s=h.WAIT_S)
    assert sum(len(v.pool.workers) for v in registry.versions()) == 4


async def test_concurrent_registrations_cannot_overshoot_the_worker_total(registries: Any, tiny_model: Any) -> None:
    registry: ModelRegistry = registries.new(cpus=2, worker_limit=5)
    outcomes = await h.gather_outcomes(
        [registry.register(RegisterSpec(url="tiny.pt", model_name=f"m{i}", initial_workers=1)) for i in range(20)]
    )
    refusals = [o for o in outcomes if isinstance(o, ModelFleetError)]
    assert all(r.reason is Reason.LIMIT_EXCEEDED for r in refusals), refusals
    assert len(registry.versions()) == 5 == 20 - len(refusals)
    assert sum(len(v.pool.workers) for v in registry.versions()) == 5


# ---- over the wire, both status modes -------------------------------------------------------------
async def test_scale_worker_to_int32_max_is_resource_exhausted_and_the_model_keeps_serving(
    api: Any, make_model: Callable[..., Any]
) -> None:
    make_model("tiny.pt")
    await api.register("tiny.pt", initial_workers=1)
    before = await api.snapshot()
    for request in (
        management_pb2.ScaleWorkerRequest(model_name="tiny", min_worker=INT32_MAX, max_worker=INT32_MAX),
        management_pb2.ScaleWorkerRequest(model_name="tiny", min_worker=INT32_MAX, synchronous=True),
        management_pb2.ScaleWorkerRequest(model_name="tiny", min_worker=1, max_worker=INT32_MAX),
    ):
        got = await api.failure(api.management.ScaleWorker(request))
        assert (got.code, got.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "LIMIT_EXCEEDED")
        assert "--worker-limit-per-version" in got.details and len(got.details) < 300
        assert got.metadata["limit"] == "worker_limit_per_version"
    assert await api.snapshot() == before
    assert (await api.describe("tiny"))[0]["minWorkers"] == 1
    assert await api.check("tiny") == health_pb2.HealthCheckResponse.SERVING
    assert len(await api.predict("tiny")) == 4

    got = await api.failure(api.register("tiny.pt#version=2.0", model_name="tiny", initial_workers=INT32_MAX))
    assert (got.code, got.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "LIMIT_EXCEEDED")
    assert await api.snapshot() == before


def test_default_workers_above_the_per_version_limit_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    from modelfleet.server.cli import parse_settings

    with pytest.raises(SystemExit) as exited:
        parse_settings(["--default-workers", "9", "--worker-limit-per-version", "8"], {})
    assert exited.value.code == 2
    assert "--default-workers cannot be more than --worker-limit-per-version" in capsys.readouterr().err
    assert parse_settings(["--default-workers", "8", "--worker-limit-per-version", "8"], {}).models.default_workers == 8
