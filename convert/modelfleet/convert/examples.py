"""The example inputs a conversion exports with and verifies on, and where they came from.

Called by the pipeline. Sources, first that applies: --example-input (a file), --example-shape, the
archive (an HF handler's setup_config.json `max_length`, with config.json's `vocab_size`), the
standard handler kind. Inputs are random but seeded, so a run repeats exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from . import handler_kinds
from .errors import ConvertError
from .torchserve_archive import TorchServeArchive

DTYPES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
    "int64": torch.int64,
    "int32": torch.int32,
    "uint8": torch.uint8,
    "bool": torch.bool,
}
DEFAULT_TOKEN_RANGE = 2
"""Token ids are drawn from [0, this) when nothing says the vocabulary size (every vocabulary has 2)."""


@dataclass(frozen=True)
class Examples:
    """How to make inputs of a given size: the varying dimension is the batch ("batch") or the text length ("bag")."""

    layout: str
    """"batch": (x[N, *sample],); "bag": (token_ids[L], offsets[1]) as TorchServe's text_classifier calls it."""
    sample_shape: tuple[int, ...]
    dtype: torch.dtype
    source: str
    """Where the example came from, for the report."""
    token_range: int = DEFAULT_TOKEN_RANGE
    """Integer inputs are drawn from [0, token_range)."""
    sample: torch.Tensor | None = None
    """A given sample (--example-input): row 0 of every batch."""
    any_image_size: bool = False
    """The last two sample dimensions (height, width) are dynamic too."""

    @property
    def varying(self) -> str:
        return "batch" if self.layout == "batch" else "text length"

    @property
    def export_size(self) -> int:
        # 2, not 1: torch.export specialises a dimension whose example size is 0 or 1.
        return 2 if self.layout == "batch" else 8

    @property
    def verify_sizes(self) -> tuple[int, ...]:
        return (1, 2, 3) if self.layout == "batch" else (3, 8, 13)

    def describe(self) -> str:
        dtype = str(self.dtype).removeprefix("torch.")
        if self.layout == "bag":
            return f"token ids int64 [L] in [0, {self.token_range}) + offsets [0], from {self.source}"
        dims = [str(d) for d in self.sample_shape]
        if self.any_image_size:
            dims[-2:] = ["H", "W"]
        return f"{dtype} [N, {', '.join(dims)}], from {self.source}"

    @property
    def other_image_size(self) -> tuple[int, ...] | None:
        """A sample shape besides the example's, verified when the image size is dynamic."""
        if not self.any_image_size:
            return None
        return (*self.sample_shape[:-2], self.sample_shape[-2] * 3 // 4 + 1, self.sample_shape[-1] * 5 // 4 + 3)

    def make(self, size: int, *, seed: int, sample_shape: tuple[int, ...] | None = None) -> tuple[torch.Tensor, ...]:
        generator = torch.Generator().manual_seed(seed * 7919 + size)
        if self.layout == "bag":
            tokens = torch.randint(0, self.token_range, (size,), generator=generator, dtype=torch.int64)
            return tokens, torch.zeros(1, dtype=torch.int64)
        shape = (size, *(sample_shape or self.sample_shape))
        if self.dtype.is_floating_point:
            batch = torch.randn(shape, generator=generator).to(self.dtype)
        elif self.dtype == torch.bool:
            batch = torch.randint(0, 2, shape, generator=generator).to(torch.bool)
        else:
            batch = torch.randint(0, self.token_range, shape, generator=generator).to(self.dtype)
        if self.sample is not None and sample_shape is None:
            batch[0] = self.sample
        return (batch,)


def choose(
    archive: TorchServeArchive,
    *,
    shape: tuple[int, ...] | None,
    dtype: str,
    input_file: Path | None,
    vocab_size: int | None = None,
) -> Examples:
    """The first source that applies; `vocab_size` (from the converted source vocabulary) bounds token ids."""
    if dtype not in DTYPES:
        raise ConvertError(f"--example-dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    if input_file is not None:
        sample = _read_sample(input_file)
        high = int(sample.max().item()) + 1 if not sample.dtype.is_floating_point and sample.numel() else 2
        return Examples(
            "batch",
            tuple(sample.shape),
            sample.dtype,
            f"--example-input {input_file.name}",
            token_range=max(high, 1),
            sample=sample,
        )
    if shape is not None:
        return Examples(
            "batch", shape, DTYPES[dtype], "--example-shape", token_range=vocab_size or _vocab_size(archive)
        )
    from_archive = _from_setup_config(archive)
    if from_archive is not None:
        return from_archive
    kind = handler_kinds.KIND_INPUTS.get(archive.handler)
    if kind is not None:
        return Examples(
            kind.layout,
            kind.sample_shape,
            torch.float32 if kind.layout == "batch" else torch.int64,
            f"the handler kind {archive.handler}",
            token_range=vocab_size or _vocab_size(archive),
            any_image_size=kind.any_image_size,
        )
    raise ConvertError(
        f"{archive.origin}: cannot tell what input the model takes (handler {archive.handler!r} is not a standard "
        "one and the archive has no setup_config.json max_length): pass --example-shape (one sample, no batch "
        "dimension, e.g. 3,224,224) with --example-dtype, or --example-input FILE"
    )


def _from_setup_config(archive: TorchServeArchive) -> Examples | None:
    """HF archives (TorchServe's Transformer handler) pad every input to setup_config.json's max_length."""
    setup = _json_member(archive, "setup_config.json")
    max_length = setup.get("max_length") if setup else None
    if isinstance(max_length, bool) or not isinstance(max_length, (int, str)) or not str(max_length).isdigit():
        return None
    return Examples(
        "batch", (int(max_length),), torch.int64, "setup_config.json max_length", token_range=_vocab_size(archive)
    )


def _vocab_size(archive: TorchServeArchive) -> int:
    config = _json_member(archive, "config.json")
    size = config.get("vocab_size") if config else None
    if isinstance(size, int) and not isinstance(size, bool) and size > 0:
        return size
    return DEFAULT_TOKEN_RANGE


def _json_member(archive: TorchServeArchive, name: str) -> dict[str, Any] | None:
    path = archive.root / name
    if not path.is_file():
        return None
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return loaded if isinstance(loaded, dict) else None


def _read_sample(path: Path) -> torch.Tensor:
    if not path.is_file():
        raise ConvertError(f"--example-input {path}: no such file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        tensors = load_file(str(path))
        if len(tensors) != 1:
            raise ConvertError(f"--example-input {path.name}: holds {len(tensors)} tensors; one sample tensor expected")
        return next(iter(tensors.values()))
    try:
        return torch.tensor(json.loads(path.read_text(encoding="utf-8")), dtype=torch.float32)
    except (UnicodeDecodeError, ValueError, TypeError) as exc:
        raise ConvertError(f"--example-input {path.name}: not a JSON array of numbers ({exc})") from None
