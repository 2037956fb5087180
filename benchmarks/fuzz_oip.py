"""Seeded Open Inference Protocol messages for the fuzzer, under both package names, and their checks.

fuzz_messages.py draws the kinds ModelInfer, ModelStreamInfer and OipMetadata from here, and fuzz.py
judges the answers with the checks at the end. ModelInferRequests are built field by field from the
seed: every datatype (lower-case and unknown ones too), shapes with negative, huge, overflowing or 65
dimensions, raw_input_contents of the wrong count, typed values in the wrong field or out of range,
BYTES with lying length prefixes, parameters of every kind, names and ids up to 2 MB. Streams mix
good and bad requests and are read fully, cancelled midway, or never read. Pure: no I/O.
"""

from __future__ import annotations

import array
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc

from modelfleet.protos import open_inference_pb2, torchserve_open_inference_pb2

OIP = "/inference.GRPCInferenceService/"
TS_OIP = "/org.pytorch.serve.grpc.openinference.GRPCInferenceService/"
PACKAGES: dict[str, Any] = {OIP: open_inference_pb2, TS_OIP: torchserve_open_inference_pb2}
UNARY = ("ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer")
METADATA = UNARY[:-1]

# method → (request type, request streaming, response streaming, token scope): as fuzz_messages.METHODS
METHODS: dict[str, tuple[Any, bool, bool, str | None]] = {
    **{
        prefix + name: (getattr(pb, f"{name}Request"), False, False, "inference")
        for prefix, pb in PACKAGES.items()
        for name in UNARY
    },
    OIP + "ModelStreamInfer": (open_inference_pb2.ModelInferRequest, True, True, "inference"),
}
UNKNOWN_METHODS = (TS_OIP + "ModelStreamInfer", OIP + "RepositoryIndex", OIP + "ModelStatistics")
"""Not served (the TorchServe package has no ModelStreamInfer): UNIMPLEMENTED."""

C = grpc.StatusCode
ALLOWED = frozenset(
    {
        C.OK,
        C.INVALID_ARGUMENT,
        C.NOT_FOUND,
        C.UNAVAILABLE,
        C.RESOURCE_EXHAUSTED,
        C.DEADLINE_EXCEEDED,
        C.UNAUTHENTICATED,
        C.CANCELLED,
    }
)
"""Every code an Open Inference RPC may answer client input with (docs/open-inference.md, Status codes)."""
INTERNAL_MESSAGE = "Internal server error"
"""status.INTERNAL_MESSAGE: an in-band ModelStreamInfer error with this text is an INTERNAL."""

DATATYPES = ("BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64")
DATATYPES += ("FP16", "BF16", "FP32", "FP64", "BYTES")
ODD_DATATYPES = ("fp32", "Fp32", "int8", "bytes", "FP8", "FP32 ", "STRING", "", "TYPE_FP32", "float32", "\x00")
ITEMSIZE = {"BOOL": 1, "UINT8": 1, "INT8": 1, "UINT16": 2, "INT16": 2, "FP16": 2, "BF16": 2}
ITEMSIZE |= {"UINT32": 4, "INT32": 4, "FP32": 4, "UINT64": 8, "INT64": 8, "FP64": 8, "BYTES": 4}
FIELDS = ("bool_contents", "int_contents", "int64_contents", "uint_contents", "uint64_contents")
FIELDS += ("fp32_contents", "fp64_contents", "bytes_contents")
TYPED_FIELD = {"BOOL": "bool_contents", "UINT8": "uint_contents", "UINT16": "uint_contents"}
TYPED_FIELD |= {"UINT32": "uint_contents", "UINT64": "uint64_contents", "INT8": "int_contents"}
TYPED_FIELD |= {"INT16": "int_contents", "INT32": "int_contents", "INT64": "int64_contents"}
TYPED_FIELD |= {"FP32": "fp32_contents", "FP64": "fp64_contents", "BYTES": "bytes_contents"}
FIELD_RANGE = {"int_contents": (-(2**31), 2**31 - 1), "int64_contents": (-(2**63), 2**63 - 1)}
FIELD_RANGE |= {"uint_contents": (0, 2**32 - 1), "uint64_contents": (0, 2**64 - 1)}
ODD_SHAPES: tuple[list[int], ...] = (
    [-1],
    [-1, 16],
    [16, -16],
    [2**62],
    [2**31, 2**31],
    [2**32, 2**32],  # 2**64: 0 in 64-bit arithmetic
    [2**62, 4],
    [2**63 - 1],
    [-(2**63)],
    [3037000500, 3037000500],
    [1] * 65,
    [2] * 64,
    [0, 2**62],
    [0],
    [],
)
PARAMETER_KEYS = ("priority", "timeout", "sequence_id", "sequence_start", "binary_data_output", "", "n" * 10_000)
EMPTY_FINAL = "triton_enable_empty_final_response"
STREAM_BYTES = 8_000_000
"""Most request bytes one ModelStreamInfer call of the campaign sends (each request is within the limit)."""
OUTPUT = "output__0"


@dataclass(frozen=True)
class Fields:
    """The shared field generators of fuzz_messages (names, versions, free text), passed in."""

    name: Callable[[random.Random], str]
    version: Callable[[random.Random], str]
    text: Callable[[random.Random], str]


# ---- ModelInferRequest ----------------------------------------------------------------------------
def floats(rng: random.Random, count: int) -> list[float]:
    return [round(rng.uniform(-2, 2), 4) for _ in range(count)]


def control(rng: random.Random, base: dict[str, int], pb: Any, request_id: str) -> Any:
    """A well-formed FP32 request on a base model: one sample or a small batch, typed or raw."""
    model = rng.choice(sorted(base))
    width = base[model]
    rows = rng.choice((0, 1, 2, 4))
    shape = [width] if rows == 0 else [rows, width]
    values = floats(rng, width * max(rows, 1))
    request = pb.ModelInferRequest(model_name=model, model_version=rng.choice(("", "", "1.0")), id=request_id)
    tensor = request.inputs.add(name=rng.choice(("input__0", "x")), datatype="FP32", shape=shape)
    if rng.random() < 0.5:
        request.raw_input_contents.append(struct.pack(f"<{len(values)}f", *values))
    else:
        tensor.contents.fp32_contents.extend(values)
    if rng.random() < 0.3:
        request.outputs.add(name=OUTPUT)
    if rng.random() < 0.3:
        parameters(rng, request.parameters, empty_final=False)
    return request


def odd_id(rng: random.Random, fields: Fields) -> str:
    roll = rng.random()
    if roll < 0.5:
        return str(rng.randint(0, 10**6))
    if roll < 0.8:
        return fields.text(rng)
    if roll < 0.97:
        return ""
    return "i" * rng.choice((65_536, 2_000_000))


def parameters(rng: random.Random, table: Any, *, empty_final: bool = True) -> None:
    """Parameters of every kind, with odd keys and edge values (the server ignores unknown ones)."""
    for _ in range(rng.randint(0, 4)):
        key = rng.choice(PARAMETER_KEYS) if rng.random() < 0.8 else str(rng.randint(0, 99))
        if empty_final and rng.random() < 0.2:
            key = EMPTY_FINAL
        parameter = table[key]
        kinds = parameter.DESCRIPTOR.oneofs_by_name["parameter_choice"].fields  # TorchServe's has 3 of the 5
        kind = rng.randrange(len(kinds))
        if kind == 0:
            parameter.bool_param = rng.random() < 0.5
        elif kind == 1:
            parameter.int64_param = rng.choice((0, -1, 2**63 - 1, -(2**63), 10**6))
        elif kind == 2:
            parameter.string_param = "s" * 2_000_000 if rng.random() < 0.02 else str(rng.random())
        elif kind == 3:
            parameter.double_param = rng.choice((0.0, -0.0, float("nan"), float("inf"), -1e308, 5e-324))
        else:
            parameter.uint64_param = rng.choice((0, 1, 2**64 - 1))


def shape_of(rng: random.Random, width: int) -> list[int]:
    if rng.random() < 0.7:
        return rng.choice(([width], [1, width], [rng.randint(2, 4), width], [width // 2], [1], [2, 2, width]))
    return list(rng.choice(ODD_SHAPES))


def numel_of(shape: list[int]) -> int | None:
    """Elements the shape names, or None when no real request could hold them."""
    numel = 1
    for dim in shape:
        if dim < 0:
            return None
        numel *= dim
    return numel if numel <= 200_000 else None


def bytes_elements(rng: random.Random, count: int) -> list[bytes]:
    return [rng.randbytes(rng.choice((0, 1, 5, 64))) for _ in range(count)]


def raw_data(rng: random.Random, datatype: str, numel: int | None) -> bytes:
    """What raw_input_contents holds for one input: right, one off, or a lying BYTES prefix."""
    count = numel if numel is not None else rng.choice((0, 1, 8))
    roll = rng.random()
    if datatype == "BYTES":
        elements = bytes_elements(rng, count)
        wire = b"".join(struct.pack("<I", len(e)) + e for e in elements)
        if roll < 0.6:
            return wire
        lie = rng.choice((2**32 - 1, 2**31, len(wire) + 1, 7))
        if roll < 0.85:
            return struct.pack("<I", lie) + wire[4:]
        return wire + rng.choice((b"\x01", b"\x00\x00\x00", struct.pack("<I", 3)))  # trailing junk
    size = count * ITEMSIZE.get(datatype, 4)
    if roll < 0.75:
        if datatype == "BOOL":
            return bytes(rng.choice((0, 1)) if rng.random() < 0.95 else rng.randint(2, 255) for _ in range(size))
        if datatype.startswith("FP") or datatype == "BF16":
            return struct.pack(f"<{size // 4}f", *floats(rng, size // 4)) + bytes(size % 4)
        return rng.randbytes(size)
    return rng.randbytes(max(0, size + rng.choice((-1, 1, 3, -size, 4096))))


def typed_values(rng: random.Random, field: str, count: int, datatype: str) -> list[Any]:
    """`count` values for `field`; sometimes out of the datatype's range (INT8 300, UINT8 256)."""
    if field == "bytes_contents":
        return bytes_elements(rng, count)
    if field == "bool_contents":
        return [rng.random() < 0.5 for _ in range(count)]
    if field in ("fp32_contents", "fp64_contents"):
        return floats(rng, count)
    low, high = FIELD_RANGE[field]
    bits = {"INT8": 7, "UINT8": 8, "INT16": 15, "UINT16": 16}.get(datatype)
    edges = [low, high, 0, 1, -1 if low < 0 else 2]
    if bits is not None:
        edges += [2**bits, 2**bits - 1, -(2**bits) - 1 if low < 0 else 2**bits + 1]
    return [max(low, min(high, rng.choice(edges))) if rng.random() < 0.3 else rng.randint(0, 100) for _ in range(count)]


def add_input(
    rng: random.Random, request: Any, *, width: int, raw: bool, index: int, fields: Fields, big: bool
) -> None:
    roll = rng.random()
    if roll < 0.75:
        name = "input__0" if index == 0 else f"input__{index}"
    elif roll < 0.85:
        name = "input__0"  # a duplicate when index > 0
    elif roll < 0.9:
        name = ""
    elif roll < 0.92:
        name = "n" * rng.choice((65_536, 2_000_000))
    else:
        name = fields.text(rng)
    datatype = rng.choice(("FP32", "FP32", *DATATYPES)) if rng.random() < 0.9 else rng.choice(ODD_DATATYPES)
    shape = [rng.randint(20_000, 60_000), 16] if big else shape_of(rng, width)
    tensor = request.inputs.add(name=name, datatype=datatype, shape=shape)
    if rng.random() < 0.1:
        parameters(rng, tensor.parameters, empty_final=False)
    numel = numel_of(shape)
    if raw:
        if big:
            request.raw_input_contents.append(rng.randbytes(shape[0] * shape[1] * ITEMSIZE.get(datatype, 4)))
        else:
            request.raw_input_contents.append(raw_data(rng, datatype, numel))
        if rng.random() < 0.05:  # typed contents too, in a raw request
            tensor.contents.fp32_contents.append(1.0)
        return
    if big:
        tensor.contents.fp32_contents.extend(array.array("f", [0.25]) * (shape[0] * shape[1]))
        return
    field = TYPED_FIELD.get(datatype, "fp32_contents")
    roll = rng.random()
    if roll < 0.15:
        field = rng.choice(FIELDS)  # the wrong field, mostly
    count = numel if numel is not None else rng.choice((0, 1, 3))
    if roll > 0.9:
        count = max(0, count + rng.choice((-1, 1, 5)))
    getattr(tensor.contents, field).extend(typed_values(rng, field, min(count, 200_000), datatype))
    if rng.random() < 0.05:
        other = rng.choice(FIELDS)
        getattr(tensor.contents, other).extend(typed_values(rng, other, 1, datatype))


def infer(
    rng: random.Random, base: dict[str, int], pb: Any, fields: Fields, *, request_id: str = ""
) -> tuple[Any, bool]:
    """(ModelInferRequest, is a control) for package `pb`."""
    if rng.random() < 0.3:
        return control(rng, base, pb, request_id or str(rng.randint(0, 10**6))), True
    request = pb.ModelInferRequest(id=request_id or odd_id(rng, fields))
    request.model_name = rng.choice(sorted(base)) if rng.random() < 0.6 else fields.name(rng)
    request.model_version = "" if rng.random() < 0.6 else fields.version(rng)
    parameters(rng, request.parameters)
    width = base.get(request.model_name, 16)
    raw = rng.random() < 0.5
    big = rng.random() < 0.02
    for index in range(1 if big else rng.choice((0, 1, 1, 1, 1, 1, 2, 3))):
        add_input(rng, request, width=width, raw=raw, index=index, fields=fields, big=big)
    if raw and rng.random() < 0.1:
        if request.raw_input_contents and rng.random() < 0.5:
            request.raw_input_contents.pop()
        else:
            request.raw_input_contents.append(rng.randbytes(rng.choice((0, 4, 64))))
    for _ in range(rng.choice((0, 0, 0, 1, 2))):
        output = request.outputs.add(
            name=rng.choice((OUTPUT, OUTPUT, "logits", "", "o" * 2_000_000 if rng.random() < 0.05 else "x"))
        )
        if rng.random() < 0.2:
            parameters(rng, output.parameters, empty_final=False)
    return request, False


def describe(request: Any) -> str:
    inputs = ",".join(f"{t.name[:12]!r}:{t.datatype[:8]!r}{list(t.shape)[:4]}" for t in request.inputs[:3])
    return (
        f"model={request.model_name[:30]!r} v={request.model_version[:10]!r} id={request.id[:12]!r} "
        f"inputs=[{inputs}] raw={len(request.raw_input_contents)}"
    )


# ---- messages --------------------------------------------------------------------------------------
def request_for(method: str, rng: random.Random, base: dict[str, int], fields: Fields) -> tuple[Any, bool, str]:
    """(request, is a control, note) for one unary Open Inference method (a ModelInferRequest for streams)."""
    pb = PACKAGES[method[: method.rindex("/") + 1]] if not method.endswith("ModelStreamInfer") else open_inference_pb2
    short = method.rsplit("/", 1)[1]
    if short in ("ModelInfer", "ModelStreamInfer"):
        request, is_control = infer(rng, base, pb, fields)
        return request, is_control, describe(request)
    if short in ("ModelReady", "ModelMetadata"):
        known = rng.random() < 0.4
        name = rng.choice(sorted(base)) if known else fields.name(rng)
        version = rng.choice(("", "1.0")) if known and rng.random() < 0.8 else fields.version(rng)
        request = getattr(pb, f"{short}Request")(name=name, version=version)
        is_control = name in base and version in ("", "1.0")
        return request, is_control, f"name={name[:40]!r} version={version[:20]!r}"
    return getattr(pb, f"{short}Request")(), short == "ServerLive", ""


def metadata_message(rng: random.Random, base: dict[str, int], fields: Fields) -> tuple[str, list[Any], bool, str]:
    method = rng.choice(list(PACKAGES)) + rng.choice(METADATA)
    request, is_control, note = request_for(method, rng, base, fields)
    return method, [request], is_control, note


def infer_message(rng: random.Random, base: dict[str, int], fields: Fields) -> tuple[str, list[Any], bool, str]:
    method = rng.choice(list(PACKAGES)) + "ModelInfer"
    request, is_control, note = request_for(method, rng, base, fields)
    return method, [request], is_control, note


def stream_message(
    rng: random.Random, base: dict[str, int], fields: Fields
) -> tuple[str, list[Any], bool, str, int | None]:
    """(method, requests, all are controls and read, note, read_limit) for one ModelStreamInfer call.

    read_limit None: the client reads every answer; N: it reads N answers, then cancels the call
    (0: it writes every request and reads nothing, the flood a server must not buffer for).
    """
    roll = rng.random()
    read_limit: int | None = None
    if roll < 0.08:
        count = rng.randint(150, 400)  # more than two windows of 64
        read_limit = rng.choice((0, 0, rng.randint(1, 100)))
    elif roll < 0.16:
        count = rng.randint(4, 40)
        read_limit = rng.randint(0, count)
    else:
        count = rng.choice((0, 1, 2, 3, 5, 8))
    requests: list[Any] = []
    controls = size = 0
    for index in range(count):
        if count > 40:  # a flood: small requests, a fifth of them bad
            request, is_control = flood_request(rng, base, f"r{index}"), False
            is_control = request.model_name in base and request.inputs[0].datatype == "FP32"
        else:
            request, is_control = infer(rng, base, open_inference_pb2, fields, request_id=f"r{index}")
        if is_control and rng.random() < 0.1:
            request.parameters[EMPTY_FINAL].bool_param = True
        size += request.ByteSize()
        if size > STREAM_BYTES:
            break
        controls += is_control
        requests.append(request)
    is_control = bool(requests) and controls == len(requests) and read_limit is None
    note = f"{len(requests)} requests, {controls} controls"
    return OIP + "ModelStreamInfer", requests, is_control, note, read_limit


def flood_request(rng: random.Random, base: dict[str, int], request_id: str) -> Any:
    """A small stream request: a control, or (one in five) one with an unknown model, datatype or a bad shape."""
    request = control(rng, base, open_inference_pb2, request_id)
    roll = rng.random()
    if roll < 0.07:
        request.model_name = "nope"
    elif roll < 0.14:
        request.inputs[0].datatype = rng.choice(ODD_DATATYPES)
    elif roll < 0.2:
        del request.inputs[0].shape[:]
        request.inputs[0].shape.extend(rng.choice(ODD_SHAPES))
    return request


# ---- checks (fuzz.py) ------------------------------------------------------------------------------
def is_oip(method: str) -> bool:
    return method in METHODS


def check_control(method: str, bodies: tuple[bytes, ...], responses: list[bytes], outputs: dict[str, int]) -> list[str]:
    """What is wrong with the answers to well-formed requests on base models (`outputs`: model → width)."""
    short = method.rsplit("/", 1)[1]
    pb = PACKAGES.get(method[: method.rindex("/") + 1], open_inference_pb2)
    if short == "ModelStreamInfer":
        return check_stream_control(bodies, responses, outputs)
    if len(responses) != 1:
        return [f"{len(responses)} replies to one {short} call"]
    if short == "ServerLive":
        return [] if pb.ServerLiveResponse.FromString(responses[0]).live else ["ServerLive said live=false"]
    if short == "ModelReady":
        return [] if pb.ModelReadyResponse.FromString(responses[0]).ready else ["a base model is not ready"]
    if short == "ModelMetadata":
        reply = pb.ModelMetadataResponse.FromString(responses[0])
        request = pb.ModelMetadataRequest.FromString(bodies[0])
        ok = reply.name == request.name and [o.name for o in reply.outputs] == [OUTPUT]
        return [] if ok else [f"metadata of a base model: {str(reply)[:200]!r}"]
    request = pb.ModelInferRequest.FromString(bodies[0])
    return check_answer(request, pb.ModelInferResponse.FromString(responses[0]), outputs)


def check_answer(request: Any, reply: Any, outputs: dict[str, int]) -> list[str]:
    """A control's answer: its id, one FP32 output named output__0, as many values as the model gives."""
    (tensor,) = request.inputs
    rows = tensor.shape[0] if len(tensor.shape) == 2 else None
    width = outputs[request.model_name]
    shape = [width] if rows is None else [rows, width]
    if reply.id != request.id or len(reply.outputs) != 1:
        return [f"answer id {reply.id[:20]!r} for {request.id[:20]!r}, {len(reply.outputs)} outputs"]
    output = reply.outputs[0]
    if (output.name, output.datatype, list(output.shape)) != (OUTPUT, "FP32", shape):
        return [f"answer {output.name!r} {output.datatype} {list(output.shape)}, want {OUTPUT!r} FP32 {shape}"]
    raw = bool(request.raw_input_contents)
    count = (
        len(reply.raw_output_contents[0]) // 4
        if raw and reply.raw_output_contents
        else len(output.contents.fp32_contents)
    )
    expected = shape[0] * (shape[1] if len(shape) == 2 else 1)
    if count != expected:
        return [f"answer holds {count} values, want {expected} ({'raw' if raw else 'typed'})"]
    return []


def check_stream_control(bodies: tuple[bytes, ...], responses: list[bytes], outputs: dict[str, int]) -> list[str]:
    requests = {r.id: r for r in map(open_inference_pb2.ModelInferRequest.FromString, bodies)}
    finals: set[str] = set()
    for raw in responses:
        reply = open_inference_pb2.ModelStreamInferResponse.FromString(raw)
        if reply.error_message:
            return [f"a well-formed stream request failed in-band: {reply.error_message[:200]!r}"]
        answer = reply.infer_response
        if answer.id not in requests:
            return [f"an answer for unknown id {answer.id[:20]!r}"]
        if not answer.outputs:  # the empty final response a request asked for
            finals.add(answer.id)
            continue
        problems = check_answer(requests[answer.id], answer, outputs)
        if problems:
            return problems
        if answer.parameters["triton_final_response"].bool_param:
            finals.add(answer.id)
    if finals != set(requests):
        return [f"{len(finals)} of {len(requests)} stream requests got a final answer"]
    return []


def check_in_band(responses: list[bytes], max_details: int) -> list[str]:
    """ModelStreamInfer's in-band errors: never INTERNAL for client input, never a multi-kB echo."""
    found: list[str] = []
    for raw in responses:
        message = open_inference_pb2.ModelStreamInferResponse.FromString(raw).error_message
        if message == INTERNAL_MESSAGE:
            found.append("in-band INTERNAL for client input")
        if len(message) > max_details:
            found.append(f"in-band error of {len(message):,} characters (client input echoed untruncated?)")
    return found
