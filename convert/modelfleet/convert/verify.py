"""Run the eager model and the converted one on the same inputs and measure how far apart they are.

Called by the pipeline after each conversion. Sizes other than the export example's are included,
so a batch size (or text length) frozen into the converted model shows up as a failure here.
Structures must match exactly (same keys, same number of parts, same shapes and dtypes); values within
atol + rtol * |eager| (torch.allclose's rule).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .examples import Examples
from .outputs import flatten, select


@dataclass(frozen=True)
class Verification:
    sizes: tuple[int, ...]
    max_abs_diff: float
    """Largest |eager - converted| over every output element and size (inf when something did not match)."""
    problem: str = ""
    """Empty when every output is within tolerance; else what differed first."""

    @property
    def ok(self) -> bool:
        return not self.problem


def verify(
    eager: nn.Module,
    converted: Callable[..., Any],
    examples: Examples,
    *,
    select_path: tuple[str | int, ...] | None,
    atol: float,
    rtol: float,
    seed: int,
) -> Verification:
    sizes = examples.verify_sizes
    runs: list[tuple[int, tuple[int, ...] | None]] = [(size, None) for size in sizes]
    if examples.other_image_size is not None:
        runs.append((2, examples.other_image_size))
    worst = 0.0
    for size, sample_shape in runs:
        args = examples.make(size, seed=seed, sample_shape=sample_shape)
        with torch.no_grad():
            expected = eager(*args)
            if select_path:
                expected = select(expected, select_path)
            try:
                actual = converted(*args)
            except Exception as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                return Verification(
                    sizes,
                    math.inf,
                    f"{examples.varying} {size}, sample {list(args[0].shape[1:])}: "
                    "the converted model failed: "
                    f"{type(exc).__name__}: {first[:200]}",
                )
        diff, problem = _compare(flatten(expected), flatten(actual), atol=atol, rtol=rtol)
        worst = max(worst, diff)
        if problem:
            where = f"{examples.varying} {size}" + (f", sample {list(sample_shape)}" if sample_shape else "")
            return Verification(sizes, worst, f"{where}: {problem}")
    return Verification(sizes, worst)


def _compare(
    expected: list[tuple[str, Any]], actual: list[tuple[str, Any]], *, atol: float, rtol: float
) -> tuple[float, str]:
    if [name for name, _ in expected] != [name for name, _ in actual]:
        return math.inf, (
            f"the outputs differ in structure: eager {[n for n, _ in expected]}, converted {[n for n, _ in actual]}"
        )
    worst = 0.0
    for (name, want), (_, got) in zip(expected, actual):
        if not isinstance(want, torch.Tensor) or not isinstance(got, torch.Tensor):
            if want != got:
                return math.inf, f"output {name}: eager {want!r}, converted {got!r}"
            continue
        if want.shape != got.shape or want.dtype != got.dtype:
            return math.inf, (
                f"output {name}: eager {want.dtype} {list(want.shape)}, converted {got.dtype} {list(got.shape)}"
            )
        if want.numel() == 0:
            continue
        a, b = want.detach().to(torch.float64), got.detach().to(torch.float64)
        diff = float((a - b).abs().max().item())
        worst = max(worst, diff)
        if not torch.allclose(a, b, atol=atol, rtol=rtol, equal_nan=True):
            return worst, f"output {name}: max |eager - converted| = {diff:.3g}, beyond atol {atol:g} / rtol {rtol:g}"
    return worst, ""
