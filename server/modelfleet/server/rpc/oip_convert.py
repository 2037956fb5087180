"""Open Inference Protocol messages ↔ registry arguments and answers (both proto packages).

Called by the thin servicer in open_inference.py. The `default` handler gets the one tensor in its
raw form plus `accept: safetensors`, so its answer carries dtype and shape; every other handler gets
one input entry per BYTES (or UINT8) input and answers one BYTES output. Tensor bytes are the codec's
(oip_tensors.py); errors are ModelFleetErrors, mapped to codes in status.py. No registry calls here.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from modelfleet.server.echo import clip, quoted
from modelfleet.server.errors import ErrorKind, ModelFleetError, Reason, bad_input, missing_field
from modelfleet.server.models import signature as signatures
from modelfleet.server.models.handlers.decoding import ACCEPT
from modelfleet.server.models.registry import ModelVersion
from modelfleet.server.rpc.oip_tensors import (
    OIP_DATATYPES,
    TORCH_UNSUPPORTED,
    InputTensor,
    contents_size,
    decode_inputs,
    encode_output,
    read_safetensors_answer,
)

SERVER_NAME = "modelfleet"
ALWAYS_RAW = frozenset({"FP16", "BF16"})
"""Datatypes without a typed contents field: answered in raw_output_contents whatever the request used."""
FINAL_RESPONSE = "triton_final_response"
"""ModelStreamInfer response parameter: True on a request's last response (Triton's decoupled mode)."""
EMPTY_FINAL = "triton_enable_empty_final_response"
"""Request parameter: end each request's responses with an empty one marked final (Triton's opt-in)."""
STREAM_OVERHEAD = 64
"""Bytes a ModelStreamInferResponse adds around its ModelInferResponse (the wrapper's tag and length,
the `triton_final_response` parameter): a streamed answer must fit the limit less these."""
_LENGTH = struct.Struct("<I")


@dataclass(frozen=True, slots=True)
class Plan:
    """One ModelInfer request, checked and ready for the registry, and how to answer it."""

    target: ModelVersion
    """The version that runs (the default resolved), looked up once for the whole request."""
    name: str
    version: str
    """The version's name, so the answer names it."""
    inputs: dict[str, bytes]
    tensor: bool
    """The default handler's safetensors answer; else the handler's bytes as one BYTES element."""
    output: str
    raw: bool
    """The request used raw_input_contents, so the answer does too."""
    id: str


def model_name(name: str, field: str) -> str:
    if not name:
        raise missing_field(field)
    return name


def plan(request: Any, target: ModelVersion, *, max_bytes: int) -> Plan:
    """Check a ModelInferRequest against the version that will run it; BAD_INPUT naming what is wrong."""
    loaded = target.loaded
    tensor = loaded.handler_name == signatures.TENSOR_HANDLER
    output = signatures.output_name(loaded)
    for wanted in request.outputs:
        if wanted.name != output:
            raise bad_input(
                f"unknown requested output {quoted(wanted.name)}: model {target.key.name} gives one output, "
                f"{quoted(output)}"
            )
    decoded = decode_inputs(request, max_bytes=max_bytes)
    inputs = _tensor_inputs(decoded, target) if tensor else _bytes_inputs(decoded, target)
    return Plan(
        target=target,
        name=target.key.name,
        version=target.key.version,
        inputs=inputs,
        tensor=tensor,
        output=output,
        raw=len(request.raw_input_contents) > 0,
        id=request.id,
    )


def _tensor_inputs(decoded: Sequence[InputTensor], target: ModelVersion) -> dict[str, bytes]:
    """The default handler's raw form: the bytes as protobuf made them, `dtype`, `shape`, `accept`."""
    if len(decoded) != 1:
        takes = signatures.effective(target.loaded).inputs
        wanted = ", ".join(f"{spec.name} ({spec.datatype})" for spec in takes)
        raise bad_input(
            f"model {target.key.name} takes exactly one input tensor, {wanted}; the request has {len(decoded)}: "
            f"{clip(', '.join(t.name for t in decoded))}"
        )
    one = decoded[0]
    if one.datatype == "BYTES" or one.datatype in TORCH_UNSUPPORTED:
        raise bad_input(
            f"input {quoted(one.name)}: model {target.key.name} takes a numeric tensor torch can hold "
            f"({', '.join(sorted(set(OIP_DATATYPES) - TORCH_UNSUPPORTED))}), not {one.datatype}"
        )
    return {
        "data": _as_bytes(one.data),
        "dtype": OIP_DATATYPES[one.datatype].encode(),
        "shape": ("[" + ",".join(map(str, one.shape)) + "]").encode(),
        ACCEPT: b"safetensors",
    }


def _bytes_inputs(decoded: Sequence[InputTensor], target: ModelVersion) -> dict[str, bytes]:
    """One entry per input, named like it (`data` too when there is one): BYTES of one element, or UINT8."""
    entries: dict[str, bytes] = {}
    for one in decoded:
        if one.datatype == "BYTES" and one.elements is not None and len(one.elements) == 1:
            entries[one.name] = one.elements[0]
        elif one.datatype == "UINT8":
            entries[one.name] = _as_bytes(one.data)
        else:
            count = "" if one.elements is None else f" of {len(one.elements)} elements"
            raise bad_input(
                f"input {quoted(one.name)}: model {target.key.name} (handler {target.loaded.handler_name!r}) "
                f"takes BYTES inputs of exactly one element, or UINT8 bytes; got {one.datatype}{count}"
            )
    if len(decoded) == 1:
        entries["data"] = entries[decoded[0].name]
    return entries


def _as_bytes(data: bytes | memoryview) -> bytes:
    """The bytes behind `data` without a copy when the view covers a whole bytes object."""
    if isinstance(data, bytes):
        return data
    owner = data.obj
    if isinstance(owner, bytes) and len(owner) == data.nbytes:
        return owner
    return bytes(data)


def infer_response(pb: Any, plan: Plan, answer: bytes, *, max_bytes: int) -> Any:
    """The ModelInferResponse for one answer of the handler (pb: the package's *_pb2 module).

    Its size is computed before it is built: typed contents can take several times the raw size
    (an INT8 -1 is a 10-byte varint), and the request's id is echoed, so a handler answer under the
    limit does not make a response under it. Over `max_bytes` is RESOURCE_EXHAUSTED (MESSAGE_TOO_LARGE).
    """
    response = pb.ModelInferResponse(model_name=plan.name, model_version=plan.version, id=plan.id)
    data: bytes | memoryview
    if plan.tensor:
        datatype, shape, data = read_safetensors_answer(answer)
        raw = plan.raw or datatype in ALWAYS_RAW
    else:
        datatype, shape, data = "BYTES", (1,), _LENGTH.pack(len(answer)) + answer
        raw = plan.raw
    size = _response_size(pb, response, plan.output, datatype, shape, data, raw=raw)
    if size > max_bytes:
        advice = "" if raw else " as typed contents; send the input in raw_input_contents to get it raw"
        raise ModelFleetError(
            ErrorKind.RESOURCE_EXHAUSTED,
            Reason.MESSAGE_TOO_LARGE,
            f"the answer takes {size:,} bytes{advice}, more than the {max_bytes:,}-byte response limit",
            metadata={"estimatedBytes": str(size), "limitBytes": str(max_bytes)},
        )
    output = response.outputs.add()
    raw_bytes = encode_output(output, name=plan.output, datatype=datatype, shape=shape, data=data, raw=raw)
    if raw_bytes is not None:
        response.raw_output_contents.append(raw_bytes)
    return response


def _response_size(
    pb: Any, response: Any, name: str, datatype: str, shape: Sequence[int], data: bytes | memoryview, *, raw: bool
) -> int:
    """The exact serialized size `response` will have with this one output, without building the output."""
    output: int = pb.ModelInferResponse.InferOutputTensor(name=name, datatype=datatype, shape=shape).ByteSize()
    extra = 0
    if raw:
        extra = _field_size(len(data))  # one raw_output_contents entry
    else:
        contents = contents_size(datatype, data)
        output += _field_size(contents) if contents else 0  # the contents message, omitted when empty
    header: int = response.ByteSize()
    return header + _field_size(output) + extra


def _field_size(length: int) -> int:
    """A length-delimited field of `length` bytes: one tag byte (field numbers < 16), the length, the bytes."""
    return 1 + max(1, (length.bit_length() + 6) // 7) + length


def final_marked(response: Any, final: bool) -> Any:
    response.parameters[FINAL_RESPONSE].bool_param = final
    return response


def wants_empty_final(request: Any) -> bool:
    parameter = request.parameters.get(EMPTY_FINAL)
    return parameter is not None and parameter.WhichOneof("parameter_choice") == "bool_param" and parameter.bool_param


def stream_error(pb: Any, request: Any, message: str) -> Any:
    """Triton's in-band failure: error_message, and the request's id, model and version to match it."""
    return pb.ModelStreamInferResponse(
        error_message=message,
        infer_response=pb.ModelInferResponse(
            id=request.id, model_name=request.model_name, model_version=request.model_version
        ),
    )


def metadata_response(pb: Any, target: ModelVersion, versions: Sequence[str]) -> Any:
    described = signatures.effective(target.loaded)
    tensor = pb.ModelMetadataResponse.TensorMetadata
    return pb.ModelMetadataResponse(
        name=target.key.name,
        versions=list(versions),
        platform=signatures.platform_of(target.loaded.serialized_format),
        inputs=[tensor(name=s.name, datatype=s.datatype, shape=list(s.shape)) for s in described.inputs],
        outputs=[tensor(name=s.name, datatype=s.datatype, shape=list(s.shape)) for s in described.outputs],
    )
