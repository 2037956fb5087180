"""ModelInfer tensors through the `default` handler: every datatype torch takes, raw and typed, and
every bad tensor refused with INVALID_ARGUMENT (in the TorchServe status mode too) while serving goes on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import torch
from grpc import aio

from modelfleet.server.demo import write_torchscript

from mf_oip_harness import PACKAGES, Doubler, Oip, code_of, write_scripted

VALUES = [0, 1, 2, 3, 4, 5]
NUMPY = {
    "BOOL": "|b1",
    "UINT8": "|u1",
    "INT8": "|i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}
TYPED_FIELD = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
}


def values_of(datatype: str) -> list[Any]:
    return [value % 2 == 1 for value in VALUES] if datatype == "BOOL" else VALUES


def doubled(datatype: str) -> list[Any]:
    return values_of("BOOL") if datatype == "BOOL" else [2 * value for value in VALUES]  # True + True is True


def raw_bytes(datatype: str, values: list[Any]) -> bytes:
    if datatype == "BF16":
        return torch.tensor(values, dtype=torch.bfloat16).view(torch.int16).numpy().tobytes()
    return np.asarray(values, dtype=NUMPY[datatype]).tobytes()


def from_raw(datatype: str, data: bytes) -> list[Any]:
    if datatype == "BF16":
        return torch.frombuffer(bytearray(data), dtype=torch.bfloat16).tolist()
    return np.frombuffer(data, dtype=NUMPY[datatype]).tolist()


@pytest.fixture
async def doubler(served: Oip, model_store: Path) -> Oip:
    write_scripted(Doubler(), model_store / "doubler.pt")
    await served.register("doubler.pt")
    return served


@pytest.mark.parametrize("package", sorted(PACKAGES))
@pytest.mark.parametrize(
    "datatype", ["BOOL", "UINT8", "INT8", "INT16", "INT32", "INT64", "FP16", "BF16", "FP32", "FP64"]
)
async def test_raw_tensors_of_every_datatype_come_back_raw_with_dtype_and_shape(
    doubler: Oip, package: str, datatype: str
) -> None:
    pb = PACKAGES[package]
    request = pb.ModelInferRequest(model_name="doubler", id=datatype)
    request.inputs.add(name="input__0", datatype=datatype, shape=[2, 3])
    request.raw_input_contents.append(raw_bytes(datatype, values_of(datatype)))
    reply = await doubler.stub(package).ModelInfer(request, timeout=30)
    (output,) = reply.outputs
    assert (output.name, output.datatype, list(output.shape), reply.id) == ("output__0", datatype, [2, 3], datatype)
    assert from_raw(datatype, reply.raw_output_contents[0]) == doubled(datatype)


@pytest.mark.parametrize("package", sorted(PACKAGES))
@pytest.mark.parametrize("datatype", sorted(TYPED_FIELD))
async def test_typed_tensors_of_every_datatype_come_back_typed(doubler: Oip, package: str, datatype: str) -> None:
    pb = PACKAGES[package]
    request = pb.ModelInferRequest(model_name="doubler")
    tensor = request.inputs.add(name="input__0", datatype=datatype, shape=[2, 3])
    getattr(tensor.contents, TYPED_FIELD[datatype]).extend(values_of(datatype))
    reply = await doubler.stub(package).ModelInfer(request, timeout=30)
    (output,) = reply.outputs
    assert (output.datatype, list(output.shape), list(reply.raw_output_contents)) == (datatype, [2, 3], [])
    assert list(getattr(output.contents, TYPED_FIELD[datatype])) == doubled(datatype)


async def test_half_precision_outputs_come_back_raw_even_for_a_typed_request(doubler: Oip, model_store: Path) -> None:
    """FP16/BF16 have no typed field: a typed FP32 request to a model that answers FP16 gets raw bytes."""

    class Halver(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.half()

    write_scripted(Halver(), model_store / "halver.pt")
    await doubler.register("halver.pt")
    pb = PACKAGES["inference"]
    request = pb.ModelInferRequest(model_name="halver")
    request.inputs.add(name="x", datatype="FP32", shape=[3]).contents.fp32_contents.extend([1.0, 2.5, -3.0])
    reply = await doubler.oip.ModelInfer(request, timeout=30)
    assert (reply.outputs[0].datatype, list(reply.outputs[0].shape)) == ("FP16", [3])
    assert not reply.outputs[0].HasField("contents")
    assert from_raw("FP16", reply.raw_output_contents[0]) == [1.0, 2.5, -3.0]


def _with(pb: Any, build: Any) -> Any:
    request = pb.ModelInferRequest(model_name="tiny")
    build(request)
    return request


def _fp32(request: Any, name: str = "input__0", shape: tuple[int, ...] = (16,), count: int = 16) -> None:
    request.inputs.add(name=name, datatype="FP32", shape=list(shape)).contents.fp32_contents.extend([0.5] * count)


BAD_REQUESTS: dict[str, tuple[grpc.StatusCode, str, Any]] = {
    "unknown model": (grpc.StatusCode.NOT_FOUND, "nope", lambda r: (setattr(r, "model_name", "nope"), _fp32(r))),
    "unknown version": (grpc.StatusCode.NOT_FOUND, "9.9", lambda r: (setattr(r, "model_version", "9.9"), _fp32(r))),
    "no model name": (
        grpc.StatusCode.INVALID_ARGUMENT,
        "model_name",
        lambda r: (setattr(r, "model_name", ""), _fp32(r)),
    ),
    "no inputs": (grpc.StatusCode.INVALID_ARGUMENT, "no inputs", lambda r: None),
    "two inputs": (grpc.StatusCode.INVALID_ARGUMENT, "input__0 (FP32)", lambda r: (_fp32(r, "a"), _fp32(r, "b"))),
    "unknown output": (
        grpc.StatusCode.INVALID_ARGUMENT,
        "scores",
        lambda r: (_fp32(r), r.outputs.add(name="scores")),
    ),
    "typed count lies": (grpc.StatusCode.INVALID_ARGUMENT, "needs 32", lambda r: _fp32(r, shape=(2, 16))),
    "raw bytes lie": (
        grpc.StatusCode.INVALID_ARGUMENT,
        "needs 64",
        lambda r: (r.inputs.add(name="input__0", datatype="FP32", shape=[16]), r.raw_input_contents.append(b"\0" * 10)),
    ),
    "negative dimension": (grpc.StatusCode.INVALID_ARGUMENT, "negative", lambda r: _fp32(r, shape=(-1, 16))),
    "huge shape": (grpc.StatusCode.INVALID_ARGUMENT, "request limit", lambda r: _fp32(r, shape=(2**40, 2**20))),
    "unknown datatype": (
        grpc.StatusCode.INVALID_ARGUMENT,
        "FP8",
        lambda r: r.inputs.add(name="input__0", datatype="FP8", shape=[1]),
    ),
    "typed half precision": (
        grpc.StatusCode.INVALID_ARGUMENT,
        "raw_input_contents",
        lambda r: r.inputs.add(name="input__0", datatype="FP16", shape=[1]).contents.fp32_contents.append(1.0),
    ),
    "bytes into a tensor model": (
        grpc.StatusCode.INVALID_ARGUMENT,
        "numeric tensor",
        lambda r: r.inputs.add(name="input__0", datatype="BYTES", shape=[1]).contents.bytes_contents.append(b"x"),
    ),
    "a datatype torch lacks": (
        grpc.StatusCode.INVALID_ARGUMENT,
        "UINT32",
        lambda r: r.inputs.add(name="input__0", datatype="UINT32", shape=[16]).contents.uint_contents.extend([1] * 16),
    ),
    "a datatype the model refuses": (
        grpc.StatusCode.INVALID_ARGUMENT,
        "model rejected",
        lambda r: r.inputs.add(name="input__0", datatype="INT64", shape=[16]).contents.int64_contents.extend([1] * 16),
    ),
    "a shape the model refuses": (
        grpc.StatusCode.INVALID_ARGUMENT,
        "model rejected",
        lambda r: _fp32(r, shape=(5,), count=5),
    ),
}


@pytest.mark.parametrize("package", sorted(PACKAGES))
async def test_bad_requests_get_conventional_codes_and_the_server_keeps_serving(
    served: Oip, package: str, model_store: Path
) -> None:
    pb, stub = PACKAGES[package], served.stub(package)
    write_torchscript("tiny", model_store / "tiny.pt")
    await served.register("tiny.pt")
    good = _with(pb, _fp32)
    await stub.ModelInfer(good, timeout=30)  # the model learns its sample rank (1)
    for case, (code, said, build) in BAD_REQUESTS.items():
        got, details = await code_of(stub.ModelInfer(_with(pb, build), timeout=30))
        assert (case, got) == (case, code), details
        assert said in details, (case, details)
    assert len((await stub.ModelInfer(good, timeout=30)).outputs[0].contents.fp32_contents) == 4


async def test_an_undecodable_message_is_invalid_argument(served: Oip) -> None:
    for service in ("inference.GRPCInferenceService", "org.pytorch.serve.grpc.openinference.GRPCInferenceService"):
        call = served.channel.unary_unary(f"/{service}/ModelInfer")
        with pytest.raises(aio.AioRpcError) as raised:
            await call(b"\x0a\xff\xff\xff\xff\x0f", timeout=10)  # a length that runs past the message
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_torchserve_clients_can_ask_for_a_safetensors_answer(served: Oip, model_store: Path) -> None:
    """`accept: safetensors` on Predictions: a raw request learns its output's dtype and shape."""
    from safetensors.torch import load

    from modelfleet.protos import inference_pb2

    write_torchscript("tiny", model_store / "tiny.pt")
    await served.register("tiny.pt")
    batch = torch.rand(3, 16)
    inputs = {"data": batch.numpy().tobytes(), "dtype": b"float32", "shape": b"[3, 16]", "accept": b"safetensors"}
    reply = await served.inference.Predictions(
        inference_pb2.PredictionsRequest(model_name="tiny", input=inputs), timeout=30
    )
    output = load(reply.prediction)["output"]
    assert (output.dtype, list(output.shape)) == (torch.float32, [3, 4])
    json_inputs = {"data": b"[[0.5, 0.25, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]]", "accept": b"safetensors"}
    reply = await served.inference.Predictions(
        inference_pb2.PredictionsRequest(model_name="tiny", input=json_inputs), timeout=30
    )
    assert list(load(reply.prediction)["output"].shape) == [1, 4]
    with pytest.raises(aio.AioRpcError) as raised:
        await served.inference.Predictions(
            inference_pb2.PredictionsRequest(model_name="tiny", input={**inputs, "accept": b"msgpack"}), timeout=30
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "safetensors" in (raised.value.details() or "")


async def test_a_model_that_writes_its_input_in_place_never_changes_the_request(served: Oip, model_store: Path) -> None:
    class InPlace(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mul_(3)

    write_scripted(InPlace(), model_store / "inplace.pt")
    await served.register("inplace.pt")
    pb = PACKAGES["inference"]
    request = pb.ModelInferRequest(model_name="inplace")
    request.inputs.add(name="x", datatype="INT32", shape=[4])
    request.raw_input_contents.append(raw_bytes("INT32", [1, 2, 3, 4]))
    for _ in range(2):
        reply = await served.oip.ModelInfer(request, timeout=30)
        assert from_raw("INT32", reply.raw_output_contents[0]) == [3, 6, 9, 12]
