"""Domain errors of the server: a neutral kind plus a stable machine-readable reason.

Raised by the domain (models/) and mapped to gRPC status codes in exactly one place,
rpc/status.py. No grpc import here: the domain must stay transport-free.
"""

from __future__ import annotations

import enum

# The reasons are the wire contract's, shared with the operator (which decides retries on them).
from modelfleet.protos.contract import Reason as Reason


class ErrorKind(enum.Enum):
    """What went wrong, independent of any transport's codes."""

    NOT_FOUND = "not_found"
    ALREADY_EXISTS = "already_exists"
    INVALID_ARGUMENT = "invalid_argument"
    FAILED_PRECONDITION = "failed_precondition"
    PERMISSION_DENIED = "permission_denied"
    UNAVAILABLE = "unavailable"
    RESOURCE_EXHAUSTED = "resource_exhausted"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    INTERNAL = "internal"


class ModelFleetError(Exception):
    """An expected failure whose message is safe to show to the client."""

    kind: ErrorKind
    reason: Reason

    def __init__(
        self, kind: ErrorKind, reason: Reason, message: str, *, metadata: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.reason = reason
        self.message = message
        self.metadata = dict(metadata or {})

    def __repr__(self) -> str:
        return f"ModelFleetError({self.kind.name}, {self.reason.value}, {self.message!r})"


def model_not_found(name: str) -> ModelFleetError:
    return ModelFleetError(
        ErrorKind.NOT_FOUND, Reason.MODEL_NOT_FOUND, f"Model not found: {name}", metadata={"model": name}
    )


def version_not_found(name: str, version: str) -> ModelFleetError:
    return ModelFleetError(
        ErrorKind.NOT_FOUND,
        Reason.VERSION_NOT_FOUND,
        f"Model version not found: {name} version {version}",
        metadata={"model": name, "version": version},
    )


def bad_input(message: str) -> ModelFleetError:
    return ModelFleetError(ErrorKind.INVALID_ARGUMENT, Reason.BAD_INPUT, message)


def missing_field(field: str) -> ModelFleetError:
    return ModelFleetError(
        ErrorKind.INVALID_ARGUMENT, Reason.MISSING_FIELD, f"{field} is required", metadata={"field": field}
    )


def load_failed(message: str) -> ModelFleetError:
    return ModelFleetError(ErrorKind.INTERNAL, Reason.LOAD_FAILED, message)
