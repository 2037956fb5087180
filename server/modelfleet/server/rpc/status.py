"""The one table from domain errors to gRPC status codes, and the helper that applies it to a servicer.

app.py registers every servicer through add_servicer(): each RPC method is wrapped once, at
registration, in one try/except that turns a ModelFleetError into an abort with the mapped code,
its message and a google.rpc.ErrorInfo trailer, and anything else into INTERNAL with a generic
message (traceback logged only). Servicers never choose codes; nothing else maps them either.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from types import SimpleNamespace
from typing import Any

from google.protobuf import descriptor as _descriptor
from google.rpc import status_pb2
from grpc import StatusCode as Code
from grpc import aio

from modelfleet.server.echo import MESSAGE_LIMIT, clip
from modelfleet.server.errors import ErrorKind, ModelFleetError, Reason
from modelfleet.server.rpc.error_details import error_info_any, error_status_trailer
from modelfleet.server.settings import StatusMode

log = logging.getLogger(__name__)


INTERNAL_MESSAGE = "Internal server error"
"""What a client sees for an unexpected exception; the traceback goes to the log only."""

# Inference RPCs: TorchServe 0.12's InferenceImpl answers their lookup failures with INTERNAL.
_PREDICT_METHODS = ("Predictions", "StreamPredictions", "StreamPredictions2")

# ---------------------------------------------------------------------------------------------
# THE table. "conventional" is gRPC's usual meaning (STYLE §1.3). "torchserve" is what a
# TorchServe 0.12 client saw over gRPC (docs/torchserve-contract.md; grpcimpl/InferenceImpl.java,
# ManagementImpl.java, util/GRPCUtils.java), used by default so existing clients keep working.
# Reason first; a (method, reason) row overrides it for one RPC; the kind is the last resort
# for a reason added later without a row (kinds are named after the conventional codes).
# ---------------------------------------------------------------------------------------------
_BY_KIND: dict[ErrorKind, Code] = {
    ErrorKind.NOT_FOUND: Code.NOT_FOUND,
    ErrorKind.ALREADY_EXISTS: Code.ALREADY_EXISTS,
    ErrorKind.INVALID_ARGUMENT: Code.INVALID_ARGUMENT,
    ErrorKind.FAILED_PRECONDITION: Code.FAILED_PRECONDITION,
    ErrorKind.PERMISSION_DENIED: Code.PERMISSION_DENIED,
    ErrorKind.UNAVAILABLE: Code.UNAVAILABLE,
    ErrorKind.RESOURCE_EXHAUSTED: Code.RESOURCE_EXHAUSTED,
    ErrorKind.DEADLINE_EXCEEDED: Code.DEADLINE_EXCEEDED,
    ErrorKind.INTERNAL: Code.INTERNAL,
}

# reason: (conventional, torchserve); None = the error's kind decides.
_BY_REASON: dict[Reason, tuple[Code | None, Code | None]] = {
    Reason.MODEL_NOT_FOUND: (Code.NOT_FOUND, Code.NOT_FOUND),
    Reason.VERSION_NOT_FOUND: (Code.NOT_FOUND, Code.NOT_FOUND),
    # TS: an uncaught ConflictStatusException → UNKNOWN (pytorch/serve#3199). A name + version
    # registered again is this one case to a client, whatever the URL (TS's INTERNAL for a second
    # copy of the same file:// URL came from its store copy, which ModelFleet never makes).
    Reason.ALREADY_EXISTS: (Code.ALREADY_EXISTS, Code.UNKNOWN),
    # TS: FileAlreadyExistsException → InternalServerException "Model file already exists <file>"
    # → INTERNAL (ApiUtils.handleRegister, ManagementImpl.sendException). A documented quirk.
    Reason.MODEL_FILE_EXISTS: (Code.ALREADY_EXISTS, Code.INTERNAL),
    # TS: "Given URL ... does not match any allowed URL(s)" is a ModelNotFoundException → NOT_FOUND.
    Reason.SOURCE_NOT_ALLOWED: (Code.PERMISSION_DENIED, Code.NOT_FOUND),
    Reason.SOURCE_NOT_FOUND: (Code.NOT_FOUND, Code.NOT_FOUND),
    # TS: DownloadArchiveException / ModelException → INVALID_ARGUMENT (ManagementImpl.registerModel).
    Reason.SOURCE_FETCH_FAILED: (None, Code.INVALID_ARGUMENT),
    Reason.CHECKSUM_MISMATCH: (None, Code.INVALID_ARGUMENT),
    # TS: "Relative path is not allowed in url" is a ModelNotFoundException → NOT_FOUND.
    Reason.PATH_ESCAPE: (Code.INVALID_ARGUMENT, Code.NOT_FOUND),
    Reason.UNSUPPORTED_FORMAT: (None, Code.INVALID_ARGUMENT),
    Reason.HANDLER_NOT_ALLOWED: (None, Code.INVALID_ARGUMENT),
    # TS: "Failed to start workers for model ..." (HTTP 500 → INTERNAL).
    Reason.LOAD_FAILED: (None, Code.INTERNAL),
    Reason.VERSION_MISMATCH: (None, None),
    Reason.LOAD_TIMEOUT: (Code.DEADLINE_EXCEEDED, Code.DEADLINE_EXCEEDED),
    Reason.MESSAGE_TOO_LARGE: (Code.RESOURCE_EXHAUSTED, Code.RESOURCE_EXHAUSTED),
    Reason.BAD_INPUT: (Code.INVALID_ARGUMENT, Code.INVALID_ARGUMENT),
    # Also a name or version longer than any registrable one on a lookup (a 2 MB model_name on
    # Predictions): bad input in both modes, answered before the lookup and never echoed whole.
    Reason.INVALID_NAME: (Code.INVALID_ARGUMENT, Code.INVALID_ARGUMENT),
    Reason.MISSING_FIELD: (Code.INVALID_ARGUMENT, Code.INVALID_ARGUMENT),
    # TS: InvalidModelVersionException escapes ManagementImpl.unregisterModel uncaught → UNKNOWN.
    Reason.DEFAULT_VERSION_IN_USE: (Code.FAILED_PRECONDITION, Code.UNKNOWN),
    Reason.MODEL_API_DISABLED: (Code.PERMISSION_DENIED, Code.PERMISSION_DENIED),
    # TS answers a missing or wrong token with PERMISSION_DENIED (pytorch/serve PR #3238).
    Reason.TOKEN_INVALID: (Code.UNAUTHENTICATED, Code.PERMISSION_DENIED),
    # TS over gRPC: ModelManager.addJob() returning false (queue full, or no worker) becomes
    # Status.INTERNAL in InferenceImpl.prediction(); only its REST API answers 503.
    Reason.QUEUE_FULL: (Code.RESOURCE_EXHAUSTED, Code.INTERNAL),
    Reason.NO_WORKERS: (Code.UNAVAILABLE, Code.INTERNAL),
    # TS fails a job whose worker exceeds response_timeout with "Worker died." (HTTP 500 →
    # INTERNAL); the issue asks for DEADLINE_EXCEEDED-class behaviour, so both modes send that.
    Reason.RESPONSE_TIMEOUT: (Code.DEADLINE_EXCEEDED, Code.DEADLINE_EXCEEDED),
    Reason.DEADLINE_PASSED: (Code.DEADLINE_EXCEEDED, Code.DEADLINE_EXCEEDED),
    Reason.SHUTTING_DOWN: (Code.UNAVAILABLE, Code.UNAVAILABLE),
    # TorchServe had no such limits (ScaleWorker to 2^31-1 started threads until the OS refused), so
    # there is no quirk to keep: both modes send RESOURCE_EXHAUSTED, as for an oversized message.
    Reason.LIMIT_EXCEEDED: (Code.RESOURCE_EXHAUSTED, Code.RESOURCE_EXHAUSTED),
    Reason.INTERNAL: (Code.INTERNAL, Code.INTERNAL),
}

# (method, reason): torchserve-mode code for that one RPC. Conventional mode has no overrides.
_TORCHSERVE_BY_METHOD: dict[tuple[str, Reason], Code] = {
    # "Model not found" on an inference RPC is caught and sent as Status.INTERNAL (InferenceImpl).
    **{(method, Reason.MODEL_NOT_FOUND): Code.INTERNAL for method in _PREDICT_METHODS},
    **{(method, Reason.VERSION_NOT_FOUND): Code.INTERNAL for method in _PREDICT_METHODS},
    # "Parameter model_name is required." / "Parameter sequenceId is required." → Status.INTERNAL.
    **{(method, Reason.MISSING_FIELD): Code.INTERNAL for method in _PREDICT_METHODS},
    # SetDefault looks the empty name or version up like any other (ModelVersionedRefs.setDefaultVersion):
    # ModelNotFoundException / ModelVersionNotFoundException → NOT_FOUND.
    ("SetDefault", Reason.MISSING_FIELD): Code.NOT_FOUND,
}


def codes_for(method: str, mode: StatusMode) -> dict[Reason, Code]:
    """Reason → code for one RPC in one mode (computed once per method at registration)."""
    column = 1 if mode == "torchserve" else 0
    table: dict[Reason, Code] = {}
    for reason, codes in _BY_REASON.items():
        code = codes[column]
        if code is not None:
            table[reason] = code
    if mode == "torchserve":
        for (name, reason), code in _TORCHSERVE_BY_METHOD.items():
            if name == method:
                table[reason] = code
    return table


def code_of(error: ModelFleetError, table: Mapping[Reason, Code]) -> Code:
    return table.get(error.reason) or _BY_KIND[error.kind]


def token_denied_code(mode: StatusMode) -> Code:
    """What the auth interceptor answers a missing or wrong token with."""
    return codes_for("", mode)[Reason.TOKEN_INVALID]


def in_band_status(error: ModelFleetError, table: Mapping[Reason, Code]) -> status_pb2.Status:
    """google.rpc.Status for an error sent inside a response message (StreamPredictions2)."""
    detail = error_info_any(error.reason.value, error.metadata)  # metadata clipped there
    message = clip(error.message, MESSAGE_LIMIT)  # messages may quote client values: never send megabytes
    return status_pb2.Status(code=code_of(error, table).value[0], message=message, details=[detail])


async def abort(context: aio.ServicerContext, error: ModelFleetError, table: Mapping[Reason, Code]) -> None:
    code = code_of(error, table)
    message = clip(error.message, MESSAGE_LIMIT)  # messages may quote client values: never send megabytes
    trailer = error_status_trailer(code, message, reason=error.reason.value, metadata=error.metadata)
    await context.abort(code, message, trailing_metadata=trailer)


async def abort_internal(context: aio.ServicerContext, method: str) -> None:
    log.exception("Unexpected error in %s", method)
    trailer = error_status_trailer(Code.INTERNAL, INTERNAL_MESSAGE, reason=Reason.INTERNAL.value)
    await context.abort(Code.INTERNAL, INTERNAL_MESSAGE, trailing_metadata=trailer)


# ---- registration ------------------------------------------------------------------------------
Method = Callable[..., Any]


def _wrap_unary(method: Method, name: str, table: Mapping[Reason, Code]) -> Method:
    async def call(request: Any, context: aio.ServicerContext) -> Any:
        try:
            return await method(request, context)
        except ModelFleetError as error:
            await abort(context, error, table)
        except aio.AbortError:
            raise
        except Exception:
            await abort_internal(context, name)

    return call


def _wrap_streaming(method: Method, name: str, table: Mapping[Reason, Code]) -> Method:
    async def call(request: Any, context: aio.ServicerContext) -> AsyncIterator[Any]:
        try:
            async for response in method(request, context):
                yield response
        except ModelFleetError as error:
            await abort(context, error, table)
        except aio.AbortError:
            raise
        except Exception:
            await abort_internal(context, name)

    return call


def add_servicer(
    server: aio.Server,
    servicer: object,
    add_to_server: Callable[[Any, aio.Server], None],
    *,
    service: _descriptor.ServiceDescriptor,
    mode: StatusMode,
) -> None:
    """Register `servicer` with every method wrapped in the error mapping, once, here.

    `add_to_server` is the generated `add_<Service>Servicer_to_server`; it is given a namespace
    holding the wrapped methods, so the handlers grpc builds call them directly (no interceptor,
    nothing rebuilt per call). Streaming responses go through one async-generator hop.
    """
    wrapped: dict[str, Method] = {}
    for method in service.methods:
        target = getattr(servicer, method.name)
        table = codes_for(method.name, mode)
        full_name = f"{service.full_name}/{method.name}"
        wrap = _wrap_streaming if method.server_streaming else _wrap_unary
        wrapped[method.name] = wrap(target, full_name, table)
    add_to_server(SimpleNamespace(**wrapped), server)
