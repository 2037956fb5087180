"""Small stand-in models in plain torch with the input and output structure of the models
TorchServe's standard handlers serve (torchvision classifiers, segmenters and detectors, a
torchtext EmbeddingBag classifier), and the fixed inputs of the golden cases.

Imported by the tests (torch 2.13) and by scripts/build_handler_goldens.py in the reference venv
(torch 2.14.1 + torchvision + torchserve 0.12): weights come from closed formulas, not a random
generator, so both sides build the same numbers. Keep this file plain torch + numpy + Pillow.
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch
from PIL import Image


def _weights(*shape: int, scale: float, phase: float = 0.0) -> torch.Tensor:
    count = math.prod(shape)
    values = torch.sin(torch.arange(count, dtype=torch.float64) * 0.7 + phase) * scale
    return values.to(torch.float32).reshape(shape)


class Classifier(torch.nn.Module):
    """[N, 3, 224, 224] -> logits [N, 10], like a torchvision classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = torch.nn.AvgPool2d(16)
        self.fc = torch.nn.Linear(3 * 14 * 14, 10)
        with torch.no_grad():
            self.fc.weight.copy_(_weights(10, 3 * 14 * 14, scale=0.05))
            self.fc.bias.copy_(_weights(10, scale=0.3, phase=1.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(x), 1))


class Segmenter(torch.nn.Module):
    """[N, 3, H, W] -> {"out": [N, 5, H, W], "aux": ...}, like torchvision's fcn/deeplabv3."""

    def __init__(self) -> None:
        super().__init__()
        self.head = torch.nn.Conv2d(3, 5, kernel_size=3, padding=1)
        mix = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [-1.0, -1.0, 0.0], [0.0, -1.0, -1.0]])
        with torch.no_grad():  # each class follows one colour mix, blurred by a fixed 3 x 3 kernel
            kernel = (_weights(3, 3, scale=0.05, phase=2.0) + 1.0 / 9).reshape(1, 1, 3, 3)
            self.head.weight.copy_(mix[:, :, None, None] * kernel)
            self.head.bias.copy_(_weights(5, scale=0.2, phase=2.0))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.head(x)
        return {"out": out, "aux": out * 0.5}


class Detector(torch.nn.Module):
    """[N, 3, H, W] -> one {"boxes", "labels", "scores"} dict per image, like torchvision's detectors."""

    def __init__(self) -> None:
        super().__init__()
        self.score = torch.nn.Linear(3, 6)
        with torch.no_grad():
            self.score.weight.copy_(_weights(6, 3, scale=6.0))
            self.score.bias.copy_(_weights(6, scale=1.0, phase=0.5))

    def forward(self, images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        results: list[dict[str, torch.Tensor]] = []
        for image in images:
            height, width = image.shape[1], image.shape[2]
            means = image.mean(dim=(1, 2))
            scores = torch.sigmoid(self.score(means))
            fractions = torch.arange(6, dtype=image.dtype) / 8.0
            boxes = torch.stack(
                [fractions * width, fractions * height, (fractions + 0.25) * width, (fractions + 0.25) * height], dim=1
            )
            labels = torch.tensor([1, 3, 2, 5, 4, 1], dtype=torch.int64)
            results.append({"boxes": boxes, "labels": labels, "scores": scores})
        return results


class TextClassifier(torch.nn.Module):
    """(token ids, offsets) -> [texts, 4], like TorchServe's text_classification example (EmbeddingBag)."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.embedding = torch.nn.EmbeddingBag(vocab_size, 8, mode="mean")
        self.fc = torch.nn.Linear(8, 4)
        with torch.no_grad():
            self.embedding.weight.copy_(_weights(vocab_size, 8, scale=1.0, phase=0.3))
            self.fc.weight.copy_(_weights(4, 8, scale=0.8, phase=1.3))
            self.fc.bias.copy_(_weights(4, scale=0.1))

    def forward(self, text: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return self.fc(self.embedding(text, offsets))


def scripted(name: str, *, vocab_size: int = 0) -> torch.jit.ScriptModule:
    """The stand-in model `name` (classifier, segmenter, detector, text), scripted, in eval mode."""
    models = {"classifier": Classifier, "segmenter": Segmenter, "detector": Detector}
    model = TextClassifier(vocab_size) if name == "text" else models[name]()
    return torch.jit.script(model.eval())


def image_bytes(spec: dict) -> bytes:
    """A golden input image from its spec in golden_cases.json: a smooth pattern, encoded."""
    width, height = spec["size"]
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    phase = float(spec.get("pattern", 0))
    red = 127.5 + 127.5 * np.sin(x / (17.0 + phase) + phase)
    green = 127.5 + 127.5 * np.cos(y / (23.0 + 2 * phase))
    blue = 127.5 + 127.5 * np.sin((x + y) / (31.0 + phase))
    rgb = np.stack([red, green, blue], axis=2).round().clip(0, 255).astype(np.uint8)
    image = Image.fromarray(rgb)
    mode = spec.get("mode", "RGB")
    if mode != "RGB":
        image = image.convert(mode)
    buffer = io.BytesIO()
    if spec["format"] == "JPEG":
        image.save(buffer, format="JPEG", quality=80)
    else:
        image.save(buffer, format=spec["format"])
    return buffer.getvalue()
