"""The three ways to turn an eager model into a file ModelFleet loads: torch.export, TorchScript script, trace.

Called by the pipeline, one method at a time (it tries the next when one fails or does not verify).
torch.export gives a `.pt2` with a dynamic batch dimension (for text_classifier's bag of tokens, a
dynamic text length); scripting and tracing give a TorchScript `.pt`. Each raises MethodFailed with a
one-line reason a person can act on; warnings (tracer notices) are collected into the result, not printed.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .examples import Examples
from .outputs import SelectOutput

EXPORT, SCRIPT, TRACE = "export", "script", "trace"
ORDER = (EXPORT, SCRIPT, TRACE)
FILE_NAMES = {EXPORT: "model.pt2", SCRIPT: "model.pt", TRACE: "model.pt"}
TITLES = {EXPORT: "torch.export", SCRIPT: "TorchScript (script)", TRACE: "TorchScript (trace)"}


class MethodFailed(Exception):
    """This method could not convert the model; str() is the reason, one line."""


@dataclass(frozen=True)
class Built:
    """A converted model file and what is worth telling about how it was made."""

    method: str
    path: Path
    detail: str
    """E.g. `dynamic batch 1..1024`."""
    notes: tuple[str, ...] = ()
    """Warnings raised while converting (e.g. the tracer's), deduplicated."""


def build(
    method: str,
    model: nn.Module,
    examples: Examples,
    *,
    select: tuple[str | int, ...] | None,
    work_dir: Path,
    max_batch: int,
    seed: int,
) -> Built:
    path = work_dir / method / FILE_NAMES[method]
    path.parent.mkdir(parents=True, exist_ok=True)
    target: nn.Module = SelectOutput(model, select) if select else model
    args = examples.make(examples.export_size, seed=seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if method == EXPORT:
                detail = _export(target, args, examples, path, max_batch=max_batch)
            elif method == SCRIPT:
                if select:
                    raise MethodFailed(
                        "--select-output needs torch.export or tracing (a scripted wrapper would need types)"
                    )
                scripted: Any = torch.jit.script(model)
                scripted.save(str(path))
                detail = "every method compiled from the model's source"
            else:
                jit_trace: Callable[..., Any] = torch.jit.trace  # untyped in torch's stubs
                traced = jit_trace(target, args, strict=False, check_trace=False)
                traced.save(str(path))
                detail = f"recorded on one example ({examples.varying} {examples.export_size}); control flow is frozen"
        except MethodFailed:
            raise
        except Exception as exc:
            raise MethodFailed(reason(exc)) from None
    notes = tuple(dict.fromkeys(_note(w) for w in caught if _worth_noting(w)))
    return Built(method=method, path=path, detail=detail, notes=notes)


def _export(
    target: nn.Module, args: tuple[torch.Tensor, ...], examples: Examples, path: Path, *, max_batch: int
) -> str:
    first: dict[int, Any]
    if examples.layout == "batch":
        first = {0: torch.export.Dim("batch", min=1, max=max_batch)}
        detail = f"dynamic batch 1..{max_batch}"
        if examples.any_image_size:
            rank = len(examples.sample_shape)
            first[rank - 1], first[rank] = torch.export.Dim("height", min=2), torch.export.Dim("width", min=2)
            detail += ", dynamic image height and width"
    else:
        first = {0: torch.export.Dim("length", min=1)}
        detail = "dynamic text length"
    shapes: tuple[Any, ...] = (first,) + (None,) * (len(args) - 1)
    if isinstance(target, SelectOutput):
        shapes = (shapes,)  # its forward(*args) takes the inputs as one tuple
    program = torch.export.export(target, args, dynamic_shapes=shapes, strict=False)
    torch.export.save(program, str(path))
    return detail


def load_back(built: Built) -> Callable[..., Any]:
    """The converted model read back from its file, as the server will read it (after its own vetting)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if built.method == EXPORT:
            module: Callable[..., Any] = torch.export.load(str(built.path)).module()
            return module
        jit_load: Callable[..., Any] = torch.jit.load  # untyped in torch's stubs
        loaded: Callable[..., Any] = jit_load(str(built.path), map_location="cpu")
        return loaded


def reason(exc: BaseException) -> str:
    """The first two informative lines of an exception, clipped: export errors run to pages."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()][:2]
    text = f"{type(exc).__name__}: {' '.join(lines)}"
    return text if len(text) <= 300 else text[:297] + "..."


def _worth_noting(caught: warnings.WarningMessage) -> bool:
    # torch 2.13 deprecates torch.jit.*; that is not about this model.
    return not (issubclass(caught.category, DeprecationWarning) or issubclass(caught.category, FutureWarning))


def _note(caught: warnings.WarningMessage) -> str:
    text = str(caught.message).strip().splitlines()[0] if str(caught.message).strip() else caught.category.__name__
    return text if len(text) <= 200 else text[:197] + "..."
