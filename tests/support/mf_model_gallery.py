"""Ordinary models of the kinds users serve, written in plain torch, scripted, traced and exported.

The operator allow-list must admit every one of them (tests/server/model_safety); the test suite's and
benchmarks' own models (demo tiny/mlp, the generation counter) are among them.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from modelfleet.server.demo import build_module


class Block(nn.Module):
    """A ResNet basic block: conv, batch norm, relu, residual add."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + x)


class TinyResNet(nn.Module):
    """An image classifier shaped like torchvision's ResNet (3x32x32 -> 10 classes)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2))
        self.layer = nn.Sequential(Block(8), Block(8))
        self.pool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(8, 10)
        self.dropout = nn.Dropout(0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.layer(self.stem(x)))
        return self.fc(self.dropout(torch.flatten(x, 1)))


class Segmenter(nn.Module):
    """A segmentation head shaped like torchvision's FCN: returns {"out": N x classes x H x W}."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU())
        self.classifier = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        size = x.shape[-2:]
        out = self.classifier(self.features(x))
        return {
            "out": nn.functional.interpolate(
                out, size=[int(size[0]), int(size[1])], mode="bilinear", align_corners=False
            )
        }


class TextClassifier(nn.Module):
    """Embedding bag + LSTM + GRU + layer norm + softmax over token ids."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(100, 16)
        self.lstm = nn.LSTM(16, 16, batch_first=True)
        self.gru = nn.GRU(16, 16, batch_first=True)
        self.norm = nn.LayerNorm(16)
        self.head = nn.Linear(16, 3)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x, _ = self.lstm(self.embedding(tokens))
        x, _ = self.gru(x)
        return torch.softmax(self.head(self.norm(x[:, -1])), dim=-1)


class Encoder(nn.Module):
    """A transformer encoder layer with attention and GELU, as in BERT-style models."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, batch_first=True, activation="gelu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer(x).mean(dim=1)


class Detections(NamedTuple):
    boxes: torch.Tensor
    scores: torch.Tensor


class Controlled(nn.Module):
    """Control flow, containers, strings, no_grad, exceptions and a named tuple: TorchScript's other syntax."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = 2.0
        self.names: list[str] = ["a", "b"]

    def forward(self, x: torch.Tensor) -> Detections:
        if x.dim() != 2:
            raise ValueError(f"expected 2 dims, got {x.dim()}")
        totals: dict[str, torch.Tensor] = {}
        parts: list[torch.Tensor] = []
        with torch.no_grad():
            for i, name in enumerate(self.names):
                totals[name] = x[:, i % x.size(1)] * self.scale
                parts.append(totals[name])
        i = 0
        while i < 2:
            i += 1
        scores, order = torch.sort(torch.stack(parts, dim=1).sum(dim=1), descending=True)
        return Detections(boxes=x[order].clamp(min=0.0), scores=scores.sigmoid())


class WithState(nn.Module):
    """A benign __getstate__/__setstate__ pair, which torch.jit.load runs."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.randn(2, 4)
        self.label = "benign"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.matmul(x, self.weight.t())

    @torch.jit.export
    def __getstate__(self) -> tuple[str, bool, torch.Tensor]:
        return (self.label, self.training, self.weight)

    @torch.jit.export
    def __setstate__(self, state: tuple[str, bool, torch.Tensor]) -> None:
        self.label = state[0] + ""
        self.training = state[1]
        self.weight = state[2].contiguous()


class CountingUp(nn.Module):
    """The generation tests' model: next token = last token + 1 (mod vocab)."""

    def __init__(self, vocab: int = 50) -> None:
        super().__init__()
        self.vocab = vocab

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        last = tokens[:, -1]
        return nn.functional.one_hot((last + 1) % self.vocab, self.vocab).to(torch.float32)


def quietly(build: Callable[[], Any]) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit deprecation, tracer and export notices
        return build()


def _script(module: nn.Module) -> Callable[[Path], None]:
    return lambda path: quietly(lambda: torch.jit.script(module.eval()).save(str(path)))


def _trace(module: nn.Module, example: torch.Tensor) -> Callable[[Path], None]:
    return lambda path: quietly(lambda: torch.jit.trace(module.eval(), example).save(str(path)))


def _export(module: nn.Module, example: torch.Tensor) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        batch = torch.export.Dim("batch", min=1, max=64)
        program = quietly(lambda: torch.export.export(module.eval(), (example,), dynamic_shapes=({0: batch},)))
        quietly(lambda: torch.export.save(program, str(path)))

    return write


class Entry(NamedTuple):
    suffix: str
    write: Callable[[Path], None]
    example: torch.Tensor
    module: nn.Module
    """The eager original, in eval mode."""


def gallery() -> dict[str, Entry]:
    torch.manual_seed(0)
    image = torch.randn(2, 3, 32, 32)
    tokens = torch.randint(0, 100, (2, 7))
    sequence = torch.randn(2, 5, 16)
    tiny, mlp, counter = build_module("tiny"), build_module("mlp"), CountingUp()
    resnet, segmenter, text, encoder = (
        TinyResNet().eval(),
        Segmenter().eval(),
        TextClassifier().eval(),
        Encoder().eval(),
    )
    controlled, with_state = Controlled().eval(), WithState().eval()
    return {
        "demo-tiny": Entry(".pt", _script(tiny), torch.randn(2, 16), tiny),
        "demo-mlp": Entry(".pt", _script(mlp), torch.randn(2, 256), mlp),
        "generation-counter": Entry(".pt", _script(counter), torch.tensor([[1, 2]]), counter),
        "resnet-scripted": Entry(".pt", _script(resnet), image, resnet),
        "resnet-traced": Entry(".pt", _trace(resnet, image), image, resnet),
        "resnet-exported": Entry(".pt2", _export(resnet, image), image, resnet),
        "segmenter-scripted": Entry(".pt", _script(segmenter), image, segmenter),
        "text-scripted": Entry(".pt", _script(text), tokens, text),
        "text-traced": Entry(".pt", _trace(text, tokens), tokens, text),
        "encoder-scripted": Entry(".pt", _script(encoder), sequence, encoder),
        "encoder-exported": Entry(".pt2", _export(encoder, sequence), sequence, encoder),
        "controlled-scripted": Entry(".pt", _script(controlled), torch.randn(3, 4), controlled),
        "with-state-scripted": Entry(".pt", _script(with_state), torch.randn(2, 4), with_state),
        "mlp-exported": Entry(".pt2", _export(mlp, torch.randn(2, 256)), torch.randn(2, 256), mlp),
    }
