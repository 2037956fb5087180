"""The contract a trusted handler module implements, and the one place such a module is imported.

A trusted handler is an ordinary Python module installed in the server image and named in the
server's settings (`--trusted-handlers my_pkg.my_handler`); a model selects it with that exact name
as its manifest `handler` or the RegisterModel `handler`. It is imported with importlib only when
listed; nothing is ever imported from a model archive or folder. All attributes are optional,
except build_model for `.safetensors` weights:

    build_model() -> torch.nn.Module
        Builds the architecture for `.safetensors` weights; the server then calls
        load_state_dict(weights, strict=True) and eval(). Not used for .pt / .pt2 models.
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

Requests whose tensors share trailing shape and dtype are concatenated and run in one forward pass
under torch.inference_mode(), as with the built-in `default` handler. The functions run on worker
threads, possibly at the same time: keep them free of shared mutable state.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ...errors import ErrorKind, ModelFleetError, Reason


@dataclass(frozen=True)
class TrustedHooks:
    """What a trusted handler module provides (None where it relies on the built-in behaviour)."""

    module_name: str
    build_model: Callable[[], Any] | None = None
    preprocess: Callable[[Mapping[str, bytes]], Any] | None = None
    postprocess: Callable[[Any], bytes] | None = None
    sample_ndim: int | None = None


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
    hooks: dict[str, Any] = {}
    for attr in ("build_model", "preprocess", "postprocess"):
        value = getattr(module, attr, None)
        if value is not None and not callable(value):
            raise _bad_module(module_name, f"{attr} is not callable")
        hooks[attr] = value
    sample_ndim = getattr(module, "SAMPLE_NDIM", None)
    if sample_ndim is not None and (
        isinstance(sample_ndim, bool) or not isinstance(sample_ndim, int) or sample_ndim < 0
    ):
        raise _bad_module(module_name, "SAMPLE_NDIM must be a non-negative int")
    return TrustedHooks(module_name=module_name, sample_ndim=sample_ndim, **hooks)


def _bad_module(module_name: str, why: str) -> ModelFleetError:
    return ModelFleetError(
        ErrorKind.INTERNAL, Reason.LOAD_FAILED, f"trusted handler module {module_name!r}: {why}"
    )
