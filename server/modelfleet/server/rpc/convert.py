"""Protobuf ↔ domain: request fields to registry arguments, results to TorchServe's reply shapes.

Called by the thin servicers in inference.py and management.py. Pure functions: no registry, no
gRPC context beyond reading its deadline, no status codes (errors are ModelFleetError, mapped in
status.py). Reply sentences and JSON layout are TorchServe 0.12's (ManagementImpl, ApiUtils), so
clients that print or parse them see what they saw before.
"""

from __future__ import annotations

import json
import time
from typing import Any

from grpc import aio

from modelfleet.protos import inference_pb2, management_pb2
from modelfleet.server.errors import ErrorKind, ModelFleetError, Reason
from modelfleet.server.models.contracts import RegisterSpec

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
    return inference_pb2.TorchServeHealthResponse(
        health=pretty_json({"status": "Healthy" if healthy else "Unhealthy"})
    )


def prediction_target(request: inference_pb2.PredictionsRequest) -> tuple[str, str | None]:
    """(model, version or None for the default)."""
    return required("model_name", request.model_name), request.model_version or None


def sequence_id(request: inference_pb2.PredictionsRequest) -> str:
    return required("sequence_id", request.sequence_id, message="Parameter sequenceId is required.")


# ---- management --------------------------------------------------------------------------------
def reply(message: str) -> management_pb2.ManagementResponse:
    return management_pb2.ManagementResponse(msg=message)


def json_reply(value: Any) -> management_pb2.ManagementResponse:
    return management_pb2.ManagementResponse(msg=pretty_json(value))


def register_spec(request: management_pb2.RegisterModelRequest) -> RegisterSpec:
    """RegisterModelRequest → RegisterSpec; 0 (unset) numbers mean the server's defaults (TorchServe)."""
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
        batch_size=request.batch_size,
        max_batch_delay_ms=request.max_batch_delay,
        initial_workers=request.initial_workers,
        # TorchServe treats 0 and -1 alike as "the default"; the registry's default applies to <= 0.
        response_timeout_s=request.response_timeout,
        startup_timeout_s=request.startup_timeout,
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


def default_set_sentence(name: str, version: str) -> str:
    return f'Default version successfully updated for model "{name}" to "{version}"'
