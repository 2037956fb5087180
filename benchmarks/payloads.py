"""Seeded benchmark inputs: the demo models' TorchScript files and a pool of varied JSON payloads.

serving.py calls write_models() once and write_pool() once per model; the pool file carries each
payload with the output computed locally by the very TorchScript file the servers load, so the load
generator can check every reply without importing torch. Varied payloads leave a server nothing to
cache. Imports torch lazily (only the orchestrator calls this; loadgen.py must stay light).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

DEFAULT_POOL_SIZE = 256
"""Distinct payloads per model; cycled by the load generator."""
DECIMALS = 4
"""Digits kept in the JSON payloads (the expected outputs use the same rounded inputs)."""


def write_models(folder: Path, *, seed: int = 0) -> dict[str, Path]:
    """tiny.pt and mlp.pt from modelfleet.server.demo (seeded TorchScript) in `folder`."""
    from modelfleet.server.demo import SHAPES, write_torchscript

    folder.mkdir(parents=True, exist_ok=True)
    return {kind: write_torchscript(kind, folder / f"{kind}.pt", seed=seed) for kind in SHAPES}


def output_width(kind: str) -> int:
    from modelfleet.server.demo import SHAPES

    return SHAPES[kind][-1]


def write_pool(model_file: Path, kind: str, out: Path, *, seed: int = 1, size: int = DEFAULT_POOL_SIZE) -> Path:
    """A JSON file {"model", "width", "payloads": [str], "expected": [[float]]} for loadgen.py."""
    import torch

    from modelfleet.server.demo import SHAPES

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is deprecated in torch 2.13
        module: Any = torch.jit.load(str(model_file), map_location="cpu").eval()
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(size, SHAPES[kind][0], generator=generator)
    payloads: list[str] = []
    expected: list[list[float]] = []
    with torch.inference_mode():
        for row in inputs:
            values = [round(float(v), DECIMALS) for v in row]
            payloads.append(json.dumps(values))
            # One sample at a time, as an unbatched server computes it.
            expected.append(module(torch.tensor(values, dtype=torch.float32)).tolist())
    out.write_text(json.dumps({"model": kind, "width": SHAPES[kind][-1], "payloads": payloads, "expected": expected}))
    return out
