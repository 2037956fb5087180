"""Built-in `image_segmenter` handler module: TorchServe 0.12's ImageSegmenter, over .pt/.pt2 models.

Input as image_classifier (Resize(256), CenterCrop(224), ToTensor, ImageNet Normalize). The model
returns torchvision's segmentation structure, a dict whose "out" is [N, classes, H, W] (a bare
tensor of that shape is accepted too). Answer per image: TorchServe's [H][W][2] list, each pixel's
[top class (as a float), its softmax probability].
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..contracts import ModelContext
from . import vision
from .standard import OutputMismatch, StandardHandler, to_cpu


@dataclass(frozen=True)
class SegmenterPipeline:
    max_pixels: int
    name: str = "image_segmenter"

    def preprocess(self, request: Mapping[str, bytes]) -> torch.Tensor:
        return vision.imagenet_sample(request, max_pixels=self.max_pixels, handler=self.name)

    def batch_key(self, sample: torch.Tensor) -> Hashable:
        return tuple(sample.shape)

    def forward(self, model: Callable[..., Any], samples: Sequence[torch.Tensor]) -> list[Any]:
        output = to_cpu(model(torch.stack(list(samples))))
        scores = output.get("out") if isinstance(output, dict) else output
        if not isinstance(scores, torch.Tensor) or scores.dim() != 4 or scores.shape[0] != len(samples):
            raise OutputMismatch(
                f"expected {{'out': tensor [{len(samples)}, classes, H, W]}} (torchvision's segmentation output), "
                f"got {_describe(output)}"
            )
        best = torch.max(torch.nn.functional.softmax(scores, dim=1), dim=1)
        pixels = torch.stack([best.indices.type(best.values.dtype), best.values], dim=3)
        return list(pixels.unbind(0))

    def answer(self, result: Any) -> Any:
        return result.tolist()


def create(context: ModelContext) -> StandardHandler:
    return StandardHandler(SegmenterPipeline(max_pixels=context.settings.max_image_pixels), context)


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {list(value.shape)}"
    if isinstance(value, dict):
        return f"a dict with keys {sorted(map(str, value))}"
    return type(value).__name__
