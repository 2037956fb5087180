"""grpc.health.v1 on both API ports follows the registry: per model, per version, overall, drain."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc
from grpc_health.v1 import health_pb2

from modelfleet.protos import management_pb2

R = health_pb2.HealthCheckResponse
SERVING, NOT_SERVING, UNKNOWN = R.SERVING, R.NOT_SERVING, R.SERVICE_UNKNOWN


class Watcher:
    """A Watch stream whose statuses are collected in the background."""

    def __init__(self, api: Any, service: str) -> None:
        self.call = api.health.Watch(health_pb2.HealthCheckRequest(service=service))
        self.seen: list[int] = []
        self.task = asyncio.ensure_future(self._collect())

    async def _collect(self) -> None:
        async for reply in self.call:
            self.seen.append(reply.status)

    async def until(self, api: Any, status: int) -> None:
        async def arrived() -> bool:
            return bool(self.seen) and self.seen[-1] == status

        await api.wait_for(arrived, what=f"Watch to report {R.ServingStatus.Name(status)} (seen {self.seen})")


async def test_check_reports_models_versions_and_unknown_names(api: Any, make_model: Callable[..., Any]) -> None:
    make_model("tiny.pt")
    await api.register("tiny.pt")
    for stub in (api.health, api.management_health):
        for service in ("", "tiny", "tiny/1.0", "modelfleet.liveness"):
            assert (await stub.Check(health_pb2.HealthCheckRequest(service=service))).status == SERVING
    for service in ("nope", "tiny/9.9"):
        got = await api.failure(api.health.Check(health_pb2.HealthCheckRequest(service=service)))
        assert got.code == grpc.StatusCode.NOT_FOUND


async def test_watch_follows_register_scale_set_default_unregister_and_drain(
    api: Any, make_model: Callable[..., Any]
) -> None:
    make_model("tiny.pt")
    model, version2, overall, liveness = (Watcher(api, s) for s in ("tiny", "tiny/2.0", "", "modelfleet.liveness"))
    await model.until(api, UNKNOWN)
    await overall.until(api, SERVING)  # nothing desired, nothing registered
    await api.register("tiny.pt#version=1.0", model_name="tiny")
    await model.until(api, SERVING)
    await api.register("tiny.pt#version=2.0", model_name="tiny", synchronous=False)
    await version2.until(api, SERVING)

    await api.management.ScaleWorker(
        management_pb2.ScaleWorkerRequest(model_name="tiny", min_worker=2, synchronous=True)
    )
    assert await api.check("tiny") == SERVING and await api.check("") == SERVING
    assert set(model.seen) <= {UNKNOWN, SERVING, NOT_SERVING}

    await api.management.SetDefault(management_pb2.SetDefaultRequest(model_name="tiny", model_version="2.0"))
    await api.management.UnregisterModel(management_pb2.UnregisterModelRequest(model_name="tiny", model_version="1.0"))
    assert await api.check("tiny") == SERVING  # its default (2.0) still serves
    await api.management.UnregisterModel(management_pb2.UnregisterModelRequest(model_name="tiny"))
    await model.until(api, UNKNOWN)
    await version2.until(api, UNKNOWN)
    got = await api.failure(api.health.Check(health_pb2.HealthCheckRequest(service="tiny")))
    assert got.code == grpc.StatusCode.NOT_FOUND

    await api.register("tiny.pt")
    await model.until(api, SERVING)
    await api.app.stop()  # the drain a SIGTERM starts
    for watcher in (model, overall, liveness):
        await asyncio.wait_for(watcher.task, 30)  # the stream ends OK once draining
        assert watcher.seen[-1] == NOT_SERVING
        assert await watcher.call.code() == grpc.StatusCode.OK
    assert liveness.seen == [SERVING, NOT_SERVING]
