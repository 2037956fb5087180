"""Open Inference Protocol v2 tensors: request inputs to little-endian bytes, answers to output tensors.

Called by the OIP servicer (rpc/open_inference.py) for both proto packages (`inference` and
TorchServe's `org.pytorch.serve.grpc.openinference`: same message and field names). Pure functions:
no registry, no torch. Every check on client data happens here, before anything sized by the client
is allocated, and fails as BAD_INPUT naming the input; the server's own answers fail as ValueError.
Numeric data is never looped over in Python: raw inputs are passed on as the bytes protobuf made.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeGuard

import numpy as np
import orjson

from modelfleet.server.echo import clip, quoted
from modelfleet.server.errors import ModelFleetError, bad_input

MAX_DIMS = 64
"""Most dimensions a tensor may have (numpy's limit; the default handler's limits.MAX_DIMS too)."""

OIP_DATATYPES: Mapping[str, str] = MappingProxyType(
    {
        "BOOL": "bool",
        "UINT8": "uint8",
        "UINT16": "uint16",
        "UINT32": "uint32",
        "UINT64": "uint64",
        "INT8": "int8",
        "INT16": "int16",
        "INT32": "int32",
        "INT64": "int64",
        "FP16": "float16",
        "BF16": "bfloat16",
        "FP32": "float32",
        "FP64": "float64",
    }
)
"""Numeric OIP datatype -> the `dtype` name of the default handler's raw form. BYTES has none (not a tensor)."""

TORCH_UNSUPPORTED = frozenset({"UINT16", "UINT32", "UINT64"})
"""Valid OIP datatypes (decoded fine) that the default handler's torch dtypes cannot take."""

DATATYPES = frozenset({*OIP_DATATYPES, "BYTES"})
"""Every datatype the protocol defines."""


@dataclass(frozen=True, slots=True)
class _Type:
    itemsize: int  # bytes per element; BYTES: the 4-byte length prefix, the least an element takes
    numpy: str  # explicit little-endian numpy dtype ("|V2" for BF16, which numpy lacks)
    field: str | None  # the typed contents field; None for FP16/BF16, which have none
    bounds: tuple[int, int] | None = None  # value range when `field` is wider than the type


_TYPES: Mapping[str, _Type] = MappingProxyType(
    {
        "BOOL": _Type(1, "|b1", "bool_contents"),
        "UINT8": _Type(1, "|u1", "uint_contents", (0, 2**8 - 1)),
        "UINT16": _Type(2, "<u2", "uint_contents", (0, 2**16 - 1)),
        "UINT32": _Type(4, "<u4", "uint_contents"),
        "UINT64": _Type(8, "<u8", "uint64_contents"),
        "INT8": _Type(1, "|i1", "int_contents", (-(2**7), 2**7 - 1)),
        "INT16": _Type(2, "<i2", "int_contents", (-(2**15), 2**15 - 1)),
        "INT32": _Type(4, "<i4", "int_contents"),
        "INT64": _Type(8, "<i8", "int64_contents"),
        "FP16": _Type(2, "<f2", None),
        "BF16": _Type(2, "|V2", None),
        "FP32": _Type(4, "<f4", "fp32_contents"),
        "FP64": _Type(8, "<f8", "fp64_contents"),
        "BYTES": _Type(4, "|V4", "bytes_contents"),
    }
)

_FIELD_DTYPES: Mapping[str, str] = MappingProxyType(
    {
        "bool_contents": "|b1",
        "int_contents": "<i4",
        "int64_contents": "<i8",
        "uint_contents": "<u4",
        "uint64_contents": "<u8",
        "fp32_contents": "<f4",
        "fp64_contents": "<f8",
    }
)
"""Numeric typed fields and the type protobuf holds their values in."""

_SAFETENSORS_DATATYPES: Mapping[str, str] = MappingProxyType(
    {
        "BOOL": "BOOL",
        "U8": "UINT8",
        "U16": "UINT16",
        "U32": "UINT32",
        "U64": "UINT64",
        "I8": "INT8",
        "I16": "INT16",
        "I32": "INT32",
        "I64": "INT64",
        "F16": "FP16",
        "BF16": "BF16",
        "F32": "FP32",
        "F64": "FP64",
    }
)

# Lower-case keys: the server's dtype names (and torch's aliases), safetensors' and OIP's own agree
# once folded ("bf16", "bool", "int8" mean the same in each), so one case-insensitive table serves all.
_NAMES: Mapping[str, str] = MappingProxyType(
    {
        **{name.lower(): oip for name, oip in _SAFETENSORS_DATATYPES.items()},
        **{name: oip for oip, name in OIP_DATATYPES.items()},
        **{oip.lower(): oip for oip in DATATYPES},
        "float": "FP32",
        "half": "FP16",
        "double": "FP64",
    }
)

_LENGTH = struct.Struct("<I")


def oip_datatype_of(dtype_name: str) -> str:
    """The OIP datatype of a server dtype name ("float32", "torch.bfloat16"), a safetensors dtype ("F32",
    "I64") or an OIP name; ValueError for anything else (e.g. safetensors' F8 types, which OIP lacks)."""
    key = dtype_name.lower().removeprefix("torch.")
    try:
        return _NAMES[key]
    except KeyError:
        raise ValueError(f"no Open Inference Protocol datatype for dtype {quoted(dtype_name)}") from None


@dataclass(frozen=True, slots=True)
class InputTensor:
    """One decoded request input. `data` is little-endian row-major, exactly numel * itemsize bytes
    (BYTES: the raw wire form, a 4-byte little-endian length before each element)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: bytes | memoryview
    elements: tuple[bytes, ...] | None
    """BYTES only: the elements in order; None for numeric datatypes."""


def decode_inputs(request: Any, *, max_bytes: int) -> list[InputTensor]:
    """The inputs of a ModelInferRequest (either package), checked; BAD_INPUT naming the input otherwise.

    `max_bytes` bounds the decoded bytes of all inputs together (BYTES counted in their wire form);
    pass the request size limit. Shapes are checked against it before any data is converted, so a
    shape naming 2**62 elements fails at once, and typed contents (a 1-byte varint can become 8 bytes)
    cannot grow past it.
    """
    inputs = request.inputs
    if not inputs:
        raise bad_input("the request has no inputs: ModelInferRequest.inputs is empty")
    raw = request.raw_input_contents
    if raw and len(raw) != len(inputs):
        detail = (
            f"input {quoted(inputs[len(raw)].name)} has none"
            if len(raw) < len(inputs)
            else f"{len(raw) - len(inputs)} are left over"
        )
        raise bad_input(
            f"raw_input_contents has {len(raw)} entries for {len(inputs)} inputs ({detail}): "
            "send one entry per input, in the order of the inputs, or none"
        )
    decoded: list[InputTensor] = []
    seen: set[str] = set()
    budget = max_bytes
    for index, tensor in enumerate(inputs):
        name = tensor.name
        if not name:
            raise bad_input(f"input #{index} has no name")
        if name in seen:
            raise bad_input(f"input {quoted(name)} appears more than once; input names must be unique")
        seen.add(name)
        decoded.append(_decode_one(tensor, raw[index] if raw else None, budget=budget))
        budget -= len(decoded[-1].data)
    return decoded


def _decode_one(tensor: Any, raw: bytes | None, *, budget: int) -> InputTensor:
    name, datatype = tensor.name, tensor.datatype
    kind = _TYPES.get(datatype)
    if kind is None:
        if not datatype:
            raise bad_input(f"input {quoted(name)} has no datatype; expected one of {_datatype_list()}")
        raise bad_input(
            f"input {quoted(name)}: unknown datatype {quoted(datatype)}; expected one of {_datatype_list()}"
        )
    shape = _checked_shape(name, tensor.shape, itemsize=kind.itemsize, budget=budget)
    numel = _product(shape)
    fields = [field.name for field, _ in tensor.contents.ListFields()] if tensor.HasField("contents") else []
    if raw is not None:
        if fields:
            raise bad_input(
                f"input {quoted(name)} has typed contents ({fields[0]}) while the request uses "
                "raw_input_contents: when raw_input_contents is used, every input must be sent there"
            )
        if datatype == "BYTES":
            return InputTensor(name, datatype, shape, raw, _split_bytes(name, raw, numel, budget=budget))
        if len(raw) != numel * kind.itemsize:
            raise bad_input(
                f"input {quoted(name)}: raw_input_contents holds {len(raw):,} bytes, but {datatype} "
                f"shape {_shape_text(shape)} needs {numel * kind.itemsize:,} ({numel:,} x {kind.itemsize})"
            )
        if datatype == "BOOL" and numel and int(np.frombuffer(raw, dtype=np.uint8).max()) > 1:
            raise bad_input(f"input {quoted(name)}: BOOL raw data must hold one byte per element, 0 or 1")
        return InputTensor(name, datatype, shape, raw, None)
    if kind.field is None:
        if fields or numel:
            raise bad_input(
                f"input {quoted(name)}: {datatype} has no typed contents field in the protocol; "
                "send its data in raw_input_contents (little-endian, 2 bytes per element)"
            )
        return InputTensor(name, datatype, shape, b"", None)
    foreign = [field for field in fields if field != kind.field]
    if foreign:
        raise bad_input(
            f"input {quoted(name)}: {datatype} data cannot be sent in contents.{foreign[0]}; "
            f"use contents.{kind.field} (or raw_input_contents)"
        )
    values = getattr(tensor.contents, kind.field)
    if len(values) != numel:
        raise bad_input(
            f"input {quoted(name)}: contents.{kind.field} holds {len(values):,} values, but shape "
            f"{_shape_text(shape)} needs {numel:,}"
        )
    if datatype == "BYTES":
        return _typed_bytes(name, shape, tuple(values), budget=budget)
    return InputTensor(name, datatype, shape, _typed_numeric(name, datatype, kind, values), None)


def _typed_numeric(name: str, datatype: str, kind: _Type, values: Any) -> bytes:
    """One numpy conversion of a typed field (protobuf's containers offer __array__: no Python loop)."""
    assert kind.field is not None
    array = np.asarray(values, dtype=_FIELD_DTYPES[kind.field])
    if kind.bounds is not None and array.size:
        low, high = kind.bounds
        if int(array.min()) < low or int(array.max()) > high:
            at = int(np.flatnonzero((array < low) | (array > high))[0])
            raise bad_input(
                f"input {quoted(name)}: value {int(array[at])} at index {at:,} of contents.{kind.field} "
                f"does not fit {datatype} ({low}..{high})"
            )
        array = array.astype(kind.numpy)
    return array.tobytes()


def _typed_bytes(name: str, shape: tuple[int, ...], elements: tuple[bytes, ...], *, budget: int) -> InputTensor:
    size = 4 * len(elements) + sum(map(len, elements))
    if size > budget:
        raise bad_input(
            f"input {quoted(name)}: BYTES contents take {size:,} bytes with their length prefixes, "
            f"more than the {budget:,} bytes left of the request limit"
        )
    parts: list[bytes] = []
    for element in elements:
        parts += (_LENGTH.pack(len(element)), element)
    return InputTensor(name, "BYTES", shape, b"".join(parts), elements)


def _split_bytes(name: str, data: bytes | memoryview, numel: int, *, budget: int) -> tuple[bytes, ...]:
    """The elements of a BYTES wire form; each length prefix is checked against what is left."""
    if len(data) > budget:
        raise bad_input(
            f"input {quoted(name)}: BYTES raw data of {len(data):,} bytes is more than "
            f"the {budget:,} bytes left of the request limit"
        )
    elements: list[bytes] = []
    offset, end = 0, len(data)
    for index in range(numel):  # each pass takes >= 4 bytes or raises: at most len(data) // 4 passes
        if end - offset < 4:
            raise bad_input(
                f"input {quoted(name)}: BYTES raw data ends after {index:,} of {numel:,} elements "
                "(each element is a 4-byte little-endian length, then that many bytes)"
            )
        (length,) = _LENGTH.unpack_from(data, offset)
        offset += 4
        if length > end - offset:
            raise bad_input(
                f"input {quoted(name)}: BYTES element {index:,} claims {length:,} bytes, "
                f"but only {end - offset:,} follow"
            )
        elements.append(bytes(data[offset : offset + length]))
        offset += length
    if offset != end:
        raise bad_input(
            f"input {quoted(name)}: BYTES raw data has {end - offset:,} bytes left after the {numel:,} "
            "elements its shape names"
        )
    return tuple(elements)


def _checked_shape(name: str, dims: Sequence[int], *, itemsize: int, budget: int) -> tuple[int, ...]:
    """The shape as a tuple, every dim >= 0, its size within `budget` bytes.

    The product of the non-zero dims is bounded too (not only numel), so a zero-size [0, 2**62]
    cannot reach code that computes strides; the product stops as soon as it passes the bound,
    so the check costs at most MAX_DIMS small multiplications.
    """
    if len(dims) > MAX_DIMS:
        raise bad_input(f"input {quoted(name)}: shape has {len(dims)} dimensions, more than {MAX_DIMS}")
    shape = tuple(dims)
    limit = max(budget, 0) // itemsize
    product = 1
    for dim in shape:
        if dim < 0:
            raise bad_input(
                f"input {quoted(name)}: shape {_shape_text(shape)} has a negative dimension ({dim}); "
                "a request names every dimension"
            )
        if dim:
            product *= dim
            if product > limit:
                raise bad_input(
                    f"input {quoted(name)}: shape {_shape_text(shape)} names more elements than the "
                    f"request limit allows ({limit:,} of {itemsize} bytes)"
                )
    return shape


def _product(shape: tuple[int, ...]) -> int:
    numel = 1
    for dim in shape:
        numel *= dim
    return numel


def _shape_text(shape: Sequence[int]) -> str:
    return clip("[" + ", ".join(map(str, shape)) + "]")


def _datatype_list() -> str:
    return ", ".join(_TYPES)


def encode_output(
    tensor: Any, *, name: str, datatype: str, shape: Sequence[int], data: bytes | memoryview, raw: bool
) -> bytes | None:
    """Fill an InferOutputTensor (either package) and return the bytes for raw_output_contents when `raw`.

    `data` is little-endian row-major (BYTES: the 4-byte-length wire form). With `raw` False the values
    go to the datatype's typed contents field. FP16 and BF16 have no typed field in the protocol, so
    they raise ValueError there: the servicer answers them raw. A `data` that does not match `shape`
    is the server's own bug: ValueError too.
    """
    kind = _TYPES.get(datatype)
    if kind is None:
        raise ValueError(f"unknown Open Inference Protocol datatype {quoted(datatype)}")
    dims = tuple(shape)
    if any(dim < 0 for dim in dims):
        raise ValueError(f"output {quoted(name)} has a negative dimension: {_shape_text(dims)}")
    numel = _product(dims)
    elements: tuple[bytes, ...] | None = None
    if datatype == "BYTES":
        try:
            elements = _split_bytes(name, data, numel, budget=len(data))
        except ModelFleetError as error:  # the same checks as for a request, but the server's own fault
            raise ValueError(str(error)) from None
    elif len(data) != numel * kind.itemsize:
        raise ValueError(
            f"output {quoted(name)}: {len(data):,} bytes for {datatype} shape {_shape_text(dims)} "
            f"(needs {numel * kind.itemsize:,})"
        )
    if not raw and kind.field is None:
        raise ValueError(f"{datatype} has no typed contents field; answer output {quoted(name)} raw")
    tensor.name = name
    tensor.datatype = datatype
    tensor.shape.extend(dims)
    if raw:
        return data if isinstance(data, bytes) else bytes(data)
    assert kind.field is not None
    field = getattr(tensor.contents, kind.field)
    if elements is not None:
        field.extend(elements)
    elif datatype == "BOOL":
        field.extend((np.frombuffer(data, dtype=np.uint8) != 0).tolist())
    else:
        # tolist() first: extending from Python numbers is 2-6x faster than from a numpy array.
        field.extend(np.frombuffer(data, dtype=kind.numpy).tolist())
    return None


def contents_size(datatype: str, data: bytes | memoryview) -> int:
    """Bytes the typed contents of a `datatype` tensor holding `data` take on the wire, computed
    without building them: a typed answer can be 10x its raw size (an INT8 -1 is a 10-byte varint),
    so the servicer checks this against the response limit first. `data` as for encode_output;
    FP16/BF16 (no typed field) and malformed data raise ValueError, as there.
    """
    kind = _TYPES.get(datatype)
    if kind is None or kind.field is None:
        raise ValueError(f"{quoted(datatype)} has no typed contents field")
    if datatype == "BYTES":
        view = memoryview(data).cast("B")
        total, offset = 0, 0
        while offset + 4 <= len(view):  # each pass takes >= 4 bytes: at most len(data) // 4 passes
            (length,) = _LENGTH.unpack_from(view, offset)
            total += 1 + _varint_size(length) + length  # repeated bytes: tag, length, data per element
            offset += 4 + length
        return total
    if len(data) % kind.itemsize:
        raise ValueError(f"{len(data):,} bytes are not whole {datatype} elements")
    numel = len(data) // kind.itemsize
    if kind.field in ("fp32_contents", "fp64_contents", "bool_contents"):
        payload = numel * {"fp32_contents": 4, "fp64_contents": 8, "bool_contents": 1}[kind.field]
    else:
        payload = _varints_size(np.frombuffer(data, dtype=kind.numpy))
    return 1 + _varint_size(payload) + payload if payload else 0  # packed: one tag and length


def _varint_size(value: int) -> int:
    return max(1, (value.bit_length() + 6) // 7)


def _varints_size(values: np.ndarray[Any, Any]) -> int:
    """Bytes of `values` as protobuf varints; a negative integer takes 10 (sign-extended to 64 bits).

    Comparisons on the values' own dtype only (one boolean temporary at a time, numel bytes), so
    sizing an answer never allocates more than the answer already takes.
    """
    info = np.iinfo(values.dtype)
    total = int(values.size)
    if info.min < 0:
        total += 9 * int(np.count_nonzero(values < 0))
    for bits in range(7, 64, 7):
        if (1 << bits) > info.max:
            break
        total += int(np.count_nonzero(values >= (1 << bits)))
    return total


def read_safetensors_answer(payload: bytes) -> tuple[str, tuple[int, ...], memoryview]:
    """(OIP datatype, shape, data) of the default handler's safetensors answer: one tensor, key "output".

    The data is a view into `payload`, not a copy. ValueError when malformed: the payload is the
    server's own answer, so the servicer reports it as INTERNAL.
    """
    view = memoryview(payload)
    if len(view) < 8:
        raise ValueError(f"safetensors answer of {len(view)} bytes has no 8-byte header length")
    header_len = int.from_bytes(view[:8], "little")
    if header_len > len(view) - 8:
        raise ValueError(f"safetensors header length {header_len:,} runs past the {len(view):,}-byte answer")
    try:
        header = orjson.loads(view[8 : 8 + header_len])
    except orjson.JSONDecodeError as error:
        raise ValueError(f"safetensors header is not JSON: {clip(str(error))}") from None
    if not isinstance(header, dict):
        raise ValueError("safetensors header is not a JSON object")
    keys = set(header) - {"__metadata__"}
    if keys != {"output"}:
        raise ValueError(f"safetensors answer holds {clip(repr(sorted(keys)))}, not exactly one tensor 'output'")
    entry = header["output"]
    if not isinstance(entry, dict):
        raise ValueError("safetensors entry 'output' is not a JSON object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    datatype = _SAFETENSORS_DATATYPES.get(dtype) if isinstance(dtype, str) else None
    if datatype is None:
        raise ValueError(f"safetensors dtype {clip(repr(dtype))} has no Open Inference Protocol datatype")
    if not _is_int_list(shape) or len(shape) > MAX_DIMS or any(dim < 0 for dim in shape):
        raise ValueError(f"safetensors shape {clip(repr(shape))} is not a list of at most {MAX_DIMS} sizes >= 0")
    if not _is_int_list(offsets) or len(offsets) != 2:
        raise ValueError(f"safetensors data_offsets {clip(repr(offsets))} are not two integers")
    begin, end = offsets
    data = view[8 + header_len :]
    if not 0 <= begin <= end <= len(data):
        raise ValueError(f"safetensors data_offsets [{begin}, {end}] are outside the {len(data):,} data bytes")
    dims = tuple(shape)
    if end - begin != _product(dims) * _TYPES[datatype].itemsize:
        raise ValueError(f"safetensors data of {end - begin:,} bytes does not match {dtype} shape {_shape_text(dims)}")
    return datatype, dims, data[begin:end]


def _is_int_list(value: object) -> TypeGuard[list[int]]:
    return isinstance(value, list) and all(type(item) is int for item in value)
