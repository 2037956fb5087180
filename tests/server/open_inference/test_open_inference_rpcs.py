"""Every GRPCInferenceService RPC, under both package names, on the inference port of a real server."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path
from typing import Any

import grpc
import pytest
import torch

from modelfleet.protos import inference_pb2, management_pb2
from modelfleet.server.demo import build_module, write_torchscript

from mf_oip_harness import PACKAGES, Oip, code_of

SAMPLE = [float(i) / 16 for i in range(16)]


def expected(sample: list[list[float]]) -> list[list[float]]:
    with torch.no_grad():
        result: list[list[float]] = build_module("tiny")(torch.tensor(sample)).tolist()
    return result


@pytest.fixture(params=sorted(PACKAGES))
def package(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_server_live_ready_and_metadata(served: Oip, package: str) -> None:
    pb, stub = PACKAGES[package], served.stub(package)
    assert (await stub.ServerLive(pb.ServerLiveRequest())).live is True
    assert (await stub.ServerReady(pb.ServerReadyRequest())).ready is True  # an empty desired state is met
    metadata = await stub.ServerMetadata(pb.ServerMetadataRequest())
    assert metadata.name == "modelfleet"
    assert metadata.version == importlib.metadata.version("modelfleet-server")
    assert list(metadata.extensions) == []  # nothing optional is served


async def test_server_ready_follows_the_overall_health(served: Oip, package: str) -> None:
    pb, stub = PACKAGES[package], served.stub(package)
    served.app.health.set_all_not_serving()  # what a drain does first
    assert (await stub.ServerReady(pb.ServerReadyRequest())).ready is False
    assert (await stub.ServerLive(pb.ServerLiveRequest())).live is True


async def test_model_ready_is_true_for_a_serving_version_and_not_found_for_unknown_ones(
    served: Oip, package: str, model_store: Path
) -> None:
    pb, stub = PACKAGES[package], served.stub(package)
    write_torchscript("tiny", model_store / "tiny.pt")
    await served.register("tiny.pt")
    assert (await stub.ModelReady(pb.ModelReadyRequest(name="tiny"))).ready is True
    assert (await stub.ModelReady(pb.ModelReadyRequest(name="tiny", version="1.0"))).ready is True
    code, details = await code_of(stub.ModelReady(pb.ModelReadyRequest(name="nope")))
    assert code == grpc.StatusCode.NOT_FOUND and "nope" in details
    code, _ = await code_of(stub.ModelReady(pb.ModelReadyRequest(name="tiny", version="9")))
    assert code == grpc.StatusCode.NOT_FOUND
    code, _ = await code_of(stub.ModelReady(pb.ModelReadyRequest(name="")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


async def test_model_ready_is_false_while_no_worker_runs(served: Oip, package: str, model_store: Path) -> None:
    pb, stub = PACKAGES[package], served.stub(package)
    write_torchscript("tiny", model_store / "tiny.pt")
    await served.register("tiny.pt")
    served.app.registry.get("tiny").pool.scale(0)  # no worker: known but not ready
    assert (await stub.ModelReady(pb.ModelReadyRequest(name="tiny"))).ready is False
    request = pb.ModelInferRequest(model_name="tiny")
    request.inputs.add(name="input__0", datatype="FP32", shape=[16]).contents.fp32_contents.extend(SAMPLE)
    code, _ = await code_of(stub.ModelInfer(request))
    assert code == grpc.StatusCode.UNAVAILABLE


async def test_model_metadata_of_a_torchscript_model_gives_the_documented_defaults(
    served: Oip, package: str, model_store: Path
) -> None:
    pb, stub = PACKAGES[package], served.stub(package)
    write_torchscript("tiny", model_store / "tiny.pt")
    write_torchscript("tiny", model_store / "tiny2.pt")
    await served.register("tiny.pt")
    await served.register("tiny2.pt#version=2.0", model_name="tiny")
    metadata = await stub.ModelMetadata(pb.ModelMetadataRequest(name="tiny"))
    assert metadata.name == "tiny"
    assert list(metadata.versions) == ["1.0", "2.0"]
    assert metadata.platform == "pytorch_torchscript"
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.inputs] == [("input__0", "FP32", [-1])]
    assert [(t.name, t.datatype, list(t.shape)) for t in metadata.outputs] == [("output__0", "FP32", [-1])]
    code, _ = await code_of(stub.ModelMetadata(pb.ModelMetadataRequest(name="tiny", version="3.0")))
    assert code == grpc.StatusCode.NOT_FOUND
    code, _ = await code_of(stub.ModelMetadata(pb.ModelMetadataRequest(name="nope")))
    assert code == grpc.StatusCode.NOT_FOUND

    infer = pb.ModelInferRequest(model_name="tiny")
    infer.inputs.add(name="input__0", datatype="FP32", shape=[16]).contents.fp32_contents.extend(SAMPLE)
    await stub.ModelInfer(infer)  # the model learns its sample rank from its first request
    metadata = await stub.ModelMetadata(pb.ModelMetadataRequest(name="tiny", version="1.0"))
    assert list(metadata.inputs[0].shape) == [-1, -1]


async def test_model_infer_with_typed_and_raw_tensors_under_both_packages(
    served: Oip, package: str, model_store: Path
) -> None:
    pb, stub = PACKAGES[package], served.stub(package)
    write_torchscript("tiny", model_store / "tiny.pt")
    await served.register("tiny.pt")
    batch = [SAMPLE, SAMPLE[::-1]]

    typed = pb.ModelInferRequest(model_name="tiny", id="typed-1")
    typed.inputs.add(name="input__0", datatype="FP32", shape=[2, 16]).contents.fp32_contents.extend(batch[0] + batch[1])
    reply = await stub.ModelInfer(typed, timeout=30)
    assert (reply.model_name, reply.model_version, reply.id) == ("tiny", "1.0", "typed-1")
    (output,) = reply.outputs
    assert (output.name, output.datatype, list(output.shape)) == ("output__0", "FP32", [2, 4])
    assert list(reply.raw_output_contents) == []
    assert list(output.contents.fp32_contents) == pytest.approx(sum(expected(batch), []), rel=1e-5)

    raw = pb.ModelInferRequest(model_name="tiny", model_version="1.0", id="raw-1")
    raw.inputs.add(name="input__0", datatype="FP32", shape=[2, 16])
    raw.raw_input_contents.append(torch.tensor(batch).numpy().tobytes())
    reply = await stub.ModelInfer(raw, timeout=30)
    (output,) = reply.outputs
    assert (output.datatype, list(output.shape), reply.id) == ("FP32", [2, 4], "raw-1")
    assert not output.HasField("contents")
    values = torch.frombuffer(bytearray(reply.raw_output_contents[0]), dtype=torch.float32).reshape(2, 4)
    assert sum(values.tolist(), []) == pytest.approx(sum(expected(batch), []), rel=1e-5)


async def test_requested_outputs_and_parameters(served: Oip, package: str, model_store: Path) -> None:
    pb, stub = PACKAGES[package], served.stub(package)
    write_torchscript("tiny", model_store / "tiny.pt")
    await served.register("tiny.pt")
    request = pb.ModelInferRequest(model_name="tiny")
    request.parameters["priority"].int64_param = 3  # unknown parameters are accepted and ignored
    request.inputs.add(name="input__0", datatype="FP32", shape=[16]).contents.fp32_contents.extend(SAMPLE)
    request.outputs.add(name="output__0")
    reply = await stub.ModelInfer(request, timeout=30)
    assert [o.name for o in reply.outputs] == ["output__0"]
    assert list(reply.outputs[0].shape) == [4]  # one sample in, one sample out
    del request.outputs[:]
    request.outputs.add(name="logits")
    code, details = await code_of(stub.ModelInfer(request))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "logits" in details and "output__0" in details


async def test_a_model_registered_through_management_serves_both_apis(served: Oip, model_store: Path) -> None:
    write_torchscript("tiny", model_store / "tiny.pt")
    await served.register("tiny.pt")
    torchserve = await served.inference.Predictions(
        inference_pb2.PredictionsRequest(model_name="tiny", input={"data": json.dumps(SAMPLE).encode()}), timeout=30
    )
    request = open_inference_pb2_request(SAMPLE)
    reply = await served.oip.ModelInfer(request, timeout=30)
    assert list(reply.outputs[0].contents.fp32_contents) == pytest.approx(json.loads(torchserve.prediction), rel=1e-6)
    await served.management.UnregisterModel(management_pb2.UnregisterModelRequest(model_name="tiny"))
    code, _ = await code_of(served.oip.ModelInfer(request))
    assert code == grpc.StatusCode.NOT_FOUND


def open_inference_pb2_request(sample: list[float]) -> Any:
    pb = PACKAGES["inference"]
    request = pb.ModelInferRequest(model_name="tiny")
    request.inputs.add(name="input__0", datatype="FP32", shape=[len(sample)]).contents.fp32_contents.extend(sample)
    return request
