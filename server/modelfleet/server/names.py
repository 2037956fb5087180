"""The one pattern for model names and version strings.

The server rejects anything else with INVALID_ARGUMENT; the operator's CRD mirrors these
patterns, so a name that passes `kubectl apply` also registers. `/` is excluded because health
service names are "<model>/<version>".
"""

from __future__ import annotations

import re

from .errors import ErrorKind, ModelFleetError, Reason

MAX_NAME_LENGTH = 63
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$"
"""Model names: a letter or digit, then letters, digits, `_`, `.` or `-`; at most 63 characters."""

VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,62}$"
"""Version strings: as names, plus `+` (e.g. 1.0+cu121); at most 63 characters. `all` is reserved."""

RESERVED_VERSIONS = frozenset({"all"})
DEFAULT_VERSION = "1.0"
"""Version used when neither a manifest nor a `#version=` fragment gives one (TorchServe's rule)."""

_NAME = re.compile(NAME_PATTERN)
_VERSION = re.compile(VERSION_PATTERN)


def check_model_name(name: str) -> str:
    if not _NAME.match(name):
        raise ModelFleetError(
            ErrorKind.INVALID_ARGUMENT,
            Reason.INVALID_NAME,
            f"invalid model name {name!r}: must match {NAME_PATTERN}",
            metadata={"field": "model_name"},
        )
    return name


def check_version(version: str) -> str:
    if not _VERSION.match(version) or version in RESERVED_VERSIONS:
        raise ModelFleetError(
            ErrorKind.INVALID_ARGUMENT,
            Reason.INVALID_NAME,
            f"invalid model version {version!r}: must match {VERSION_PATTERN} and not be 'all'",
            metadata={"field": "model_version"},
        )
    return version
