"""Turn a pickled vocabulary (text_classifier's `source_vocab.pt`) into JSON the server can read safely.

Called by the pipeline, in the user's environment. The file is read with torch's restricted
loader (`weights_only=True`); a plain dict or list of tokens needs nothing more. A torchtext Vocab
is a Python object, so its classes (and only classes from the `torchtext` package, checked by
name before anything is loaded) are allowed for that one load: a pickle that names anything else
is refused, even in the user's environment. A torchtext Vocab needs torchtext importable here. The JSON written is
`{"stoi": {token: index, ...}, "default_index": int | null}` (default_index: the index of unknown
tokens, null when the vocabulary had none and unknown tokens were an error).
"""

from __future__ import annotations

import importlib
import json
import pickle
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch

from .errors import ConvertError

VOCAB_PACKAGES = ("torchtext",)
"""Packages whose classes a pickled vocabulary may name."""
PICKLED_VOCAB = "source_vocab.pt"
JSON_VOCAB = "source_vocab.json"


def vocab_to_json(path: Path) -> dict[str, Any]:
    try:
        vocab = _load(path)
    except ConvertError:
        raise
    except ModuleNotFoundError as exc:
        raise ConvertError(
            f"{path.name}: reading it needs the module {exc.name!r}, which pickled it (a torchtext Vocab needs "
            "torchtext, whose last release needs an older torch); run the converter where it is installed"
        ) from None
    except Exception as exc:
        raise ConvertError(f"{path.name}: cannot be read as a vocabulary ({type(exc).__name__}: {exc})") from None
    stoi, default = _stoi(vocab)
    if stoi is None:
        raise ConvertError(
            f"{path.name}: holds {type(vocab).__name__}, which is not a vocabulary this converter knows "
            "(a torchtext Vocab with get_stoi()/get_default_index() or stoi, a dict of token -> index, "
            "or a list of tokens)"
        )
    bad = [token for token, index in stoi.items() if not isinstance(token, str) or not _is_index(index)]
    if bad:
        raise ConvertError(f"{path.name}: entries that are not token -> index, e.g. {bad[0]!r}")
    return {"stoi": {token: int(index) for token, index in stoi.items()}, "default_index": default}


def _load(path: Path) -> Any:
    """torch.load with weights_only=True, allowing only the vocabulary package's classes the file names."""
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        pass  # it names Python classes: see which, before any of them is imported or run
    names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    foreign = sorted(name for name in names if name.split(".", 1)[0] not in VOCAB_PACKAGES)
    if foreign:
        raise ConvertError(
            f"{path.name}: the pickle names {', '.join(foreign[:3])}, which is not a vocabulary class of "
            f"{', '.join(VOCAB_PACKAGES)}; refused (save the vocabulary as a dict of token -> index instead)"
        )
    classes = [getattr(importlib.import_module(module), attr) for module, _, attr in (n.rpartition(".") for n in names)]
    with torch.serialization.safe_globals(classes):
        return torch.load(str(path), map_location="cpu", weights_only=True)


def to_bytes(vocab: dict[str, Any]) -> bytes:
    return json.dumps(vocab, ensure_ascii=False).encode("utf-8")


def size(vocab: dict[str, Any]) -> int:
    """The number of ids the model's embedding must accept: the largest index + 1."""
    indices = list(vocab["stoi"].values())
    return max(indices) + 1 if indices else 0


def _stoi(vocab: Any) -> tuple[dict[Any, Any] | None, int | None]:
    if callable(getattr(vocab, "get_stoi", None)):  # torchtext >= 0.12 Vocab
        default = None
        getter = getattr(vocab, "get_default_index", None)
        if callable(getter):
            try:
                found = getter()
            except Exception:  # torchtext raises when no default is set
                found = None
            default = int(found) if _is_index(found) else None
        return dict(vocab.get_stoi()), default
    stoi = getattr(vocab, "stoi", None)
    if isinstance(stoi, dict):  # legacy torchtext Vocab: a defaultdict to unk_index
        unk = getattr(vocab, "unk_index", None)
        if not _is_index(unk) and isinstance(stoi, defaultdict) and stoi.default_factory is not None:
            unk = stoi.default_factory()
        return dict(stoi), unk if isinstance(unk, int) and _is_index(unk) else None
    if isinstance(vocab, dict):
        return dict(vocab), None
    if isinstance(vocab, (list, tuple)):
        return {token: index for index, token in enumerate(vocab)}, None
    return None, None


def _is_index(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
