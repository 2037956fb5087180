"""The contract a hooks module implements, and the one place a trusted handler module is imported.

A hooks module is an ordinary Python module: a trusted handler installed in the server image and
named in the server's settings (`--trusted-handlers my_pkg.my_handler`), or a built-in listed in
handlers/__init__.py's table. A model selects it by name (manifest `handler` or RegisterModel
`handler`). Trusted modules are imported with importlib only when listed; nothing is ever imported
from a model archive or folder. Every attribute is optional (docs/handlers.md has examples):

    build_model() -> torch.nn.Module
        Builds the architecture for `.safetensors` weights; the server then calls
        load_state_dict(weights, strict=True) and eval(). Not used for .pt / .pt2 models.
    initialize(context: ModelContext) -> object | None
        Called once per model version at load, on the loading thread, with the model and its
        archive's extra files (`context.files.read("index_to_name.json")`) and manifest. If it
        returns an object, that object's attributes (the hooks below) replace the module's for this
        version: the way to keep per-model data such as labels without module-level state.
    preprocess(inputs: Mapping[str, bytes]) -> torch.Tensor
        One request's input entries (e.g. {"data": b"..."}) to a tensor whose first dimension counts
        that request's samples. Raise ValueError (or a ModelFleetError) for bad input: only that
        request fails. Default: the built-in decoding (JSON, safetensors, raw dtype/shape).
    postprocess(output: torch.Tensor) -> bytes
        One request's model output to its response bytes: its rows of the batch output (first
        dimension = its samples), or, with the built-in decoding and a one-sample request, that
        sample's output without the batch dimension. Default: the built-in encoding.
    SAMPLE_NDIM: int
        Dimensions of one sample for the built-in decoding (e.g. 3 for CHW images), instead of
        learning it from the first request.
    handle(call: Call) -> bytes | Iterable[bytes]
        Full control of one request instead of preprocess/forward/postprocess (call.model is the
        model on this worker's device). Yield several responses to stream them on
        StreamPredictions/StreamPredictions2, the last one final (TorchServe's
        send_intermediate_predict_response); Predictions answers with the last one.
    STATEFUL: bool
        True: StreamPredictions2 sequences keep state in `call.sequence.state`, every request of a
        sequence runs on the same worker, in order (TorchServe's sequence batching).
    end_sequence(sequence: SequenceContext) -> None
        A sequence was released (`sequence.released` says why); free what its state holds.

With preprocess/postprocess, requests whose tensors share trailing shape and dtype are concatenated
and run in one forward pass under torch.inference_mode(), as with the built-in `default` handler.
Hooks run on worker threads, possibly at the same time: keep them free of shared mutable state.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from types import ModuleType
from typing import Any

from ...errors import ErrorKind, ModelFleetError, Reason
from ..contracts import Call, ModelContext, SequenceContext

_CALLABLES = ("build_model", "initialize", "preprocess", "postprocess", "handle", "end_sequence")


@dataclass(frozen=True)
class TrustedHooks:
    """What a hooks module provides (None where it relies on the built-in behaviour)."""

    module_name: str
    build_model: Callable[[], Any] | None = None
    preprocess: Callable[[Mapping[str, bytes]], Any] | None = None
    postprocess: Callable[[Any], bytes] | None = None
    sample_ndim: int | None = None
    initialize: Callable[[ModelContext], object] | None = None
    handle: Callable[[Call], bytes | Iterable[bytes]] | None = None
    end_sequence: Callable[[SequenceContext], None] | None = None
    stateful: bool = False

    def bound(self, context: ModelContext) -> TrustedHooks:
        """These hooks for one model version: initialize(context)'s object overrides the module's."""
        if self.initialize is None:
            return self
        try:
            instance = self.initialize(context)
        except ModelFleetError:
            raise
        except Exception as exc:
            raise _bad_module(self.module_name, f"initialize failed: {type(exc).__name__}: {exc}") from None
        if instance is None:
            return self
        found = read_hooks(instance, self.module_name)
        overrides = {
            name: value
            for name in ("preprocess", "postprocess", "handle", "end_sequence", "sample_ndim")
            if (value := getattr(found, name)) is not None
        }
        if hasattr(instance, "STATEFUL"):
            overrides["stateful"] = found.stateful
        return replace(self, **overrides)


def import_trusted(module_name: str) -> TrustedHooks:
    """Import a handler module the caller has already checked is in the trusted list."""
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # an ImportError or whatever the module raised at import
        raise ModelFleetError(
            ErrorKind.INTERNAL,
            Reason.LOAD_FAILED,
            f"trusted handler module {module_name!r} could not be imported: {type(exc).__name__}: {exc}",
        ) from None
    return read_hooks(module, module_name)


def read_hooks(source: ModuleType | object, module_name: str) -> TrustedHooks:
    """The hooks `source` (a module, or the object initialize() returned) defines, type-checked."""
    hooks: dict[str, Any] = {}
    for attr in _CALLABLES:
        value = getattr(source, attr, None)
        if value is not None and not callable(value):
            raise _bad_module(module_name, f"{attr} is not callable")
        hooks[attr] = value
    sample_ndim = getattr(source, "SAMPLE_NDIM", None)
    if sample_ndim is not None and (
        isinstance(sample_ndim, bool) or not isinstance(sample_ndim, int) or sample_ndim < 0
    ):
        raise _bad_module(module_name, "SAMPLE_NDIM must be a non-negative int")
    stateful = getattr(source, "STATEFUL", False)
    if not isinstance(stateful, bool):
        raise _bad_module(module_name, "STATEFUL must be True or False")
    if stateful and hooks["handle"] is None and hooks["initialize"] is None:
        raise _bad_module(module_name, "STATEFUL handlers need handle(call) to reach call.sequence.state")
    return TrustedHooks(module_name=module_name, sample_ndim=sample_ndim, stateful=stateful, **hooks)


def _bad_module(module_name: str, why: str) -> ModelFleetError:
    return ModelFleetError(ErrorKind.INTERNAL, Reason.LOAD_FAILED, f"trusted handler module {module_name!r}: {why}")
