"""Which handler names may run, and how each becomes a ModelHandler (contracts.py; docs/handlers.md).

Called by loading.py: check_allowed() while identifying a source (imports nothing), load_handler()
then create the handler with the version's ModelContext. Built-in handlers are the table below;
any other name must be listed in ModelSettings.trusted_handlers and is imported by trusted.py.
Names from a model archive (`handler.py`, `mod:fn`) are refused: archive code never runs.

A table entry is either a *handler module*, which defines `create(context: ModelContext) ->
ModelHandler` (full control, e.g. `generation`'s shared decode loop), or a *hooks module*, which
defines the hooks of trusted.py (preprocess/postprocess/SAMPLE_NDIM/handle/...) exactly as a
trusted handler does; `default` is the hooks module with no hooks. Adding a built-in is one line.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Collection
from dataclasses import dataclass

from ...errors import ErrorKind, ModelFleetError, Reason
from ..contracts import HandlerFactory, ModelContext, ModelHandler, ModelState
from .trusted import TrustedHooks, import_trusted, read_hooks

__all__ = ["BUILTIN_NAMES", "DEFAULT", "GENERATION", "Handler", "ModelState", "check_allowed", "load_handler"]

DEFAULT = "default"
"""Tensors in, tensors out (JSON, safetensors or raw bytes); also what an empty handler name means."""
GENERATION = "generation"
"""Greedy autoregressive decoding, streamed token by token on StreamPredictions."""
STANDARD_HANDLERS = ("image_classifier", "image_segmenter", "object_detector", "text_classifier")
"""TorchServe 0.12's standard handlers, built in under their names (handler modules, see standard.py)."""


@dataclass(frozen=True)
class Builtin:
    """One built-in handler: the module that implements it and how it is read."""

    module: str
    hooks: bool = True
    """True: a hooks module (trusted.py's contract); False: a handler module with create(context)."""


_BUILTINS: dict[str, Builtin] = {
    DEFAULT: Builtin(f"{__name__}.tensor"),  # a hooks module without hooks: the plain tensor pipeline
    GENERATION: Builtin(f"{__name__}.generation", hooks=False),
    **{name: Builtin(f"{__name__}.{name}", hooks=False) for name in STANDARD_HANDLERS},  # TorchServe's, standard.py
}
"""Built-in name -> implementation. A TorchServe-style standard handler is a hooks module:
`"image_classifier": Builtin(f"{__name__}.image_classifier"),`."""
BUILTIN_NAMES = frozenset(_BUILTINS)


@dataclass(frozen=True)
class Handler:
    """A handler name resolved to its implementation, ready to create one ModelHandler per version."""

    name: str
    """Canonical name: a built-in name or a trusted module name."""
    kind: str
    """"builtin" or "trusted"."""
    hooks: TrustedHooks | None = None
    """Set for hooks modules (built in or trusted)."""
    factory: HandlerFactory | None = None
    """Set for handler modules (built in only)."""

    def create(self, context: ModelContext) -> ModelHandler:
        if self.factory is not None:
            return self.factory(context)
        assert self.hooks is not None
        from .hooks import create_hooks_handler  # imports torch: only once a model loads

        return create_hooks_handler(self.hooks, context, kind=self.kind)


def canonical_name(name: str) -> str:
    return name or DEFAULT


def check_allowed(name: str, *, trusted: Collection[str], origin: str) -> str:
    """The canonical name if it may run, else INVALID_ARGUMENT / HANDLER_NOT_ALLOWED. Imports nothing."""
    canonical = canonical_name(name)
    builtin = _BUILTINS.get(canonical)
    if builtin is not None:
        if importlib.util.find_spec(builtin.module) is None:
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
    builtin = _BUILTINS.get(canonical)
    if builtin is None:
        return Handler(name=canonical, kind="trusted", hooks=import_trusted(canonical))
    module = importlib.import_module(builtin.module)
    if builtin.hooks:
        return Handler(name=canonical, kind="builtin", hooks=read_hooks(module, canonical))
    factory: HandlerFactory = module.create
    return Handler(name=canonical, kind="builtin", factory=factory)
