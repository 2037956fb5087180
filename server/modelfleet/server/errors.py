"""Domain errors of the server: a neutral kind plus a stable machine-readable reason.

Raised by the domain (models/) and mapped to gRPC status codes in exactly one place,
rpc/status.py. No grpc import here: the domain must stay transport-free.
"""

from __future__ import annotations

import enum


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


class Reason(enum.Enum):
    """Stable reasons clients (the operator first) decide on; sent as google.rpc.ErrorInfo.reason."""

    MODEL_NOT_FOUND = "MODEL_NOT_FOUND"
    VERSION_NOT_FOUND = "VERSION_NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    MODEL_FILE_EXISTS = "MODEL_FILE_EXISTS"
    """A URL's file name is already taken in the model store (TorchServe would have copied it there)."""
    SOURCE_NOT_ALLOWED = "SOURCE_NOT_ALLOWED"
    SOURCE_NOT_FOUND = "SOURCE_NOT_FOUND"
    SOURCE_FETCH_FAILED = "SOURCE_FETCH_FAILED"
    CHECKSUM_MISMATCH = "CHECKSUM_MISMATCH"
    PATH_ESCAPE = "PATH_ESCAPE"
    UNSUPPORTED_FORMAT = "UNSUPPORTED_FORMAT"
    HANDLER_NOT_ALLOWED = "HANDLER_NOT_ALLOWED"
    LOAD_FAILED = "LOAD_FAILED"
    VERSION_MISMATCH = "VERSION_MISMATCH"
    LOAD_TIMEOUT = "LOAD_TIMEOUT"
    MESSAGE_TOO_LARGE = "MESSAGE_TOO_LARGE"
    BAD_INPUT = "BAD_INPUT"
    INVALID_NAME = "INVALID_NAME"
    MISSING_FIELD = "MISSING_FIELD"
    DEFAULT_VERSION_IN_USE = "DEFAULT_VERSION_IN_USE"
    MODEL_API_DISABLED = "MODEL_API_DISABLED"
    TOKEN_INVALID = "TOKEN_INVALID"
    QUEUE_FULL = "QUEUE_FULL"
    NO_WORKERS = "NO_WORKERS"
    RESPONSE_TIMEOUT = "RESPONSE_TIMEOUT"
    DEADLINE_PASSED = "DEADLINE_PASSED"
    SHUTTING_DOWN = "SHUTTING_DOWN"
    LIMIT_EXCEEDED = "LIMIT_EXCEEDED"
    """A request asks for more than a configured limit (workers, models, versions, batch values)."""
    INTERNAL = "INTERNAL"


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
