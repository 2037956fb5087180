"""Compact, comparable summaries of big handler results, shared by the golden script and the tests.

A preprocessed image is 150,528 numbers and a segmentation answer 100,352: the goldens keep sums
and fixed samples instead, which any difference in resizing, cropping or scoring still changes.
Plain Python + torch only (it also runs in the reference venv).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch

SAMPLES = 64


def tensor_summary(tensor: torch.Tensor) -> dict[str, Any]:
    flat = tensor.detach().to(torch.float64).reshape(-1)
    step = max(1, flat.numel() // SAMPLES)
    return {
        "shape": list(tensor.shape),
        "sum": float(flat.sum()),
        "sum_squares": float((flat * flat).sum()),
        "samples": [float(value) for value in flat[::step][:SAMPLES]],
    }


def segmentation_summary(answer: list[list[list[float]]]) -> dict[str, Any]:
    """[H][W][2] (class, probability) -> shape, pixels per class, probability sum, sampled pixels."""
    height, width = len(answer), len(answer[0])
    counts = Counter(str(int(pixel[0])) for row in answer for pixel in row)
    step = max(1, height * width // SAMPLES)
    flat = [pixel for row in answer for pixel in row]
    return {
        "shape": [height, width, len(answer[0][0])],
        "class_counts": dict(sorted(counts.items())),
        "probability_sum": sum(pixel[1] for pixel in flat),
        "samples": flat[::step][:SAMPLES],
    }
