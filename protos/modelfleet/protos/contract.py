"""The operator ↔ server contract beyond the .proto files: error reasons, names, desired state.

The server raises these reasons (errors.py re-exports Reason) and reads the desired-state document;
the operator decides retries from RETRY_CLASS and writes the document. Both import this module and
never each other (import-linter). Pure Python on purpose: no grpc or protobuf import, so the server's
transport-free domain may use it. tests/contract/ fails when either side drifts from it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType
from typing import Literal, NotRequired, TypedDict, get_args

# Errors -----------------------------------------------------------------------------------------

ERROR_DOMAIN = "modelfleet.io"
"""google.rpc.ErrorInfo.domain of every reason below."""
STATUS_DETAILS_KEY = "grpc-status-details-bin"
"""The trailer that carries the google.rpc.Status with the ErrorInfo."""
POD_UID_METADATA = "modelfleet-pod-uid"
"""Initial metadata of grpc.health.v1 Check: the server's --pod-uid, asked before any token is sent."""


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


class RetryClass(enum.Enum):
    """What a client does after a call failed with a reason."""

    PERMANENT = "permanent"
    """Retrying the same request cannot help: reported, not retried until the spec (or pod) changes."""
    TRANSIENT = "transient"
    """Retried within the call with backoff, then by the next pass."""
    STALE = "stale"
    """The pod's state moved under the client (restart, another writer): observe again, report nothing."""
    LATER = "later"
    """Not retried within the call; a later pass tries again after a backoff (the spec may fit then)."""


_R, _C = Reason, RetryClass
RETRY_CLASS: Mapping[Reason, RetryClass] = MappingProxyType(
    {
        _R.SOURCE_NOT_ALLOWED: _C.PERMANENT,
        _R.SOURCE_NOT_FOUND: _C.PERMANENT,
        _R.MODEL_FILE_EXISTS: _C.PERMANENT,
        _R.CHECKSUM_MISMATCH: _C.PERMANENT,
        _R.PATH_ESCAPE: _C.PERMANENT,
        _R.UNSUPPORTED_FORMAT: _C.PERMANENT,
        _R.HANDLER_NOT_ALLOWED: _C.PERMANENT,
        _R.LOAD_FAILED: _C.PERMANENT,
        _R.VERSION_MISMATCH: _C.PERMANENT,
        _R.MESSAGE_TOO_LARGE: _C.PERMANENT,
        _R.BAD_INPUT: _C.PERMANENT,
        _R.INVALID_NAME: _C.PERMANENT,
        _R.MISSING_FIELD: _C.PERMANENT,
        _R.MODEL_API_DISABLED: _C.PERMANENT,
        _R.SOURCE_FETCH_FAILED: _C.TRANSIENT,
        _R.LOAD_TIMEOUT: _C.TRANSIENT,
        _R.QUEUE_FULL: _C.TRANSIENT,
        _R.NO_WORKERS: _C.TRANSIENT,
        _R.RESPONSE_TIMEOUT: _C.TRANSIENT,
        _R.DEADLINE_PASSED: _C.TRANSIENT,
        _R.SHUTTING_DOWN: _C.TRANSIENT,
        _R.INTERNAL: _C.TRANSIENT,
        _R.TOKEN_INVALID: _C.TRANSIENT,  # the token file is re-read on change: a rotation settles
        _R.MODEL_NOT_FOUND: _C.STALE,
        _R.VERSION_NOT_FOUND: _C.STALE,
        _R.DEFAULT_VERSION_IN_USE: _C.STALE,
        _R.ALREADY_EXISTS: _C.STALE,
        _R.LIMIT_EXCEEDED: _C.LATER,
    }
)
"""Every reason's retry class; tests/contract checks that none is missing."""


def reasons_of(retry_class: RetryClass) -> frozenset[str]:
    """The wire strings of the reasons in one retry class (what a client compares ErrorInfo.reason to)."""
    return frozenset(reason.value for reason, found in RETRY_CLASS.items() if found is retry_class)


# Names ------------------------------------------------------------------------------------------

MAX_NAME_LENGTH = 63
MAX_VERSION_LENGTH = 63
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
"""Model names: a letter or digit, then letters, digits, `_`, `.` or `-`; at most 63 characters."""
VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,62}$"
"""Version strings: as names, plus `+` (e.g. 1.0+cu121); at most 63 characters. `all` is reserved."""
RESERVED_VERSIONS = frozenset({"all"})


# Desired-state document (the operator's ConfigMap, the server's --desired-state file) ----------


class DesiredVersionEntry(TypedDict):
    url: str
    version: NotRequired[str]
    """Checked against what the source holds; absent: the manifest's, else the `#version=` fragment's."""


class SignatureTensorEntry(TypedDict):
    """One tensor of a declared signature (Open Inference Protocol metadata)."""

    name: str
    datatype: str
    """An OIP datatype: BOOL, UINT8..UINT64, INT8..INT64, FP16, FP32, FP64, BF16 or BYTES."""
    shape: list[int]
    """-1 for a dimension of any size."""


class SignatureEntry(TypedDict):
    inputs: list[SignatureTensorEntry]
    outputs: list[SignatureTensorEntry]


class DesiredModelEntry(TypedDict):
    """One model; the per-model fields are non-negative integers (0: the server's default)."""

    name: str
    versions: list[DesiredVersionEntry]
    defaultVersion: NotRequired[str]
    minWorkers: NotRequired[int]
    maxWorkers: NotRequired[int]
    batchSize: NotRequired[int]
    maxBatchDelayMs: NotRequired[int]
    responseTimeoutS: NotRequired[int]
    handler: NotRequired[str]
    signature: NotRequired[SignatureEntry]
    """Declared tensors, reported by the Open Inference ModelMetadata RPC when the model file cannot
    say (a .pt2 program's own specs win); a malformed one refuses the document."""


class DesiredStateDocument(TypedDict):
    models: list[DesiredModelEntry]


DesiredIntField = Literal["minWorkers", "maxWorkers", "batchSize", "maxBatchDelayMs", "responseTimeoutS"]
"""The integer keys of DesiredModelEntry (the server's parser takes its keys from this type)."""
DESIRED_INT_FIELDS: tuple[DesiredIntField, ...] = get_args(DesiredIntField)
