"""google.rpc rich error details: the `grpc-status-details-bin` trailer carrying an ErrorInfo.

Used by the auth interceptor and by rpc/status.py (the one domain-error → code table) so every
error a client sees carries the same machine-readable shape. It builds and reads trailers only;
it never chooses a status code (callers pass one in).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from modelfleet.server.echo import MESSAGE_LIMIT, clip, clip_metadata

DOMAIN = "modelfleet.io"
"""ErrorInfo.domain of every error this server sends."""

STATUS_DETAILS_KEY = "grpc-status-details-bin"
"""The trailer gRPC's rich-error model defines (grpcio-status reads the same key)."""

Trailer = tuple[tuple[str, bytes], ...]


def error_info_any(reason: str, metadata: Mapping[str, str] | None = None) -> any_pb2.Any:
    """An ErrorInfo{reason, domain=modelfleet.io, metadata} packed for a google.rpc.Status's details.

    Metadata keys and values are clipped (echo.py): they often repeat client fields.
    """
    packed = any_pb2.Any()
    packed.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN, metadata=clip_metadata(metadata or {})))
    return packed


def error_status_trailer(
    code: grpc.StatusCode,
    message: str,
    *,
    reason: str,
    metadata: Mapping[str, str] | None = None,
) -> Trailer:
    """Trailing metadata for `context.abort(code, message, trailing_metadata=...)`.

    The google.rpc.Status repeats `code` and `message` because clients (grpcio-status's
    `rpc_status.from_call` among them) refuse a details trailer whose code disagrees with the call's.
    The message is clipped to echo.MESSAGE_LIMIT; pass the same clipped text to `context.abort`.
    """
    detail = error_info_any(reason, metadata)
    status = status_pb2.Status(code=code.value[0], message=clip(message, MESSAGE_LIMIT), details=[detail])
    return ((STATUS_DETAILS_KEY, status.SerializeToString()),)


def error_info_from_trailer(
    trailing_metadata: Iterable[tuple[str, str | bytes]] | None,
) -> error_details_pb2.ErrorInfo | None:
    """The first ErrorInfo in a call's trailing metadata, or None (for clients and tests)."""
    for key, value in trailing_metadata or ():
        if key != STATUS_DETAILS_KEY or not isinstance(value, bytes):
            continue
        status = status_pb2.Status.FromString(value)
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                return info
    return None
