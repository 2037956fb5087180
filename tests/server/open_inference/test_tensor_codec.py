"""The Open Inference Protocol tensor codec (rpc/oip_tensors.py): what a KServe/Triton client sends comes out as
the little-endian bytes the handler reads, answers go back in the form the client reads, and every malformed
input is INVALID_ARGUMENT naming the input, before the server allocates anything sized by the client.

Requests are built with the real stubs of both proto packages and pass through the wire (serialize, parse)."""

from __future__ import annotations

import json
import tracemalloc
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.numpy import save as save_numpy
from safetensors.torch import save as save_torch

from modelfleet.protos import open_inference_pb2, torchserve_open_inference_pb2
from modelfleet.server.errors import ErrorKind, ModelFleetError, Reason
from modelfleet.server.rpc.oip_tensors import (
    OIP_DATATYPES,
    TORCH_UNSUPPORTED,
    InputTensor,
    decode_inputs,
    encode_output,
    oip_datatype_of,
    read_safetensors_answer,
)

MAX_BYTES = 6_553_500
"""The server's default request size limit."""


@pytest.fixture(params=[open_inference_pb2, torchserve_open_inference_pb2], ids=["inference", "torchserve"])
def pb(request: pytest.FixtureRequest) -> ModuleType:
    module: ModuleType = request.param
    return module


def _bf16(values: list[float]) -> np.ndarray[Any, Any]:
    """bfloat16 bit patterns (numpy has no bfloat16): the top half of each float32."""
    return (np.array(values, dtype="<f4").view("<u4") >> 16).astype("<u2")


def _sample(values: Any, dtype: str) -> tuple[np.ndarray[Any, Any], str]:
    return np.array(values, dtype=dtype), dtype


SAMPLES: dict[str, tuple[np.ndarray[Any, Any], str]] = {
    # datatype: (values shaped [2, 3], little-endian numpy dtype of the wire bytes)
    "BOOL": _sample([[True, False, True], [False, False, True]], "|b1"),
    "UINT8": _sample([[0, 1, 2], [127, 128, 255]], "|u1"),
    "UINT16": _sample([[0, 1, 256], [2**15, 2**16 - 2, 2**16 - 1]], "<u2"),
    "UINT32": _sample([[0, 1, 2**16], [2**31, 2**32 - 2, 2**32 - 1]], "<u4"),
    "UINT64": _sample([[0, 1, 2**32], [2**63, 2**64 - 2, 2**64 - 1]], "<u8"),
    "INT8": _sample([[-128, -1, 0], [1, 100, 127]], "|i1"),
    "INT16": _sample([[-(2**15), -1, 0], [1, 300, 2**15 - 1]], "<i2"),
    "INT32": _sample([[-(2**31), -1, 0], [1, 2**20, 2**31 - 1]], "<i4"),
    "INT64": _sample([[-(2**63), -1, 0], [1, 2**40, 2**63 - 1]], "<i8"),
    "FP16": _sample([[0.0, -0.0, 1.5], [65504.0, np.inf, -(2.0**-24)]], "<f2"),
    "BF16": (_bf16([0.0, -1.0, 1.5, 3.0e38, -(2.0**-126), 7.0]).reshape(2, 3), "<u2"),
    "FP32": _sample([[0.0, -0.0, 1.0e-45], [3.4e38, np.inf, -1.25]], "<f4"),
    "FP64": _sample([[0.0, -0.0, 5e-324], [1.7e308, -np.inf, 0.1]], "<f8"),
}
TYPED_FIELD = {
    "BOOL": "bool_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
}
ELEMENTS = (b"", b"\xff\xfe\x00\x80 not UTF-8", "h\u00e9llo \u2603".encode(), b"", b"x" * 1000, b"\x00")
"""BYTES elements: empty ones, invalid UTF-8, NULs, a long one."""


def wire_form(elements: tuple[bytes, ...]) -> bytes:
    return b"".join(len(element).to_bytes(4, "little") + element for element in elements)


def infer_input(pb: ModuleType, name: str, datatype: str, shape: list[int], **contents: Any) -> Any:
    tensor = pb.ModelInferRequest.InferInputTensor(name=name, datatype=datatype, shape=shape)
    if contents:
        tensor.contents.CopyFrom(pb.InferTensorContents(**contents))
    return tensor


def over_the_wire(pb: ModuleType, inputs: list[Any], raw: list[bytes] | None = None) -> Any:
    """The request as the servicer gets it: serialized by the client, parsed by the server."""
    request = pb.ModelInferRequest(model_name="m", inputs=inputs, raw_input_contents=raw or [])
    return pb.ModelInferRequest.FromString(request.SerializeToString())


def refusal(request: Any, *, max_bytes: int = MAX_BYTES) -> str:
    with pytest.raises(ModelFleetError) as raised:
        decode_inputs(request, max_bytes=max_bytes)
    assert raised.value.kind is ErrorKind.INVALID_ARGUMENT
    assert raised.value.reason is Reason.BAD_INPUT
    return raised.value.message


def output_values(pb: ModuleType, datatype: str, decoded: InputTensor, *, raw: bool) -> tuple[Any, bytes | None]:
    response = pb.ModelInferResponse()
    tensor = response.outputs.add()
    appended = encode_output(tensor, name="out", datatype=datatype, shape=decoded.shape, data=decoded.data, raw=raw)
    if appended is not None:
        response.raw_output_contents.append(appended)
    answer = pb.ModelInferResponse.FromString(response.SerializeToString())
    return answer.outputs[0], answer.raw_output_contents[0] if raw else None


# ---- every datatype, typed and raw -------------------------------------------------------------
@pytest.mark.parametrize("datatype", sorted(TYPED_FIELD))
def test_typed_contents_of_every_datatype_decode_to_little_endian_bytes_and_encode_back(
    pb: ModuleType, datatype: str
) -> None:
    values, dtype = SAMPLES[datatype]
    field = TYPED_FIELD[datatype]
    request = over_the_wire(pb, [infer_input(pb, "x", datatype, [2, 3], **{field: values.ravel().tolist()})])

    [decoded] = decode_inputs(request, max_bytes=MAX_BYTES)

    assert (decoded.name, decoded.datatype, decoded.shape, decoded.elements) == ("x", datatype, (2, 3), None)
    assert np.array_equal(np.frombuffer(decoded.data, dtype=dtype).reshape(2, 3), values)
    assert len(decoded.data) == values.size * np.dtype(dtype).itemsize
    tensor, _ = output_values(pb, datatype, decoded, raw=False)
    assert (tensor.name, tensor.datatype, list(tensor.shape)) == ("out", datatype, [2, 3])
    assert [field.name for field, _ in tensor.contents.ListFields()] == [field]
    assert np.array_equal(np.array(getattr(tensor.contents, field)).reshape(2, 3), values)


@pytest.mark.parametrize("datatype", sorted(SAMPLES))
def test_raw_contents_of_every_datatype_pass_through_unchanged_and_encode_back(pb: ModuleType, datatype: str) -> None:
    values, dtype = SAMPLES[datatype]
    payload = values.astype(dtype).tobytes()
    request = over_the_wire(pb, [infer_input(pb, "x", datatype, [2, 3])], raw=[payload])

    [decoded] = decode_inputs(request, max_bytes=MAX_BYTES)

    assert (decoded.name, decoded.datatype, decoded.shape, decoded.elements) == ("x", datatype, (2, 3), None)
    assert bytes(decoded.data) == payload
    tensor, raw_answer = output_values(pb, datatype, decoded, raw=True)
    assert (tensor.name, tensor.datatype, list(tensor.shape)) == ("out", datatype, [2, 3])
    assert not tensor.HasField("contents")
    assert raw_answer == payload
    if datatype in TYPED_FIELD:  # a raw input answered to a client that reads typed contents
        typed, _ = output_values(pb, datatype, decoded, raw=False)
        assert np.array_equal(np.array(getattr(typed.contents, TYPED_FIELD[datatype])).reshape(2, 3), values)


@pytest.mark.parametrize("raw", [False, True], ids=["typed", "raw"])
def test_bytes_elements_keep_empty_and_non_utf8_values_in_order(pb: ModuleType, raw: bool) -> None:
    shape = [2, 3]
    if raw:
        request = over_the_wire(pb, [infer_input(pb, "text", "BYTES", shape)], raw=[wire_form(ELEMENTS)])
    else:
        request = over_the_wire(pb, [infer_input(pb, "text", "BYTES", shape, bytes_contents=list(ELEMENTS))])

    [decoded] = decode_inputs(request, max_bytes=MAX_BYTES)

    assert (decoded.datatype, decoded.shape, decoded.elements) == ("BYTES", (2, 3), ELEMENTS)
    assert bytes(decoded.data) == wire_form(ELEMENTS)
    typed, _ = output_values(pb, "BYTES", decoded, raw=False)
    assert tuple(typed.contents.bytes_contents) == ELEMENTS
    _, raw_answer = output_values(pb, "BYTES", decoded, raw=True)
    assert raw_answer == wire_form(ELEMENTS)


def test_several_inputs_decode_in_order_with_raw_entries_matched_by_position(pb: ModuleType) -> None:
    first = np.arange(4, dtype="<f4")
    second = np.array([7, -7], dtype="<i8")
    request = over_the_wire(
        pb,
        [infer_input(pb, "a", "FP32", [4]), infer_input(pb, "b", "INT64", [2]), infer_input(pb, "c", "BYTES", [1])],
        raw=[first.tobytes(), second.tobytes(), wire_form((b"hi",))],
    )

    decoded = decode_inputs(request, max_bytes=MAX_BYTES)

    assert [(tensor.name, tensor.datatype, tensor.shape) for tensor in decoded] == [
        ("a", "FP32", (4,)),
        ("b", "INT64", (2,)),
        ("c", "BYTES", (1,)),
    ]
    assert np.array_equal(np.frombuffer(decoded[0].data, "<f4"), first)
    assert np.array_equal(np.frombuffer(decoded[1].data, "<i8"), second)
    assert decoded[2].elements == (b"hi",)


@pytest.mark.parametrize("shape", [[0], [0, 3], [3, 0, 2]])
@pytest.mark.parametrize("datatype", ["FP32", "BF16", "BYTES"])
@pytest.mark.parametrize("raw", [False, True], ids=["typed", "raw"])
def test_zero_size_tensors_are_valid(pb: ModuleType, shape: list[int], datatype: str, raw: bool) -> None:
    request = over_the_wire(pb, [infer_input(pb, "empty", datatype, shape)], raw=[b""] if raw else None)

    [decoded] = decode_inputs(request, max_bytes=MAX_BYTES)

    assert (decoded.shape, bytes(decoded.data)) == (tuple(shape), b"")
    assert decoded.elements == (() if datatype == "BYTES" else None)
    _, raw_answer = output_values(pb, datatype, decoded, raw=True)
    assert raw_answer == b""


def test_a_large_raw_input_is_not_copied(pb: ModuleType) -> None:
    payload = np.arange(1_000_000, dtype="<f4").tobytes()  # 4 MB
    request = over_the_wire(pb, [infer_input(pb, "x", "FP32", [1000, 1000])], raw=[payload])
    tracemalloc.start()
    try:
        [decoded] = decode_inputs(request, max_bytes=8 * 2**20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert bytes(decoded.data[:8]) == payload[:8]
    # protobuf makes the one bytes object on access (4 MB); a copy of ours would double the peak.
    assert peak < 1.25 * len(payload), f"decoding a 4 MB raw input peaked at {peak:,} bytes"


# ---- refusals, each naming the input -----------------------------------------------------------
@pytest.mark.parametrize("datatype", ["FP16", "BF16"])
def test_fp16_and_bf16_in_typed_contents_are_refused_pointing_to_raw(pb: ModuleType, datatype: str) -> None:
    request = over_the_wire(pb, [infer_input(pb, "half_input", datatype, [2], fp32_contents=[1.0, 2.0])])
    message = refusal(request)
    assert "'half_input'" in message and "raw_input_contents" in message and datatype in message
    without_data = over_the_wire(pb, [infer_input(pb, "half_input", datatype, [2])])
    assert "raw_input_contents" in refusal(without_data)


@pytest.mark.parametrize(
    ("datatype", "field", "value"),
    [
        ("INT8", "int_contents", 300),
        ("INT8", "int_contents", -129),
        ("INT16", "int_contents", 2**15),
        ("INT16", "int_contents", -(2**15) - 1),
        ("UINT8", "uint_contents", 256),
        ("UINT16", "uint_contents", 2**16),
    ],
)
def test_values_that_do_not_fit_a_datatype_carried_in_a_wider_field_are_refused(
    pb: ModuleType, datatype: str, field: str, value: int
) -> None:
    request = over_the_wire(pb, [infer_input(pb, "narrow", datatype, [3], **{field: [1, value, 2]})])
    message = refusal(request)
    assert "'narrow'" in message and str(value) in message and datatype in message and "index 1" in message


@pytest.mark.parametrize(
    ("datatype", "contents"),
    [
        ("FP32", {"int_contents": [1, 2]}),
        ("FP32", {"fp64_contents": [1.0, 2.0]}),
        ("INT64", {"int_contents": [1, 2]}),
        ("INT32", {"int64_contents": [1, 2]}),
        ("UINT64", {"uint_contents": [1, 2]}),
        ("BOOL", {"int_contents": [1, 0]}),
        ("BYTES", {"fp32_contents": [1.0, 2.0]}),
        ("FP64", {"fp64_contents": [1.0, 2.0], "bytes_contents": [b"a", b"b"]}),
    ],
)
def test_contents_in_a_field_that_does_not_belong_to_the_datatype_are_refused(
    pb: ModuleType, datatype: str, contents: dict[str, Any]
) -> None:
    request = over_the_wire(pb, [infer_input(pb, "misplaced", datatype, [2], **contents)])
    message = refusal(request)
    assert "'misplaced'" in message and datatype in message and "cannot be sent in contents." in message


def test_raw_contents_must_have_one_entry_per_input(pb: ModuleType) -> None:
    inputs = [infer_input(pb, "first", "FP32", [1]), infer_input(pb, "second", "FP32", [1])]
    one = np.ones(1, "<f4").tobytes()
    too_few = refusal(over_the_wire(pb, inputs, raw=[one]))
    assert "'second' has none" in too_few and "1 entries for 2 inputs" in too_few
    too_many = refusal(over_the_wire(pb, inputs, raw=[one, one, one]))
    assert "3 entries for 2 inputs" in too_many


def test_an_input_with_typed_contents_in_a_raw_request_is_refused(pb: ModuleType) -> None:
    inputs = [infer_input(pb, "raw_one", "FP32", [1]), infer_input(pb, "typed_one", "FP32", [1], fp32_contents=[1.0])]
    message = refusal(over_the_wire(pb, inputs, raw=[np.ones(1, "<f4").tobytes(), b""]))
    assert "'typed_one'" in message and "fp32_contents" in message and "raw_input_contents" in message


@pytest.mark.parametrize("size", [11, 13, 0], ids=["short", "long", "empty"])
def test_raw_contents_whose_length_does_not_match_the_shape_are_refused(pb: ModuleType, size: int) -> None:
    request = over_the_wire(pb, [infer_input(pb, "liar", "FP32", [3])], raw=[b"\x00" * size])
    message = refusal(request)
    assert "'liar'" in message and f"holds {size} bytes" in message and "needs 12" in message


def test_raw_bool_bytes_other_than_0_and_1_are_refused(pb: ModuleType) -> None:
    request = over_the_wire(pb, [infer_input(pb, "flags", "BOOL", [3])], raw=[b"\x00\x01\x02"])
    assert "'flags'" in refusal(request)


@pytest.mark.parametrize("count", [5, 7, 0])
def test_typed_contents_whose_count_does_not_match_the_shape_are_refused(pb: ModuleType, count: int) -> None:
    request = over_the_wire(pb, [infer_input(pb, "counted", "INT32", [2, 3], int_contents=list(range(count)))])
    message = refusal(request)
    assert "'counted'" in message and f"holds {count} values" in message and "needs 6" in message


@pytest.mark.parametrize("shape", [[-1, 3], [2, -1], [-(2**63)]])
def test_negative_dimensions_are_refused(pb: ModuleType, shape: list[int]) -> None:
    request = over_the_wire(pb, [infer_input(pb, "dynamic", "FP32", shape)], raw=[b""])
    message = refusal(request)
    assert "'dynamic'" in message and "negative dimension" in message


def test_more_than_64_dimensions_are_refused(pb: ModuleType) -> None:
    assert decode_inputs(
        over_the_wire(pb, [infer_input(pb, "deep", "FP32", [1] * 64)], raw=[b"\x00" * 4]), max_bytes=64
    )
    message = refusal(over_the_wire(pb, [infer_input(pb, "deep", "FP32", [1] * 65)], raw=[b"\x00" * 4]))
    assert "'deep'" in message and "65 dimensions" in message


@pytest.mark.parametrize(
    ("shape", "raw"),
    [
        ([2**62], True),
        ([2**31, 2**31], False),
        ([2**63 - 1, 2**63 - 1, 2**63 - 1], True),
        ([0, 2**62], True),
        ([2**20] * 64, False),
    ],
    ids=["2**62-raw", "2**31x2**31-typed", "3x-int64-max", "zero-size-with-huge-dim", "64-dims-of-2**20"],
)
@pytest.mark.parametrize("datatype", ["FP64", "BYTES"])
def test_a_shape_naming_huge_tensors_with_tiny_data_fails_before_any_allocation(
    pb: ModuleType, shape: list[int], raw: bool, datatype: str
) -> None:
    contents: dict[str, Any]
    if datatype == "BYTES":
        contents = {} if raw else {"bytes_contents": [b"a", b"b"]}
        data = wire_form((b"a",))
    else:
        contents = {} if raw else {"fp64_contents": [1.0]}
        data = b"\x00" * 8
    request = over_the_wire(pb, [infer_input(pb, "attack", datatype, shape, **contents)], raw=[data] if raw else None)
    tracemalloc.start()
    try:
        message = refusal(request)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "'attack'" in message and "request limit" in message
    assert peak < 256 * 1024, f"refusing the shape allocated {peak:,} bytes"


def test_the_size_limit_counts_all_inputs_together(pb: ModuleType) -> None:
    inputs = [infer_input(pb, "a", "FP32", [100]), infer_input(pb, "b", "FP32", [100])]
    raw = [b"\x00" * 400, b"\x00" * 400]
    assert len(decode_inputs(over_the_wire(pb, inputs, raw=raw), max_bytes=800)) == 2
    message = refusal(over_the_wire(pb, inputs, raw=raw), max_bytes=799)
    assert "'b'" in message and "request limit" in message


def test_typed_integers_cannot_grow_past_the_size_limit(pb: ModuleType) -> None:
    # 100,000 zeros are ~100 KB on the wire (1-byte varints) but 800 KB as INT64.
    request = over_the_wire(pb, [infer_input(pb, "zeros", "INT64", [100_000], int64_contents=[0] * 100_000)])
    assert "'zeros'" in refusal(request, max_bytes=500_000)
    assert len(decode_inputs(request, max_bytes=800_000)[0].data) == 800_000


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (wire_form((b"ok",)) + (1000).to_bytes(4, "little") + b"short", "claims 1,000 bytes, but only 5 follow"),
        (wire_form((b"ok",)) + b"\x01\x00", "ends after 1 of 2 elements"),
        (wire_form((b"ok",)), "ends after 1 of 2 elements"),
        (wire_form((b"ok", b"no", b"extra")), "bytes left after the 2 elements"),
        ((2**32 - 1).to_bytes(4, "little") * 2, "claims 4,294,967,295 bytes"),
    ],
    ids=["length-past-end", "truncated-prefix", "too-few", "too-many", "max-length"],
)
def test_malformed_raw_bytes_are_refused_with_bounds_checked_lengths(
    pb: ModuleType, data: bytes, expected: str
) -> None:
    request = over_the_wire(pb, [infer_input(pb, "strings", "BYTES", [2])], raw=[data])
    message = refusal(request)
    assert "'strings'" in message and expected in message


def test_bytes_beyond_the_size_limit_are_refused(pb: ModuleType) -> None:
    typed = over_the_wire(pb, [infer_input(pb, "big", "BYTES", [2], bytes_contents=[b"x" * 600, b"y" * 600])])
    assert "'big'" in refusal(typed, max_bytes=1000)
    raw = over_the_wire(pb, [infer_input(pb, "big", "BYTES", [2])], raw=[wire_form((b"x" * 600, b"y" * 600))])
    assert "'big'" in refusal(raw, max_bytes=1000)
    assert decode_inputs(raw, max_bytes=1208)[0].elements == (b"x" * 600, b"y" * 600)


@pytest.mark.parametrize("datatype", ["FLOAT32", "fp32", "STRING", "FP8", " FP32"])
def test_unknown_datatypes_are_refused_listing_the_valid_ones(pb: ModuleType, datatype: str) -> None:
    message = refusal(over_the_wire(pb, [infer_input(pb, "typo", datatype, [1], fp32_contents=[1.0])]))
    assert "'typo'" in message and f"unknown datatype {datatype!r}" in message and "FP32" in message


def test_an_empty_datatype_is_refused(pb: ModuleType) -> None:
    message = refusal(over_the_wire(pb, [infer_input(pb, "untyped", "", [1], fp32_contents=[1.0])]))
    assert "'untyped' has no datatype" in message


def test_requests_without_inputs_or_with_unnamed_or_duplicate_inputs_are_refused(pb: ModuleType) -> None:
    assert "no inputs" in refusal(over_the_wire(pb, []))
    unnamed = [infer_input(pb, "ok", "FP32", [1], fp32_contents=[1.0]), infer_input(pb, "", "FP32", [1])]
    assert "input #1 has no name" in refusal(over_the_wire(pb, unnamed))
    twice = [infer_input(pb, "dup", "FP32", [1], fp32_contents=[1.0])] * 2
    assert "'dup' appears more than once" in refusal(over_the_wire(pb, twice))


def test_a_huge_client_name_is_clipped_in_the_message(pb: ModuleType) -> None:
    name = "n" * 100_000
    message = refusal(over_the_wire(pb, [infer_input(pb, name, "NOPE", [1])]))
    assert "100,000 characters" in message and len(message) < 1_000


# ---- answers -----------------------------------------------------------------------------------
@pytest.mark.parametrize("datatype", ["FP16", "BF16"])
def test_fp16_and_bf16_outputs_cannot_be_typed_so_the_servicer_answers_them_raw(pb: ModuleType, datatype: str) -> None:
    tensor = pb.ModelInferResponse().outputs.add()
    with pytest.raises(ValueError, match="no typed contents field"):
        encode_output(tensor, name="out", datatype=datatype, shape=[2], data=b"\x00" * 4, raw=False)
    assert encode_output(tensor, name="out", datatype=datatype, shape=[2], data=memoryview(b"\x01" * 4), raw=True) == (
        b"\x01" * 4
    )


@pytest.mark.parametrize(
    ("datatype", "shape", "data"),
    [("FP32", [3], b"\x00" * 8), ("NOPE", [1], b""), ("BYTES", [2], wire_form((b"a",))), ("INT8", [-1], b"")],
    ids=["length", "datatype", "bytes-count", "negative-dim"],
)
def test_an_output_that_does_not_match_its_shape_is_the_servers_own_error(
    pb: ModuleType, datatype: str, shape: list[int], data: bytes
) -> None:
    tensor = pb.ModelInferResponse().outputs.add()
    with pytest.raises(ValueError):
        encode_output(tensor, name="out", datatype=datatype, shape=shape, data=data, raw=True)


@pytest.mark.parametrize(
    ("tensor", "datatype"),
    [
        (torch.arange(6, dtype=torch.float32).reshape(2, 3), "FP32"),
        (torch.tensor([1.5, -2.0], dtype=torch.bfloat16), "BF16"),
        (torch.tensor([1.5, -2.0], dtype=torch.float16), "FP16"),
        (torch.tensor([[1, -(2**63)]], dtype=torch.int64), "INT64"),
        (torch.tensor([0, 255], dtype=torch.uint8), "UINT8"),
        (torch.tensor([True, False]), "BOOL"),
        (torch.zeros(0, 4), "FP32"),
        (torch.tensor(3.5, dtype=torch.float64), "FP64"),
    ],
    ids=["fp32", "bf16", "fp16", "int64", "uint8", "bool", "zero-size", "scalar"],
)
def test_the_default_handlers_safetensors_answer_is_read_without_a_copy(tensor: torch.Tensor, datatype: str) -> None:
    payload = save_torch({"output": tensor})

    found, shape, data = read_safetensors_answer(payload)

    assert (found, shape) == (datatype, tuple(tensor.shape))
    assert data.obj is payload
    assert bytes(data) == tensor.reshape(-1).view(torch.uint8).numpy().tobytes()


def test_a_safetensors_answer_with_metadata_is_read() -> None:
    payload = save_numpy({"output": np.array([1, 2], dtype="<i2")}, metadata={"format": "np"})
    found, shape, data = read_safetensors_answer(payload)
    assert (found, shape, bytes(data)) == ("INT16", (2,), np.array([1, 2], "<i2").tobytes())


def _safetensors(header: object, data: bytes = b"") -> bytes:
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + data


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\x05\x00\x00",
        (1000).to_bytes(8, "little") + b"{}",
        (2).to_bytes(8, "little") + b"{x",
        _safetensors([1, 2]),
        _safetensors({}),
        _safetensors({"result": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\x00" * 4),
        _safetensors(
            {
                "output": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                "extra": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]},
            },
            b"\x00" * 8,
        ),
        _safetensors({"output": "F32"}),
        _safetensors({"output": {"dtype": "F8_E4M3", "shape": [1], "data_offsets": [0, 1]}}, b"\x00"),
        _safetensors({"output": {"dtype": 7, "shape": [1], "data_offsets": [0, 4]}}, b"\x00" * 4),
        _safetensors({"output": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\x00" * 4),
        _safetensors({"output": {"dtype": "F32", "shape": [1.0], "data_offsets": [0, 4]}}, b"\x00" * 4),
        _safetensors({"output": {"dtype": "F32", "shape": [True], "data_offsets": [0, 4]}}, b"\x00" * 4),
        _safetensors({"output": {"dtype": "F32", "shape": [1] * 65, "data_offsets": [0, 4]}}, b"\x00" * 4),
        _safetensors({"output": {"dtype": "F32", "shape": [1], "data_offsets": [0, 8]}}, b"\x00" * 4),
        _safetensors({"output": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}, b"\x00" * 4),
        _safetensors({"output": {"dtype": "F32", "shape": [1], "data_offsets": [0]}}, b"\x00" * 4),
        _safetensors({"output": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, b"\x00" * 4),
        _safetensors({"output": {"dtype": "F32", "shape": [2**62, 2**62], "data_offsets": [0, 4]}}, b"\x00" * 4),
    ],
    ids=[
        "empty",
        "short",
        "header-past-end",
        "not-json",
        "not-object",
        "no-tensor",
        "wrong-key",
        "two-tensors",
        "entry-not-object",
        "no-oip-dtype",
        "dtype-not-string",
        "negative-dim",
        "float-dim",
        "bool-dim",
        "65-dims",
        "offsets-past-end",
        "offsets-reversed",
        "one-offset",
        "size-mismatch",
        "huge-shape",
    ],
)
def test_a_malformed_safetensors_answer_is_a_value_error(payload: bytes) -> None:
    with pytest.raises(ValueError):
        read_safetensors_answer(payload)


# ---- datatype names ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("float32", "FP32"),
        ("torch.float32", "FP32"),
        ("float", "FP32"),
        ("half", "FP16"),
        ("bfloat16", "BF16"),
        ("double", "FP64"),
        ("bool", "BOOL"),
        ("uint8", "UINT8"),
        ("int64", "INT64"),
        ("uint64", "UINT64"),
        ("F32", "FP32"),
        ("F16", "FP16"),
        ("BF16", "BF16"),
        ("I64", "INT64"),
        ("I8", "INT8"),
        ("U8", "UINT8"),
        ("BOOL", "BOOL"),
        ("FP32", "FP32"),
        ("BYTES", "BYTES"),
    ],
)
def test_server_and_safetensors_dtype_names_map_to_oip_datatypes(name: str, expected: str) -> None:
    assert oip_datatype_of(name) == expected


@pytest.mark.parametrize("name", ["F8_E4M3", "complex64", "", "string"])
def test_dtypes_without_an_oip_datatype_are_a_value_error(name: str) -> None:
    with pytest.raises(ValueError):
        oip_datatype_of(name)


def test_each_oip_datatype_names_the_default_handlers_dtype_and_maps_back() -> None:
    assert {datatype: oip_datatype_of(name) for datatype, name in OIP_DATATYPES.items()} == {
        datatype: datatype for datatype in OIP_DATATYPES
    }
    assert frozenset({"UINT16", "UINT32", "UINT64"}) == TORCH_UNSUPPORTED
    assert set(OIP_DATATYPES) >= TORCH_UNSUPPORTED
    assert OIP_DATATYPES["BF16"] == "bfloat16" and "BYTES" not in OIP_DATATYPES
