"""Checks of model names and version strings against the one pattern (modelfleet.protos.contract).

The server rejects anything else with INVALID_ARGUMENT; the operator's CRD mirrors these
patterns, so a name that passes `kubectl apply` also registers. `/` is excluded because health
service names are "<model>/<version>". Patterns are applied with fullmatch: with re.match, `$`
also matches before a final newline, so "name\n" passed. Client strings echoed into messages go
through quoted(), so a 2 MB name never becomes a 2 MB error.
"""

from __future__ import annotations

import re

# The patterns are the wire contract's: the operator's spec and CRD check the same ones.
from modelfleet.protos.contract import MAX_NAME_LENGTH as MAX_NAME_LENGTH
from modelfleet.protos.contract import MAX_VERSION_LENGTH as MAX_VERSION_LENGTH
from modelfleet.protos.contract import NAME_PATTERN as NAME_PATTERN
from modelfleet.protos.contract import RESERVED_VERSIONS as RESERVED_VERSIONS
from modelfleet.protos.contract import VERSION_PATTERN as VERSION_PATTERN

from .echo import quoted
from .errors import ErrorKind, ModelFleetError, Reason

DEFAULT_VERSION = "1.0"
"""Version used when neither a manifest nor a `#version=` fragment gives one (TorchServe's rule)."""

_NAME = re.compile(NAME_PATTERN)
_VERSION = re.compile(VERSION_PATTERN)


def check_model_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ModelFleetError(
            ErrorKind.INVALID_ARGUMENT,
            Reason.INVALID_NAME,
            f"invalid model name {quoted(name)}: must match {NAME_PATTERN}",
            metadata={"field": "model_name"},
        )
    return name


def check_version(version: str) -> str:
    if not _VERSION.fullmatch(version) or version in RESERVED_VERSIONS:
        raise ModelFleetError(
            ErrorKind.INVALID_ARGUMENT,
            Reason.INVALID_NAME,
            f"invalid model version {quoted(version)}: must match {VERSION_PATTERN} and not be 'all'",
            metadata={"field": "model_version"},
        )
    return version


def check_lookup(name: str, version: str | None = None) -> None:
    """Refuse a name or version no registration could have made, before any lookup echoes it.

    Only the length is checked: a short name that breaks the pattern is still just "not found",
    as before; a long one (2 MB on a Predictions call) is bad input and is answered at once.
    """
    if len(name) > MAX_NAME_LENGTH:
        raise ModelFleetError(
            ErrorKind.INVALID_ARGUMENT,
            Reason.INVALID_NAME,
            f"model name {quoted(name)} is longer than {MAX_NAME_LENGTH} characters",
            metadata={"field": "model_name"},
        )
    if version is not None and len(version) > MAX_VERSION_LENGTH:
        raise ModelFleetError(
            ErrorKind.INVALID_ARGUMENT,
            Reason.INVALID_NAME,
            f"model version {quoted(version)} is longer than {MAX_VERSION_LENGTH} characters",
            metadata={"field": "model_version"},
        )
