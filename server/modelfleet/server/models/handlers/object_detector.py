"""Built-in `object_detector` handler module: TorchServe 0.12's ObjectDetector, over .pt/.pt2 models.

Input: an image (raw bytes or base64 text) in `data` or `body`, ToTensor only (no resize). The
model returns torchvision's detection structure: one dict per image with "boxes" [K, 4], "labels"
[K] and "scores" [K] (scripted torchvision models' `(losses, detections)` tuple is accepted, and a
model whose TorchScript forward takes List[Tensor] gets a list). Answer per image: TorchServe's
list of `{label: [x1, y1, x2, y2], "score": s}` for scores >= 0.5. Images of different sizes run in
separate forward passes (TorchServe's torch.stack fails on them). Real torchvision detectors need
torchvision's compiled operators (nms, roi_align): see docs/model-safety.md for the image option.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..contracts import ModelContext
from . import vision
from .labels import Labels, label_of
from .standard import OutputMismatch, StandardHandler, read_labels, to_cpu

THRESHOLD = 0.5
"""TorchServe's ObjectDetector.threshold: detections scoring below it are dropped."""
_KEYS = ("boxes", "labels", "scores")


@dataclass(frozen=True)
class DetectorPipeline:
    labels: Labels | None
    max_pixels: int
    takes_list: bool = False
    """The model's TorchScript forward is declared `images: List[Tensor]` (scripted torchvision detectors)."""
    threshold: float = THRESHOLD
    name: str = "object_detector"

    def preprocess(self, request: Mapping[str, bytes]) -> torch.Tensor:
        image = vision.open_rgb(vision.image_entry(request), max_pixels=self.max_pixels, handler=self.name)
        return vision.to_tensor(image)

    def batch_key(self, sample: torch.Tensor) -> Hashable:
        return tuple(sample.shape)

    def forward(self, model: Callable[..., Any], samples: Sequence[torch.Tensor]) -> list[Any]:
        output = to_cpu(model(list(samples) if self.takes_list else torch.stack(list(samples))))
        if isinstance(output, tuple) and len(output) == 2 and isinstance(output[0], dict):
            output = output[1]  # scripted torchvision detectors answer (losses, detections)
        if not isinstance(output, list) or len(output) != len(samples) or not all(_is_detection(row) for row in output):
            raise OutputMismatch(
                f"expected a list of {len(samples)} dict(s) with tensors {', '.join(_KEYS)} (torchvision's detection "
                f"output), got {type(output).__name__}"
            )
        results = []
        for row in output:
            keep = row["scores"] >= self.threshold
            results.append(tuple(row[key][keep].tolist() for key in _KEYS))
        return results

    def answer(self, result: Any) -> Any:
        boxes, classes, scores = result
        return [{label_of(cls, self.labels): box, "score": score} for box, cls, score in zip(boxes, classes, scores)]


def create(context: ModelContext) -> StandardHandler:
    pipeline = DetectorPipeline(
        labels=read_labels(context.files),
        max_pixels=context.settings.max_image_pixels,
        takes_list=takes_tensor_list(context.module),
    )
    return StandardHandler(pipeline, context)


def takes_tensor_list(model: Any) -> bool:
    """Whether a TorchScript model's forward declares its one input as List[Tensor]."""
    forward = getattr(model, "forward", None)
    schema = getattr(forward, "schema", None)
    arguments = getattr(schema, "arguments", None)
    if not arguments or len(arguments) < 2:
        return False
    return str(arguments[1].type) == "List[Tensor]"


def _is_detection(row: Any) -> bool:
    return isinstance(row, dict) and all(isinstance(row.get(key), torch.Tensor) for key in _KEYS)
