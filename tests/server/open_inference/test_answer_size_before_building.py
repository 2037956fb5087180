"""The size of a ModelInfer answer is known before it is built, exactly, for every datatype and form.

Found by tests/server/attack/test_open_inference_attacks.py: a typed answer was built in full (an
INT8 -1 is a 10-byte varint: 800 kB raw became 8 MB) and only then measured, and a raw answer plus
an echoed id could pass the transport's limit (an ERROR traceback in the log, no ErrorInfo). Now
infer_response computes the serialized size first; these tests hold it to the byte.
"""

from __future__ import annotations

import dataclasses
import json
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from modelfleet.protos import open_inference_pb2, torchserve_open_inference_pb2
from modelfleet.server.errors import ModelFleetError, Reason
from modelfleet.server.rpc import oip_convert
from modelfleet.server.rpc.oip_tensors import contents_size, encode_output

NUMPY = {
    "BOOL": "|b1",
    "UINT8": "|u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "|i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP32": "<f4",
    "FP64": "<f8",
}
SAFETENSORS = {"BOOL": "BOOL", "UINT8": "U8", "UINT16": "U16", "UINT32": "U32", "UINT64": "U64", "INT8": "I8"}
SAFETENSORS |= {"INT16": "I16", "INT32": "I32", "INT64": "I64", "FP32": "F32", "FP64": "F64", "FP16": "F16"}


@pytest.fixture(params=[open_inference_pb2, torchserve_open_inference_pb2], ids=["inference", "torchserve"])
def pb(request: pytest.FixtureRequest) -> ModuleType:
    module: ModuleType = request.param
    return module


def edge_values(datatype: str, count: int) -> np.ndarray[Any, Any]:
    """Values at every varint length boundary of the type (and random ones), negatives included."""
    dtype = np.dtype(NUMPY[datatype])
    if dtype.kind == "b":
        return np.arange(count) % 3 == 0
    if dtype.kind == "f":
        return np.linspace(-1e6, 1e6, count).astype(dtype)
    info = np.iinfo(dtype)
    edges = [info.min, info.max, 0, 1, -1 if info.min < 0 else 2]
    edges += [v for bits in range(7, 64, 7) for v in (2**bits - 1, 2**bits, -(2**bits)) if info.min <= v <= info.max]
    rng = np.random.default_rng(7)
    values = rng.integers(info.min, info.max, size=count, dtype=dtype, endpoint=True)
    values[: len(edges)] = np.array(edges, dtype=dtype)[:count]
    return values


@pytest.mark.parametrize("datatype", sorted(NUMPY))
@pytest.mark.parametrize("count", [0, 1, 100, 5000])
def test_contents_size_is_what_the_typed_contents_take(pb: ModuleType, datatype: str, count: int) -> None:
    data = edge_values(datatype, count).tobytes()
    tensor = pb.ModelInferResponse.InferOutputTensor()
    encode_output(tensor, name="o", datatype=datatype, shape=[count], data=data, raw=False)
    assert contents_size(datatype, data) == tensor.contents.ByteSize()


@pytest.mark.parametrize("elements", [(), (b"",), (b"a", b"bc" * 100, b"\x00" * 20_000)])
def test_contents_size_of_bytes_elements(pb: ModuleType, elements: tuple[bytes, ...]) -> None:
    data = b"".join(len(e).to_bytes(4, "little") + e for e in elements)
    tensor = pb.ModelInferResponse.InferOutputTensor()
    encode_output(tensor, name="o", datatype="BYTES", shape=[len(elements)], data=data, raw=False)
    assert contents_size("BYTES", data) == tensor.contents.ByteSize()


def safetensors_answer(datatype: str, values: np.ndarray[Any, Any]) -> bytes:
    entry = {"dtype": SAFETENSORS[datatype], "shape": list(values.shape), "data_offsets": [0, values.nbytes]}
    header = json.dumps({"output": entry}).encode()
    return len(header).to_bytes(8, "little") + header + values.tobytes()


PLAN = oip_convert.Plan(
    target=None, name="m", version="1.0", inputs={}, tensor=True, output="output__0", raw=False, id="r-1"
)


@pytest.mark.parametrize("datatype", ["INT8", "INT64", "UINT64", "FP32", "BOOL", "FP16"])
@pytest.mark.parametrize("raw", [False, True], ids=["typed", "raw"])
@pytest.mark.parametrize("request_id", ["", "r-1", "i" * 70_000])
def test_an_answer_one_byte_over_the_limit_is_refused_and_one_at_the_limit_is_sent(
    pb: ModuleType, datatype: str, raw: bool, request_id: str
) -> None:
    values = edge_values(datatype, 3000) if datatype != "FP16" else np.linspace(-2, 2, 3000).astype("<f2")
    answer = safetensors_answer(datatype, values.reshape(30, 100))
    plan = dataclasses.replace(PLAN, raw=raw, id=request_id)
    size = oip_convert.infer_response(pb, plan, answer, max_bytes=1 << 30).ByteSize()
    assert oip_convert.infer_response(pb, plan, answer, max_bytes=size).ByteSize() == size
    with pytest.raises(ModelFleetError) as refused:
        oip_convert.infer_response(pb, plan, answer, max_bytes=size - 1)
    assert refused.value.reason == Reason.MESSAGE_TOO_LARGE
    assert f"{size:,} bytes" in refused.value.message
    typed = not raw and datatype != "FP16"  # FP16 has no typed field: always raw
    assert ("raw_input_contents" in refused.value.message) == typed


def test_a_bytes_answer_of_another_handler_is_sized_exactly_too(pb: ModuleType) -> None:
    plan = dataclasses.replace(PLAN, tensor=False, output="output")
    for raw in (False, True):
        answer = b'{"label": "cat"}' * 1000
        size = oip_convert.infer_response(pb, dataclasses.replace(plan, raw=raw), answer, max_bytes=1 << 30).ByteSize()
        with pytest.raises(ModelFleetError):
            oip_convert.infer_response(pb, dataclasses.replace(plan, raw=raw), answer, max_bytes=size - 1)
