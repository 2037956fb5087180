"""A real in-process ModelFleet app on 127.0.0.1:0 with real grpc.aio stubs, for the API tests."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from modelfleet.protos import inference_pb2, inference_pb2_grpc, management_pb2, management_pb2_grpc
from modelfleet.server.app import App, running_app
from modelfleet.server.rpc.error_details import error_info_from_trailer
from modelfleet.server.settings import (
    AuthSettings,
    ModelSettings,
    NetworkSettings,
    Settings,
    ShutdownSettings,
    SourceSettings,
)

import mf_polling as polling

SAMPLE = [float(i) / 16 for i in range(16)]
"""One input sample of the tiny model (Linear 16 -> 4)."""
SAMPLE_BYTES = json.dumps(SAMPLE).encode()


def make_settings(tmp_path: Path, model_store: Path, **changes: Any) -> Settings:
    """Loopback port 0 everywhere, auth off, model API on, one worker per model; override by group."""
    settings = Settings(
        network=NetworkSettings(inference_address="127.0.0.1:0", management_address="127.0.0.1:0"),
        auth=AuthSettings(enabled=False, enable_model_api=True, key_file=tmp_path / "key_file.json"),
        sources=SourceSettings(model_store=model_store),
        models=ModelSettings(default_workers=1),
        shutdown=ShutdownSettings(drain_delay_s=0.0, grace_s=5.0),
    )
    return dataclasses.replace(settings, **changes)


@dataclass
class Failure:
    code: grpc.StatusCode
    details: str
    reason: str | None
    metadata: dict[str, str]


@dataclass
class Api:
    """Stubs on one app's ports, plus helpers the tests share."""

    app: App
    inference: inference_pb2_grpc.InferenceAPIsServiceStub
    management: management_pb2_grpc.ManagementAPIsServiceStub
    health: health_pb2_grpc.HealthStub
    management_health: health_pb2_grpc.HealthStub

    sample = SAMPLE
    sample_bytes = SAMPLE_BYTES

    @staticmethod
    async def failure(call: Awaitable[Any]) -> Failure:
        """Await a call that must fail; its code, details and ErrorInfo."""
        with pytest.raises(aio.AioRpcError) as raised:
            await call
        error = raised.value
        info = error_info_from_trailer(list(error.trailing_metadata() or ()))
        return Failure(
            code=error.code(),
            details=error.details() or "",
            reason=None if info is None else info.reason,
            metadata={} if info is None else dict(info.metadata),
        )

    @staticmethod
    async def wait_for(condition: Callable[[], Awaitable[bool]], *, timeout: float = 30.0, what: str = "") -> None:
        """Poll an async condition until true (bounded); never a fixed sleep."""
        await polling.eventually(condition, timeout=timeout, what=what)

    async def register(self, url: str, **fields: Any) -> str:
        fields.setdefault("synchronous", True)
        reply = await self.management.RegisterModel(management_pb2.RegisterModelRequest(url=url, **fields))
        return str(reply.msg)

    async def describe(self, name: str, version: str = "") -> list[dict[str, Any]]:
        reply = await self.management.DescribeModel(
            management_pb2.DescribeModelRequest(model_name=name, model_version=version)
        )
        result: list[dict[str, Any]] = json.loads(reply.msg)
        return result

    async def list_models(self, limit: int = 0, token: int = 0) -> dict[str, Any]:
        reply = await self.management.ListModels(management_pb2.ListModelsRequest(limit=limit, next_page_token=token))
        result: dict[str, Any] = json.loads(reply.msg)
        return result

    async def predict(self, name: str, version: str = "", data: bytes = SAMPLE_BYTES) -> list[float]:
        reply = await self.inference.Predictions(
            inference_pb2.PredictionsRequest(model_name=name, model_version=version, input={"data": data}),
            timeout=30,
        )
        result: list[float] = json.loads(reply.prediction)
        return result

    async def check(self, service: str) -> int:
        reply = await self.health.Check(health_pb2.HealthCheckRequest(service=service))
        return int(reply.status)

    async def snapshot(self) -> tuple[dict[str, Any], list[Any]]:
        """What a client can see of the state: the model list and every model's full description."""
        listing = await self.list_models()
        described = [await self.describe(m["modelName"], "all") for m in listing["models"]]
        for versions in described:  # worker start times and memory are not state
            for version in versions:
                for worker in version["workers"]:
                    worker.pop("memoryUsage", None)
        return listing, described


@dataclass
class Connected:
    api: Api
    channels: list[aio.Channel]


async def connect(app: App) -> Connected:
    inference = aio.insecure_channel(app.inference_address)
    management = aio.insecure_channel(app.management_address)
    api = Api(
        app=app,
        inference=inference_pb2_grpc.InferenceAPIsServiceStub(inference),
        management=management_pb2_grpc.ManagementAPIsServiceStub(management),
        health=health_pb2_grpc.HealthStub(inference),
        management_health=health_pb2_grpc.HealthStub(management),
    )
    return Connected(api, [inference, management])


@pytest.fixture
def start_api(tmp_path: Path, model_store: Path) -> Callable[..., Any]:
    """`async with start_api(**settings_changes) as api:` a running app and stubs on it."""
    import contextlib

    @contextlib.asynccontextmanager
    async def start(*, wait_loaded: bool = True, **changes: Any) -> AsyncIterator[Api]:
        async with running_app(make_settings(tmp_path, model_store, **changes), wait_loaded=wait_loaded) as app:
            connected = await connect(app)
            try:
                yield connected.api
            finally:
                for channel in connected.channels:
                    await channel.close()

    return start


@pytest.fixture
def settings_for(tmp_path: Path, model_store: Path) -> Callable[..., Settings]:
    """`settings_for(**changes)`: the test settings with some groups replaced."""
    return lambda **changes: make_settings(tmp_path, model_store, **changes)


@pytest.fixture(params=["torchserve", "conventional"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def api(start_api: Callable[..., Any], mode: str) -> AsyncIterator[Api]:
    """A running app in each status-code mode, model API on, auth off."""
    async with start_api(status_mode=mode) as running:
        yield running


GATE_HANDLER = '''"""Test handler: each request waits at a gate the test opens (in-process only)."""
import json
import threading

import torch

ENTERED = threading.Event()
RELEASE = threading.Event()


def preprocess(inputs):
    ENTERED.set()
    if not RELEASE.wait(60):
        raise ValueError("the test never opened the gate")
    return torch.tensor([json.loads(inputs["data"])], dtype=torch.float32)
'''


@pytest.fixture
def gate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A trusted handler module `mf_gate_handler` whose requests block until `gate.RELEASE.set()`."""
    import importlib
    import sys
    import threading

    folder = tmp_path / "handlers"
    folder.mkdir()
    (folder / "mf_gate_handler.py").write_text(GATE_HANDLER)
    monkeypatch.syspath_prepend(str(folder))
    module = sys.modules.get("mf_gate_handler") or importlib.import_module("mf_gate_handler")
    module.ENTERED = threading.Event()
    module.RELEASE = threading.Event()
    yield module
    module.RELEASE.set()  # frees worker threads a test left waiting
