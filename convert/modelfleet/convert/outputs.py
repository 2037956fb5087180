"""A model's output as named tensors (for comparison), and keeping one tensor of it (--select-output).

Used by verify.py and exporting.py. Names are positions and keys (`0.boxes`, `out`): tuples and named
tuples are named by position, because TorchScript returns a named tuple's fields as a plain tuple.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """(name, leaf) pairs in order; leaves are tensors, or plain values compared as they are."""
    if isinstance(value, dict):
        pairs: list[tuple[str, Any]] = []
        for key in value:
            pairs += flatten(value[key], f"{prefix}{key}.")
        return pairs
    if isinstance(value, (list, tuple)):
        pairs = []
        for index, item in enumerate(value):
            pairs += flatten(item, f"{prefix}{index}.")
        return pairs
    return [(prefix.rstrip(".") or "output", value)]


def parse_path(text: str) -> tuple[str | int, ...]:
    """`out` -> ("out",); `0.boxes` -> (0, "boxes"); `logits` -> ("logits",)."""
    return tuple(int(part) if part.isdigit() else part for part in text.split(".") if part)


def select(value: Any, path: tuple[str | int, ...]) -> Any:
    for step in path:
        if isinstance(step, int) and isinstance(value, (list, tuple)) and step < len(value):
            value = value[step]
        elif isinstance(value, dict) and str(step) in value:
            value = value[str(step)]
        elif isinstance(step, str) and hasattr(value, step):  # e.g. a ModelOutput's .logits
            value = getattr(value, step)
        else:
            raise KeyError(step)
    return value


class SelectOutput(nn.Module):
    """The wrapped model's output reduced to one part of it (export and trace only: it is plain Python)."""

    def __init__(self, model: nn.Module, path: tuple[str | int, ...]) -> None:
        super().__init__()
        self.model = model
        self.path = path

    def forward(self, *args: torch.Tensor) -> Any:
        return select(self.model(*args), self.path)
