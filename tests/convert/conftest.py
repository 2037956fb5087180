"""Real TorchServe archives of eager models, built with torch-model-archiver 0.12.0 as its model zoo does.

Every model is plain torch with random (seeded) weights, written as a model.py the archive carries.
The test keeps its own instance of each model: the eager original the converted archive must match.
Also: a running in-process ModelFleet app (real gRPC on 127.0.0.1:0) to register converted archives in.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from grpc import aio
from torch import nn

from modelfleet.protos import inference_pb2, inference_pb2_grpc, management_pb2, management_pb2_grpc
from modelfleet.server.app import running_app
from modelfleet.server.settings import (
    AuthSettings,
    ModelSettings,
    NetworkSettings,
    Settings,
    ShutdownSettings,
    SourceSettings,
)

RESNET_BLOCKS = """
import torch
from torch import nn


class BasicBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + x)
"""

RESNET = '''
import torch
from torch import nn

from resnet_blocks import BasicBlock  # a sibling file of the archive, as resnet_18 imports torchvision's


class ImageClassifier(nn.Module):
    """ResNet-shaped: stem, two residual stages, global pool, 10 classes (TorchServe resnet_18's shape)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 7, stride=4, padding=3, bias=False), nn.BatchNorm2d(8),
                                  nn.ReLU(inplace=True), nn.MaxPool2d(3, stride=2, padding=1))
        self.layer1 = nn.Sequential(BasicBlock(8), BasicBlock(8))
        self.down = nn.Conv2d(8, 16, 1, stride=2)
        self.layer2 = BasicBlock(16)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layer2(self.down(self.layer1(self.stem(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))
'''

SEGMENTER = '''
from collections import OrderedDict

import torch
from torch import nn
from torch.nn import functional as F


class Segmenter(nn.Module):
    """FCN-shaped: returns OrderedDict(out=N x 4 x H x W, aux=...) at the input's size, as torchvision's fcn does."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())
        self.classifier = nn.Sequential(nn.Conv2d(16, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 1))
        self.aux_classifier = nn.Conv2d(16, 4, 1)

    def forward(self, x):
        size = x.shape[-2:]
        features = self.backbone(x)
        out = F.interpolate(self.classifier(features), size=size, mode="bilinear", align_corners=False)
        aux = F.interpolate(self.aux_classifier(features), size=size, mode="bilinear", align_corners=False)
        return OrderedDict([("out", out), ("aux", aux)])
'''

DETECTOR = '''
from typing import Dict, List

import torch
from torch import nn


class Detector(nn.Module):
    """Detection-shaped: one dict of boxes/labels/scores per image, as torchvision's detection models return."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d((4, 4)))
        self.box_head = nn.Linear(8 * 16, 5 * 4)
        self.class_head = nn.Linear(8 * 16, 5 * 3)

    def forward(self, images: torch.Tensor) -> List[Dict[str, torch.Tensor]]:
        features = torch.flatten(self.backbone(images), 1)
        boxes = self.box_head(features).view(-1, 5, 4).sigmoid() * images.shape[-1]
        scores, labels = self.class_head(features).view(-1, 5, 3).softmax(-1).max(-1)
        results: List[Dict[str, torch.Tensor]] = []
        for i in range(images.shape[0]):  # per image, as torchvision does: a loop over the batch
            results.append({"boxes": boxes[i], "labels": labels[i] + 1, "scores": scores[i]})
        return results
'''

HF_MODEL = '''
import json
import os

import torch
from torch import nn


class TinyBertForSequenceClassification(nn.Module):
    """HF-shaped: reads config.json beside it, BERT-style parameter names, returns {"logits": ...}."""

    def __init__(self) -> None:
        super().__init__()
        with open(os.path.join(os.path.dirname(__file__), "config.json")) as f:
            config = json.load(f)
        hidden = config["hidden_size"]
        self.bert = nn.ModuleDict({
            "embeddings": nn.ModuleDict({
                "word_embeddings": nn.Embedding(config["vocab_size"], hidden),
                "position_embeddings": nn.Embedding(config["max_position_embeddings"], hidden),
                "LayerNorm": nn.LayerNorm(hidden),
            }),
            "encoder": nn.TransformerEncoder(
                nn.TransformerEncoderLayer(hidden, config["num_attention_heads"], config["intermediate_size"],
                                           dropout=0.0, activation="gelu", batch_first=True),
                config["num_hidden_layers"], enable_nested_tensor=False),
        })
        self.classifier = nn.Linear(hidden, config["num_labels"])

    def forward(self, input_ids, attention_mask=None):
        embeddings = self.bert["embeddings"]
        positions = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)
        x = embeddings["word_embeddings"](input_ids) + embeddings["position_embeddings"](positions)
        x = self.bert["encoder"](embeddings["LayerNorm"](x))
        return {"logits": self.classifier(x[:, 0])}
'''

HF_HANDLER = '''
"""A TorchServe custom handler, as the HF examples write them (it never runs in ModelFleet)."""
import json

import torch
from ts.torch_handler.base_handler import BaseHandler


class TransformersSeqClassifierHandler(BaseHandler):
    def preprocess(self, requests):
        ids = [json.loads(r.get("data") or r.get("body")) for r in requests]
        return torch.tensor(ids)

    def inference(self, input_ids):
        return self.model(input_ids)["logits"]

    def postprocess(self, logits):
        return logits.argmax(-1).tolist()
'''

TEXT = '''
import torch
from torch import nn


class TextSentiment(nn.Module):
    """TorchServe's text_classification example: EmbeddingBag over (text, offsets), then a linear layer."""

    def __init__(self, vocab_size=12, embed_dim=8, num_class=4):
        super().__init__()
        self.embedding = nn.EmbeddingBag(vocab_size, embed_dim)
        self.fc = nn.Linear(embed_dim, num_class)

    def forward(self, text, offsets):
        return self.fc(self.embedding(text, offsets))
'''

TORCHTEXT_LIKE_VOCAB = '''
class Vocab:
    """Stands in for torchtext's Vocab (get_stoi / get_default_index), which cannot be installed here."""

    def __init__(self, tokens, default_index):
        self._stoi = {token: index for index, token in enumerate(tokens)}
        self._default = default_index

    def get_stoi(self):
        return dict(self._stoi)

    def get_default_index(self):
        return self._default
'''

BRANCHY = '''
import torch
from torch import nn


class Branchy(nn.Module):
    """Python control flow on the batch size: tracing freezes the branch of its example."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > 2:
            return self.fc(x) * 2.0
        return self.fc(x)
'''

PRINTING = '''
import torch
from torch import nn


class Printing(nn.Module):
    """Prints from forward: TorchScript keeps the print (prim::Print), which the server refuses."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        print("forward")
        return self.fc(x)
'''

HF_CONFIG = {
    "vocab_size": 30,
    "hidden_size": 16,
    "max_position_embeddings": 32,
    "num_attention_heads": 2,
    "intermediate_size": 32,
    "num_hidden_layers": 2,
    "num_labels": 3,
}
_names = itertools.count()


@dataclass
class Archive:
    """A built .mar and the eager model instance whose weights it holds."""

    mar: Path
    eager: nn.Module
    model_name: str
    handler: str


def archiver(tmp_path: Path, *args: str) -> None:
    """Run torch-model-archiver 0.12.0 (its console script) with a private temp folder."""
    tmp = tmp_path / "archiver-tmp"
    tmp.mkdir(exist_ok=True)
    script = Path(sys.executable).parent / "torch-model-archiver"
    env = {**os.environ, "TMPDIR": str(tmp)}
    done = subprocess.run([str(script), *args], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr + done.stdout


def import_model(path: Path, class_name: str) -> type[nn.Module]:
    spec = importlib.util.spec_from_file_location(f"eager_original_{next(_names)}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    cls: type[nn.Module] = getattr(module, class_name)
    return cls


def randomize(model: nn.Module, seed: int) -> nn.Module:
    """Random weights and batch-norm statistics, so a dropped layer or a frozen constant shows."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in itertools.chain(model.parameters(), model.buffers()):
            if tensor.is_floating_point():
                tensor.copy_(
                    torch.rand(tensor.shape, generator=generator) * 0.5 + 0.1
                    if "running_var" in _name_of(model, tensor)
                    else torch.randn(tensor.shape, generator=generator) * 0.2
                )
    return model.eval()


def _name_of(model: nn.Module, tensor: torch.Tensor) -> str:
    for name, buffer in model.named_buffers():
        if buffer is tensor:
            return name
    return ""


@pytest.fixture
def zoo(tmp_path: Path) -> Callable[..., Archive]:
    """`zoo(kind)`: a .mar of kind resnet / segmenter / detector / hf / text, built like TorchServe's zoo."""

    def build(kind: str, *, archive_format: str = "default", with_model_file: bool = True) -> Archive:
        work = tmp_path / f"src-{kind}-{next(_names)}"
        work.mkdir()
        export = tmp_path / "mars"
        export.mkdir(exist_ok=True)
        extra: list[Path] = []
        if kind == "hf":
            (work / "config.json").write_text(json.dumps(HF_CONFIG))
            (work / "setup_config.json").write_text(json.dumps({"max_length": 12, "mode": "sequence_classification"}))
            (work / "vocab.txt").write_text("\n".join(f"tok{i}" for i in range(HF_CONFIG["vocab_size"])))
            (work / "handler.py").write_text(HF_HANDLER)
            extra += [work / "config.json", work / "setup_config.json", work / "vocab.txt"]
        source, class_name, handler, weights = {
            "resnet": (RESNET, "ImageClassifier", "image_classifier", "resnet-18.pth"),
            "segmenter": (SEGMENTER, "Segmenter", "image_segmenter", "fcn.pth"),
            "detector": (DETECTOR, "Detector", "object_detector", "detector.pth"),
            "hf": (HF_MODEL, "TinyBertForSequenceClassification", str(work / "handler.py"), "pytorch_model.bin"),
            "text": (TEXT, "TextSentiment", "text_classifier", "model.pt"),
            "branchy": (BRANCHY, "Branchy", "image_classifier", "model.pth"),
            "printing": (PRINTING, "Printing", "image_classifier", "model.pth"),
        }[kind]
        (work / "model.py").write_text(source)
        if kind == "resnet":
            (work / "resnet_blocks.py").write_text(RESNET_BLOCKS)
            extra.append(work / "resnet_blocks.py")
            sys.path.insert(0, str(work))  # the test's own import of model.py, as TorchServe puts model_dir first
        eager = randomize(import_model(work / "model.py", class_name)(), seed=len(kind))
        torch.save(eager.state_dict(), work / weights)
        labels = {"resnet": 10, "segmenter": 4, "detector": 3, "hf": 3, "text": 4}.get(kind, 2)
        (work / "index_to_name.json").write_text(json.dumps({str(i): f"class_{i}" for i in range(labels)}))
        extra.append(work / "index_to_name.json")
        if kind == "text":
            (work / "torchtext.py").write_text(TORCHTEXT_LIKE_VOCAB)
            vocab_cls = import_vocab(work)
            tokens = ["<unk>", "the", "movie", "was", "great", "bad", "plot", "actors", "a", "an", "is", "not"]
            torch.save(vocab_cls(tokens, 0), work / "source_vocab.pt")
            extra.append(work / "source_vocab.pt")
        name = f"{kind}-{next(_names)}"
        model_file = ["--model-file", str(work / "model.py")] if with_model_file else []
        archiver(
            tmp_path,
            "--model-name",
            name,
            "--version",
            "1.0",
            *model_file,
            "--serialized-file",
            str(work / weights),
            "--handler",
            handler,
            "--extra-files",
            ",".join(str(p) for p in extra),
            "--export-path",
            str(export),
            "--archive-format",
            archive_format,
        )
        suffix = {"no-archive": "", "tgz": ".tar.gz"}.get(archive_format, ".mar")
        mar = export / f"{name}{suffix}"
        assert mar.exists()
        return Archive(mar=mar, eager=eager, model_name=name, handler=Path(handler).name)

    return build


def import_vocab(folder: Path) -> Any:
    """The stand-in vocabulary class, importable by its module name (as a pickle needs) for this session."""
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    sys.modules.pop("torchtext", None)
    import torchtext  # type: ignore[import-not-found]  # the stand-in: torchtext itself cannot be installed

    return torchtext.Vocab


@dataclass
class Served:
    """A running app and stubs on it."""

    inference: inference_pb2_grpc.InferenceAPIsServiceStub
    management: management_pb2_grpc.ManagementAPIsServiceStub

    store: Path

    async def register(self, file_name: str, *, handler: str = "default") -> str:
        """Register a file of the model store (as TorchServe clients do) with `handler`."""
        reply = await self.management.RegisterModel(
            management_pb2.RegisterModelRequest(url=file_name, handler=handler, synchronous=True, initial_workers=1),
            timeout=120,
        )
        return str(reply.msg)

    async def describe(self, name: str) -> list[dict[str, Any]]:
        reply = await self.management.DescribeModel(management_pb2.DescribeModelRequest(model_name=name))
        described: list[dict[str, Any]] = json.loads(reply.msg)
        return described

    async def predict_raw(self, name: str, tensor: torch.Tensor) -> bytes:
        """Send one batch as raw little-endian bytes with dtype and shape; the raw answer."""
        dtype = str(tensor.dtype).removeprefix("torch.")
        shape = ",".join(map(str, tensor.shape))
        reply = await self.inference.Predictions(
            inference_pb2.PredictionsRequest(
                model_name=name,
                input={"data": tensor.contiguous().numpy().tobytes(), "dtype": dtype.encode(), "shape": shape.encode()},
            ),
            timeout=60,
        )
        return bytes(reply.prediction)

    async def predict_bytes(self, name: str, data: bytes) -> Any:
        """Send raw bytes under "data", as TorchServe's clients send an image or a text; the parsed answer."""
        reply = await self.inference.Predictions(
            inference_pb2.PredictionsRequest(model_name=name, input={"data": data}), timeout=60
        )
        text = reply.prediction.decode("utf-8")
        assert text == json.dumps(json.loads(text), indent=2)  # TorchServe's JSON, byte for byte
        return json.loads(text)

    async def predict_json(self, name: str, value: Any) -> Any:
        reply = await self.inference.Predictions(
            inference_pb2.PredictionsRequest(model_name=name, input={"data": json.dumps(value).encode()}), timeout=60
        )
        return json.loads(reply.prediction)


@pytest.fixture
def serve(tmp_path: Path) -> Callable[..., Any]:
    """`async with serve() as served:` a real ModelFleet app on loopback whose allow-list admits tmp_path."""

    @contextlib.asynccontextmanager
    async def start() -> AsyncIterator[Served]:
        store = tmp_path / "model_store"
        store.mkdir(exist_ok=True)
        settings = Settings(
            network=NetworkSettings(inference_address="127.0.0.1:0", management_address="127.0.0.1:0"),
            auth=AuthSettings(enabled=False, enable_model_api=True, key_file=tmp_path / "key_file.json"),
            sources=SourceSettings(model_store=store),
            models=ModelSettings(default_workers=1),
            shutdown=ShutdownSettings(drain_delay_s=0.0, grace_s=5.0),
        )
        async with running_app(settings) as app:
            inference = aio.insecure_channel(app.inference_address)
            management = aio.insecure_channel(app.management_address)
            try:
                yield Served(
                    inference_pb2_grpc.InferenceAPIsServiceStub(inference),
                    management_pb2_grpc.ManagementAPIsServiceStub(management),
                    store,
                )
            finally:
                await inference.close()
                await management.close()

    return start
