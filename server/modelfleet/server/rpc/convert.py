"""Protobuf ↔ domain: request fields to registry arguments, results to TorchServe's reply shapes.

Called by the thin servicers in inference.py and management.py. Pure functions: no registry, no
gRPC context beyond reading its deadline, no status codes (errors are ModelFleetError, mapped in
status.py). Reply sentences and JSON layout are TorchServe 0.12's (ManagementImpl, ApiUtils), so
clients that print or parse them see what they saw before.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from grpc import aio

from modelfleet.protos import inference_pb2, management_pb2
from modelfleet.server.errors import ErrorKind, ModelFleetError, Reason
from modelfleet.server.models.contracts import RegisterSpec
from modelfleet.server.models.sequences import SequenceRequest

RUNTIMES = frozenset({"", "python", "python3"})
"""RegisterModelRequest.runtime values accepted (TorchServe's Python runtimes; `lsp` is not served)."""

PROCESSING = "Processing worker updates..."
"""TorchServe's reply to a RegisterModel/ScaleWorker that does not wait for workers (HTTP 202)."""


def required(field: str, value: str, *, message: str | None = None) -> str:
    """`value` unless empty; TorchServe says "Parameter <field> is required."."""
    if not value:
        raise ModelFleetError(
            ErrorKind.INVALID_ARGUMENT,
            Reason.MISSING_FIELD,
            message or f"Parameter {field} is required.",
            metadata={"field": field},
        )
    return value


def deadline(context: aio.ServicerContext) -> float | None:
    """The client's deadline on the time.monotonic() clock, or None when it set none."""
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


def pretty_json(value: Any) -> str:
    """Gson's pretty printing as TorchServe configures it: 2-space indent, no HTML or non-ASCII escaping."""
    return json.dumps(value, indent=2, ensure_ascii=False)


# ---- inference ---------------------------------------------------------------------------------
def ping_reply(healthy: bool) -> inference_pb2.TorchServeHealthResponse:
    return inference_pb2.TorchServeHealthResponse(health=pretty_json({"status": "Healthy" if healthy else "Unhealthy"}))


def prediction_target(request: inference_pb2.PredictionsRequest) -> tuple[str, str | None]:
    """(model, version or None for the default)."""
    return required("model_name", request.model_name), request.model_version or None


def sequence_id(request: inference_pb2.PredictionsRequest) -> str:
    return required("sequence_id", request.sequence_id, message="Parameter sequenceId is required.")


SEQUENCE_START = "ts_request_sequence_start"
SEQUENCE_END = "ts_request_sequence_end"
"""TorchServe 0.12's sequence markers: input entries whose value "true" (any case) starts or ends a sequence."""


def sequence_request(request: inference_pb2.PredictionsRequest) -> tuple[SequenceRequest, dict[str, bytes]]:
    """A StreamPredictions2 request's sequence and its inputs without the markers.

    No sequence_id: with the start marker the server names the sequence `ts-seq-<uuid>` (TorchServe's
    form), without it "Parameter sequenceId is required.".
    """
    inputs = dict(request.input)
    start = _marker(inputs.pop(SEQUENCE_START, None))
    end = _marker(inputs.pop(SEQUENCE_END, None))
    name = request.sequence_id
    if not name:
        if not start:
            sequence_id(request)  # raises TorchServe's error
        name = f"ts-seq-{uuid.uuid4()}"
    return SequenceRequest(name, start=start, end=end), inputs


def _marker(value: bytes | None) -> bool:
    return value is not None and value.strip().lower() == b"true"


# ---- management --------------------------------------------------------------------------------
def reply(message: str) -> management_pb2.ManagementResponse:
    return management_pb2.ManagementResponse(msg=message)


def json_reply(value: Any) -> management_pb2.ManagementResponse:
    return management_pb2.ManagementResponse(msg=pretty_json(value))


def register_spec(request: management_pb2.RegisterModelRequest, *, negative_is_unset: bool) -> RegisterSpec:
    """RegisterModelRequest → RegisterSpec; 0 (unset) numbers mean the server's defaults (TorchServe).

    `negative_is_unset` (torchserve mode): every number ≤ 0 is unset, as TorchServe's
    GRPCUtils.getRegisterParam reads them; otherwise negatives pass through and the registry
    refuses a negative batch_size, max_batch_delay or initial_workers (a negative timeout is the
    default in both modes, as in TorchServe).
    """

    def number(value: int) -> int:
        return max(value, 0) if negative_is_unset else value

    url = required("url", request.url)
    if request.runtime not in RUNTIMES:
        raise ModelFleetError(
            ErrorKind.INVALID_ARGUMENT,
            Reason.BAD_INPUT,
            f"Unsupported runtime {request.runtime!r}: only python models are served",
            metadata={"field": "runtime"},
        )
    return RegisterSpec(
        url=url,
        model_name=request.model_name,
        handler=request.handler,
        batch_size=number(request.batch_size),
        max_batch_delay_ms=number(request.max_batch_delay),
        initial_workers=number(request.initial_workers),
        # TorchServe treats 0 and -1 alike as "the default"; the registry's default applies to <= 0.
        response_timeout_s=number(request.response_timeout),
        startup_timeout_s=number(request.startup_timeout),
        synchronous=request.synchronous,
    )


def registered_sentence(name: str, version: str, workers: int, *, synchronous: bool) -> str:
    if not synchronous:
        return PROCESSING
    return f'Model "{name}" Version: {version} registered with {workers} initial workers'


def scaled_sentence(name: str, version: str | None, min_workers: int, *, synchronous: bool) -> str:
    if not synchronous:
        return PROCESSING
    sentence = f"Workers scaled to {min_workers} for model: {name}"
    return sentence if version is None else f"{sentence}, version: {version}"


def scale_bounds(request: management_pb2.ScaleWorkerRequest) -> tuple[int, int]:
    """(min, max) with TorchServe's zero quirk: min 0 → 1, max 0 → min (GRPCUtils.getRegisterParam)."""
    low = request.min_worker if request.min_worker > 0 else 1
    high = request.max_worker if request.max_worker > 0 else low
    return low, high


def unregistered_sentence(name: str) -> str:
    return f'Model "{name}" unregistered'


def no_version_to_set(name: str) -> ModelFleetError:
    """SetDefault without model_version, in TorchServe's words: it looks up version "" (two spaces)."""
    return ModelFleetError(
        ErrorKind.INVALID_ARGUMENT,
        Reason.MISSING_FIELD,
        f"Model version  does not exist for model {name}",
        metadata={"field": "model_version", "model": name},
    )


def default_set_sentence(name: str, version: str) -> str:
    return f'Default version successfully updated for model "{name}" to "{version}"'
