"""Which handler names may run, and how a runner is made for each.

Called by loading.py. Built-in handlers live in this package (`default` = tensor.py; `generation`,
the streaming decoder, is reserved for handlers/generation.py); any other name must be listed in
ModelSettings.trusted_handlers and is imported by trusted.py. Names from a model archive
(`handler.py`, `image_classifier`, `mod:fn`) are refused: archive code never runs.

A built-in handler module provides
`make_runner(module, *, device: str, state: ModelState, hooks: TrustedHooks | None) -> ModelRunner`.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Protocol

from ...errors import ErrorKind, ModelFleetError, Reason
from ...settings import DEFAULT_MAX_MESSAGE_BYTES
from ..contracts import ModelRunner
from .trusted import TrustedHooks, import_trusted

DEFAULT = "default"
"""Tensors in, tensors out (JSON, safetensors or raw bytes); also what an empty handler name means."""
GENERATION = "generation"
"""Greedy autoregressive decoding for StreamPredictions (added by the performance work)."""

_BUILTIN_MODULES = {DEFAULT: f"{__name__}.tensor", GENERATION: f"{__name__}.generation"}
BUILTIN_NAMES = frozenset(_BUILTIN_MODULES)


@dataclass
class ModelState:
    """Shared by all runners of one loaded model version: what a handler knows or learns once."""

    sample_ndim: int | None = None
    """Dimensions of one input sample; from the model (.pt2) or learned from the first request."""
    max_request_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    """The server's request size limit (network.max_receive_message_bytes): bounds the element
    count a tensor's shape may name, empty tensors included."""
    max_response_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    """The server's response size limit (network.max_send_message_bytes): a bigger answer is
    refused (MESSAGE_TOO_LARGE) before it is built."""


class RunnerMaker(Protocol):
    def __call__(
        self, module: Any, *, device: str, state: ModelState, hooks: TrustedHooks | None
    ) -> ModelRunner: ...


@dataclass(frozen=True)
class Handler:
    name: str
    """Canonical name: `default`, `generation` or a trusted module name."""
    make_runner: RunnerMaker
    hooks: TrustedHooks | None = None
    """Set for trusted handlers."""

    @property
    def kind(self) -> str:
        return "builtin" if self.hooks is None else "trusted"


def canonical_name(name: str) -> str:
    return name or DEFAULT


def check_allowed(name: str, *, trusted: Collection[str], origin: str) -> str:
    """The canonical name if it may run, else INVALID_ARGUMENT / HANDLER_NOT_ALLOWED. Imports nothing."""
    canonical = canonical_name(name)
    if canonical in BUILTIN_NAMES:
        if importlib.util.find_spec(_BUILTIN_MODULES[canonical]) is None:
            raise ModelFleetError(
                ErrorKind.INVALID_ARGUMENT,
                Reason.HANDLER_NOT_ALLOWED,
                f"built-in handler {canonical!r} is not available in this server version",
                metadata={"handler": canonical},
            )
        return canonical
    if canonical in trusted:
        return canonical
    raise ModelFleetError(
        ErrorKind.INVALID_ARGUMENT,
        Reason.HANDLER_NOT_ALLOWED,
        f"handler {canonical!r} ({origin}) is not allowed: handler code inside a model archive or folder "
        f"is never executed. Use a built-in handler (set the handler to '{DEFAULT}' for tensors in and "
        "out), or install your handler module in the server image and start the server with "
        "--trusted-handlers <module> (MODELFLEET_TRUSTED_HANDLERS), then name that module as the handler",
        metadata={"handler": canonical},
    )


def load_handler(name: str, *, trusted: Collection[str]) -> Handler:
    """Import the handler's implementation (built in, or a trusted module) once per model load."""
    canonical = check_allowed(name, trusted=trusted, origin="requested")
    if canonical in BUILTIN_NAMES:
        impl = importlib.import_module(_BUILTIN_MODULES[canonical])
        return Handler(name=canonical, make_runner=impl.make_runner)
    hooks = import_trusted(canonical)
    tensor = importlib.import_module(_BUILTIN_MODULES[DEFAULT])
    return Handler(name=canonical, make_runner=tensor.make_runner, hooks=hooks)
