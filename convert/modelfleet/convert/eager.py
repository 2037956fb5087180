"""Build the archive's eager model the way TorchServe's base handler does, in this (the user's) process.

Called by the pipeline. This RUNS THE ARCHIVE'S CODE: it imports model.py (with the archive folder on
sys.path, as TorchServe does, so sibling modules resolve) and instantiates its nn.Module class with no
arguments, then loads the serialized weights into it. Weights are read with torch.load(weights_only=True)
or safetensors, so the weights file itself cannot run code; model.py can, which is why this is only for
archives the user trusts, and never inside the server.
"""

from __future__ import annotations

import contextlib
import importlib.util
import inspect
import itertools
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import ConvertError
from .torchserve_archive import TorchServeArchive

_loaded = itertools.count()


@dataclass(frozen=True)
class EagerModel:
    """The model in eval mode and what it was built from, for the report."""

    module: nn.Module
    model_file: str
    class_name: str
    weights: str
    """What was loaded into it, e.g. `model.pth (state dict, 62 tensors)`, or that nothing was."""


def build(archive: TorchServeArchive, *, model_file: str | None, model_class: str | None) -> EagerModel:
    path, shown = _model_file(archive, model_file)
    with _on_path(archive.root, path.parent):
        module = _import(path)
        cls = _model_class(module, shown, wanted=model_class)
        try:
            model = cls()
        except Exception as exc:
            raise ConvertError(
                f"{shown}: {cls.__name__}() failed ({type(exc).__name__}: {exc}); TorchServe builds the model "
                "class with no arguments, so its defaults must describe the trained model"
            ) from None
        weights = _load_weights(archive, model)
    model.eval()
    return EagerModel(module=model, model_file=shown, class_name=cls.__name__, weights=weights)


def _model_file(archive: TorchServeArchive, override: str | None) -> tuple[Path, str]:
    if override is not None:
        given = Path(override)
        if given.is_file():
            return given.resolve(), given.name
        return archive.member(override), override
    if archive.model_file is None:
        raise ConvertError(
            f"{archive.origin}: the manifest names no modelFile, so the archive's handler builds the model "
            f"itself ({archive.handler or 'no handler'}). Write a Python file whose one nn.Module class builds "
            "the model with no arguments (load_state_dict is then called with the serializedFile) and pass it "
            "with --model-file"
        )
    return archive.member(archive.model_file), archive.model_file


@contextlib.contextmanager
def _on_path(*folders: Path) -> Iterator[None]:
    """The archive folder first on sys.path while the model is imported, built and loaded."""
    added = [str(folder) for folder in dict.fromkeys(folders)]
    sys.path[:0] = added
    try:
        yield
    finally:
        for entry in added:
            with contextlib.suppress(ValueError):
                sys.path.remove(entry)


def _import(path: Path) -> Any:
    # A fresh module name per conversion: two archives' model.py never share a module object.
    name = f"modelfleet_convert_model_{next(_loaded)}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConvertError(f"{path.name}: not an importable Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses, TorchScript and pickling look classes up here
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise ConvertError(
            f"{path.name}: importing it failed ({type(exc).__name__}: {exc}); install what it imports in this "
            "environment (the archive's requirements.txt, if any, lists it)"
        ) from None
    return module


def _model_class(module: Any, shown: str, *, wanted: str | None) -> type[nn.Module]:
    classes = {
        name: value
        for name, value in vars(module).items()
        if inspect.isclass(value) and value.__module__ == module.__name__ and issubclass(value, nn.Module)
    }
    if wanted is not None:
        if wanted not in classes:
            raise ConvertError(
                f"{shown}: --model-class {wanted!r} is not one of its nn.Module classes {sorted(classes)}"
            )
        return classes[wanted]
    if len(classes) != 1:
        raise ConvertError(
            f"{shown}: defines {len(classes)} nn.Module classes {sorted(classes)}; TorchServe needs exactly one. "
            "Name the model with --model-class"
        )
    return next(iter(classes.values()))


def _load_weights(archive: TorchServeArchive, model: nn.Module) -> str:
    if archive.serialized_file is None:
        return "no serializedFile: the model as its class builds it"
    path = archive.member(archive.serialized_file)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state: Any = load_file(str(path), device="cpu")
        what = "safetensors"
    else:
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ConvertError(
                f"{archive.serialized_file}: not a plain state dict that torch.load(weights_only=True) can read "
                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). TorchServe's eager "
                "archives hold model.state_dict(); re-save the weights with torch.save(model.state_dict(), path)"
            ) from None
        what = "state dict"
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConvertError(
            f"{archive.serialized_file}: holds {type(state).__name__}, not a dict of tensors (a state dict)"
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ConvertError(f"{archive.serialized_file}: does not fit the model class: {exc}") from None
    return f"{archive.serialized_file} ({what}, {len(state)} tensors)"
