"""A real in-process app on 127.0.0.1:0 with stubs for both Open Inference packages, TorchServe's
inference API and management, plus tiny models every datatype goes through."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import warnings
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import torch
from grpc import aio

from modelfleet.protos import (
    inference_pb2_grpc,
    management_pb2,
    management_pb2_grpc,
    open_inference_pb2,
    open_inference_pb2_grpc,
    torchserve_open_inference_pb2,
    torchserve_open_inference_pb2_grpc,
)
from modelfleet.server.app import App, running_app
from modelfleet.server.settings import (
    AuthSettings,
    ModelSettings,
    NetworkSettings,
    Settings,
    ShutdownSettings,
    SourceSettings,
)

PACKAGES = {"inference": open_inference_pb2, "torchserve": torchserve_open_inference_pb2}
"""The two proto packages the same service is served under."""


class Doubler(torch.nn.Module):
    """x + x: keeps the dtype, so every datatype torch can add goes through and comes back changed."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + x


class Features(torch.nn.Module):
    """Linear 4 -> 3 for the .pt2 tests (a dynamic batch dimension)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = torch.nn.Linear(4, 3)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features)


def write_scripted(module: torch.nn.Module, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.script(module).save(str(path))
    return path


def write_exported(path: Path) -> Path:
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(Features().eval(), (torch.zeros(2, 4),), dynamic_shapes={"features": {0: batch}})
    torch.export.save(program, str(path))
    return path


def write_folder(folder: Path, *, model: Path, files: dict[str, bytes], handler: str = "default") -> Path:
    """A TorchServe model folder (no-archive format) holding `model` and extra files."""
    (folder / "MAR-INF").mkdir(parents=True)
    manifest = {
        "runtime": "python",
        "model": {"modelName": folder.name, "serializedFile": model.name, "handler": handler, "modelVersion": "1.0"},
    }
    (folder / "MAR-INF" / "MANIFEST.json").write_text(json.dumps(manifest))
    model.rename(folder / model.name)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


def make_settings(tmp_path: Path, model_store: Path, **changes: Any) -> Settings:
    settings = Settings(
        network=NetworkSettings(inference_address="127.0.0.1:0", management_address="127.0.0.1:0"),
        auth=AuthSettings(enabled=False, enable_model_api=True, key_file=tmp_path / "key_file.json"),
        sources=SourceSettings(model_store=model_store),
        models=ModelSettings(default_workers=1),
        shutdown=ShutdownSettings(drain_delay_s=0.0, grace_s=5.0),
    )
    return dataclasses.replace(settings, **changes)


@dataclass
class Oip:
    """Stubs on one app: `oip` (package inference), `ts_oip` (TorchServe's package), and the rest."""

    app: App
    oip: open_inference_pb2_grpc.GRPCInferenceServiceStub
    ts_oip: torchserve_open_inference_pb2_grpc.GRPCInferenceServiceStub
    inference: inference_pb2_grpc.InferenceAPIsServiceStub
    management: management_pb2_grpc.ManagementAPIsServiceStub
    channel: aio.Channel

    def stub(self, package: str) -> Any:
        return self.oip if package == "inference" else self.ts_oip

    async def register(self, url: str, **fields: Any) -> None:
        fields.setdefault("synchronous", True)
        await self.management.RegisterModel(management_pb2.RegisterModelRequest(url=url, **fields), timeout=60)


@contextlib.asynccontextmanager
async def connected(settings: Settings, *, metadata: tuple[tuple[str, str], ...] = ()) -> AsyncIterator[Oip]:
    async with running_app(settings) as app:
        channel = aio.insecure_channel(app.inference_address)
        management = aio.insecure_channel(app.management_address)
        try:
            yield Oip(
                app=app,
                oip=open_inference_pb2_grpc.GRPCInferenceServiceStub(channel),
                ts_oip=torchserve_open_inference_pb2_grpc.GRPCInferenceServiceStub(channel),
                inference=inference_pb2_grpc.InferenceAPIsServiceStub(channel),
                management=management_pb2_grpc.ManagementAPIsServiceStub(management),
                channel=channel,
            )
        finally:
            await channel.close()
            await management.close()


@pytest.fixture
def settings_for(tmp_path: Path, model_store: Path) -> Callable[..., Settings]:
    return lambda **changes: make_settings(tmp_path, model_store, **changes)


@pytest.fixture
async def served(settings_for: Callable[..., Settings]) -> AsyncIterator[Oip]:
    """The app in its default (TorchServe) status mode: the OIP codes must not depend on it."""
    async with connected(settings_for()) as running:
        yield running


async def code_of(call: Any) -> tuple[grpc.StatusCode, str]:
    """Await a call that must fail; its code and details."""
    with pytest.raises(aio.AioRpcError) as raised:
        await call
    return raised.value.code(), raised.value.details() or ""
