"""Class labels and answers in TorchServe's forms, shared by the standard handlers.

Reads an archive's `index_to_name.json` the way TorchServe 0.12's base handler does (plain
`{"0": "tench"}`, `{"0": ["n01440764", "tench"]}` keeping the last item, or
`{"object_type_names": [...]}`) and labels scores as its map_class_to_label does, so clients that parse
TorchServe's answers read ours unchanged. JSON only: no pickles.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from ...errors import ErrorKind, ModelFleetError, Reason

INDEX_TO_NAME = "index_to_name.json"
"""The file TorchServe's handlers read class names from, at the top of the model archive."""
MAX_LABEL_FILE_BYTES = 16 * 1024 * 1024
"""ImageNet's mapping is about 40 KB; anything near this is not a label file."""

Labels = Mapping[str, str]


def parse_labels(raw: bytes, *, origin: str = INDEX_TO_NAME) -> Labels:
    """Class index (as a string) -> name; a bad file fails the model load, not each request."""
    try:
        mapping = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _bad_labels(origin, f"it is not JSON ({exc})") from None
    if not isinstance(mapping, dict):
        raise _bad_labels(origin, 'it must be an object {"<class index>": "<label>"}')
    names = mapping.get("object_type_names")
    if isinstance(names, list):  # an older TorchServe example layout
        if not all(isinstance(name, str) for name in names):
            raise _bad_labels(origin, "object_type_names must list strings")
        return {str(index): name for index, name in enumerate(names)}
    labels: dict[str, str] = {}
    for key, value in mapping.items():
        label = value[-1] if isinstance(value, list) and value else value
        if not isinstance(label, str):
            raise _bad_labels(origin, f"the label of {key!r} is neither a string nor a list ending in one")
        labels[key] = label
    return labels


def label_of(index: int, labels: Labels | None) -> str:
    """The class's name; its index as text without a mapping or when the mapping lacks it.

    TorchServe raises KeyError (an HTTP 500) for an index missing from the mapping; answering the
    index instead keeps the model useful when index_to_name.json covers fewer classes than it has.
    """
    key = str(index)
    if labels is None:
        return key
    return labels.get(key, key)


def scores_by_label(indices: Iterable[int], scores: Iterable[float], labels: Labels | None) -> dict[str, float]:
    """TorchServe's map_class_to_label for one row: {label: score} in the given order (equal labels merge)."""
    return {label_of(index, labels): score for index, score in zip(indices, scores)}


def _bad_labels(origin: str, why: str) -> ModelFleetError:
    return ModelFleetError(ErrorKind.INVALID_ARGUMENT, Reason.LOAD_FAILED, f"{origin}: {why}")
