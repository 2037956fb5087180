"""ModelMetadata comes from the model (.pt2), else a declared signature (desired state, archive), else defaults."""

from __future__ import annotations

import dataclasses
import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
import torch
from grpc import aio

from modelfleet.server.demo import write_torchscript
from modelfleet.server.settings import ModelSettings, Settings

from mf_oip_harness import PACKAGES, Features, Oip, code_of, connected, write_exported, write_folder

pb = PACKAGES["inference"]

SIGNATURE = {
    "inputs": [{"name": "pixels", "datatype": "FP32", "shape": [-1, 16]}],
    "outputs": [{"name": "scores", "datatype": "FP32", "shape": [-1, 4]}],
}


def described(reply: Any) -> tuple[str, list[tuple[str, str, list[int]]], list[tuple[str, str, list[int]]]]:
    return (
        reply.platform,
        [(t.name, t.datatype, list(t.shape)) for t in reply.inputs],
        [(t.name, t.datatype, list(t.shape)) for t in reply.outputs],
    )


async def test_an_exported_program_describes_itself_with_a_dynamic_batch(served: Oip, model_store: Path) -> None:
    write_exported(model_store / "features.pt2")
    await served.register("features.pt2")
    reply = await served.oip.ModelMetadata(pb.ModelMetadataRequest(name="features"))
    assert described(reply) == (
        "pytorch_export",
        [("features", "FP32", [-1, 4])],
        [("output__0", "FP32", [-1, 3])],
    )
    request = pb.ModelInferRequest(model_name="features")
    request.inputs.add(name="features", datatype="FP32", shape=[3, 4]).contents.fp32_contents.extend([0.25] * 12)
    request.outputs.add(name="output__0")
    reply = await served.oip.ModelInfer(request, timeout=30)
    with torch.no_grad():
        expected = Features()(torch.full((3, 4), 0.25)).reshape(-1).tolist()
    assert list(reply.outputs[0].shape) == [3, 3]
    assert list(reply.outputs[0].contents.fp32_contents) == pytest.approx(expected, rel=1e-5)


async def test_a_signature_json_in_a_model_folder_is_reported_and_names_the_output(
    served: Oip, model_store: Path, tmp_path: Path
) -> None:
    model = write_torchscript("tiny", tmp_path / "tiny.pt")
    write_folder(model_store / "named", model=model, files={"signature.json": json.dumps(SIGNATURE).encode()})
    await served.register("named")
    reply = await served.oip.ModelMetadata(pb.ModelMetadataRequest(name="named"))
    assert described(reply) == ("pytorch_torchscript", [("pixels", "FP32", [-1, 16])], [("scores", "FP32", [-1, 4])])
    request = pb.ModelInferRequest(model_name="named")
    request.inputs.add(name="pixels", datatype="FP32", shape=[16]).contents.fp32_contents.extend([0.5] * 16)
    reply = await served.oip.ModelInfer(request, timeout=30)
    assert (reply.outputs[0].name, list(reply.outputs[0].shape)) == ("scores", [4])


async def test_a_signature_json_in_a_mar_is_reported(served: Oip, model_store: Path, tmp_path: Path) -> None:
    model = write_torchscript("tiny", tmp_path / "tiny.pt")
    manifest = {"runtime": "python", "model": {"modelName": "packed", "serializedFile": "tiny.pt", "handler": ""}}
    with zipfile.ZipFile(model_store / "packed.mar", "w") as archive:
        archive.writestr("MAR-INF/MANIFEST.json", json.dumps(manifest))
        archive.write(model, "tiny.pt")
        archive.writestr("signature.json", json.dumps(SIGNATURE))
    await served.register("packed.mar")
    reply = await served.ts_oip.ModelMetadata(PACKAGES["torchserve"].ModelMetadataRequest(name="packed"))
    assert described(reply)[1:] == ([("pixels", "FP32", [-1, 16])], [("scores", "FP32", [-1, 4])])


BAD_SIGNATURES = {
    "not JSON": b"{inputs",
    "unknown key": json.dumps({**SIGNATURE, "extra": 1}).encode(),
    "unknown datatype": json.dumps(
        {**SIGNATURE, "inputs": [{"name": "x", "datatype": "FLOAT", "shape": [1]}]}
    ).encode(),
    "shape below -1": json.dumps({**SIGNATURE, "inputs": [{"name": "x", "datatype": "FP32", "shape": [-2]}]}).encode(),
    "two inputs for the default handler": json.dumps(
        {**SIGNATURE, "inputs": SIGNATURE["inputs"] + [{"name": "y", "datatype": "FP32", "shape": [1]}]}
    ).encode(),
    "no outputs": json.dumps({"inputs": SIGNATURE["inputs"], "outputs": []}).encode(),
}


@pytest.mark.parametrize("case", sorted(BAD_SIGNATURES))
async def test_a_bad_signature_json_fails_the_register(
    served: Oip, model_store: Path, tmp_path: Path, case: str
) -> None:
    model = write_torchscript("tiny", tmp_path / "tiny.pt")
    write_folder(model_store / "broken", model=model, files={"signature.json": BAD_SIGNATURES[case]})
    code, details = await code_of(served.register("broken"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "signature" in details
    code, _ = await code_of(served.oip.ModelMetadata(pb.ModelMetadataRequest(name="broken")))
    assert code == grpc.StatusCode.NOT_FOUND  # nothing was registered


async def test_the_desired_state_declares_a_signature(
    settings_for: Callable[..., Settings], model_store: Path, tmp_path: Path
) -> None:
    write_torchscript("tiny", model_store / "tiny.pt")
    document = {"models": [{"name": "declared", "versions": [{"url": "tiny.pt"}], "signature": SIGNATURE}]}
    path = tmp_path / "desired.json"
    path.write_text(json.dumps(document))
    settings = settings_for()
    settings = dataclasses.replace(settings, models=dataclasses.replace(settings.models, desired_state_file=path))
    async with connected(settings) as running:
        assert running.app.desired_failures == []
        assert (await running.oip.ServerReady(pb.ServerReadyRequest())).ready is True
        reply = await running.oip.ModelMetadata(pb.ModelMetadataRequest(name="declared", version="1.0"))
        assert described(reply)[1:] == ([("pixels", "FP32", [-1, 16])], [("scores", "FP32", [-1, 4])])


def test_a_malformed_desired_state_signature_is_refused_when_read(tmp_path: Path) -> None:
    from modelfleet.server.errors import ModelFleetError
    from modelfleet.server.models.desired_state import parse_desired_state

    entry = {"name": "m", "versions": [{"url": "tiny.pt"}], "signature": {"inputs": [{"name": "x"}], "outputs": []}}
    with pytest.raises(ModelFleetError) as raised:
        parse_desired_state({"models": [entry]})
    assert "models[0].signature.inputs[0]" in raised.value.message


async def test_a_bytes_handler_model_reports_bytes_in_and_out(served: Oip, model_store: Path) -> None:
    class CountingUp(torch.nn.Module):
        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.one_hot((tokens[:, -1] + 1) % 50, 50).to(torch.float32)

    from mf_oip_harness import write_scripted

    write_scripted(CountingUp(), model_store / "counter.pt")
    await served.register("counter.pt", handler="generation")
    reply = await served.oip.ModelMetadata(pb.ModelMetadataRequest(name="counter"))
    assert described(reply) == ("pytorch_torchscript", [("data", "BYTES", [1])], [("output", "BYTES", [1])])


async def test_both_packages_list_in_reflection(served: Oip) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    stub = reflection_pb2_grpc.ServerReflectionStub(served.channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    replies = [reply async for reply in stub.ServerReflectionInfo(iter([request]), timeout=10)]
    names = {service.name for service in replies[0].list_services_response.service}
    assert {"inference.GRPCInferenceService", "org.pytorch.serve.grpc.openinference.GRPCInferenceService"} <= names
    assert "org.pytorch.serve.grpc.inference.InferenceAPIsService" in names
    for symbol in ("inference.GRPCInferenceService", "org.pytorch.serve.grpc.openinference.GRPCInferenceService"):
        request = reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)
        replies = [reply async for reply in stub.ServerReflectionInfo(iter([request]), timeout=10)]
        assert replies[0].file_descriptor_response.file_descriptor_proto, symbol


async def test_tokens_guard_both_packages_with_unauthenticated(
    settings_for: Callable[..., Settings], tmp_path: Path
) -> None:
    from modelfleet.server.settings import AuthSettings

    settings = settings_for()
    settings = dataclasses.replace(
        settings, auth=AuthSettings(enabled=True, enable_model_api=True, key_file=tmp_path / "keys.json")
    )
    async with connected(settings) as running:
        keys = json.loads((tmp_path / "keys.json").read_text())
        token = next(value["key"] for name, value in keys.items() if name.startswith("inference"))
        for package in sorted(PACKAGES):
            stub, package_pb = running.stub(package), PACKAGES[package]
            code, details = await code_of(stub.ServerLive(package_pb.ServerLiveRequest()))
            assert code == grpc.StatusCode.UNAUTHENTICATED, details  # not TorchServe's PERMISSION_DENIED
            reply = await stub.ServerLive(
                package_pb.ServerLiveRequest(), metadata=(("authorization", f"Bearer {token}"),)
            )
            assert reply.live is True
        stream = running.oip.ModelStreamInfer(iter([pb.ModelInferRequest(model_name="x")]))
        with pytest.raises(aio.AioRpcError) as raised:
            [reply async for reply in stream]
        assert raised.value.code() == grpc.StatusCode.UNAUTHENTICATED


_ = ModelSettings  # settings groups used via dataclasses.replace above
