"""Built-in `image_classifier` handler module: TorchServe 0.12's ImageClassifier, over .pt/.pt2 models.

Input: an image (raw bytes or base64 text) in `data` or `body`. Preprocessing: Resize(256),
CenterCrop(224), ToTensor, ImageNet Normalize (vision.py). Answer per image: the top 5 classes as
`{label: probability}` (softmax over dim 1, torch.topk order) from the archive's index_to_name.json,
as TorchServe's JSON. With fewer than 5 classes all are answered (TorchServe fails there).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..contracts import ModelContext
from . import vision
from .labels import Labels, scores_by_label
from .standard import OutputMismatch, StandardHandler, read_labels, to_cpu

TOPK = 5
"""TorchServe's ImageClassifier.topk."""


@dataclass(frozen=True)
class ClassifierPipeline:
    labels: Labels | None
    max_pixels: int
    topk: int = TOPK
    name: str = "image_classifier"

    def preprocess(self, request: Mapping[str, bytes]) -> torch.Tensor:
        return vision.imagenet_sample(request, max_pixels=self.max_pixels, handler=self.name)

    def batch_key(self, sample: torch.Tensor) -> Hashable:
        return tuple(sample.shape)

    def forward(self, model: Callable[..., Any], samples: Sequence[torch.Tensor]) -> list[Any]:
        logits = to_cpu(model(torch.stack(list(samples))))
        if not isinstance(logits, torch.Tensor) or logits.dim() != 2 or logits.shape[0] != len(samples):
            raise OutputMismatch(f"expected class scores of shape [{len(samples)}, classes], got {_describe(logits)}")
        probabilities = torch.nn.functional.softmax(logits, dim=1)
        top = torch.topk(probabilities, min(self.topk, probabilities.shape[1]), dim=1)
        return list(zip(top.indices.tolist(), top.values.tolist()))

    def answer(self, result: Any) -> Any:
        indices, scores = result
        return scores_by_label(indices, scores, self.labels)


def create(context: ModelContext) -> StandardHandler:
    pipeline = ClassifierPipeline(labels=read_labels(context.files), max_pixels=context.settings.max_image_pixels)
    return StandardHandler(pipeline, context)


def _describe(value: Any) -> str:
    return f"shape {list(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__
