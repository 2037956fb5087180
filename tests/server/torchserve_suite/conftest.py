"""TorchServe 0.12's gRPC test suite, ported: its model zoo as stand-ins and a ModelFleet server to run it on.

The zoo archives are built the way TorchServe's `ts_scripts/marsgen.py` zoo is (torch-model-archiver
0.12.0, eager model.py + state dict, the standard handler's name, index_to_name.json) from small
plain-torch models shaped like the real ones (no weights can be downloaded), then converted with
modelfleet-convert; the `_scripted` ones are TorchScript archives served as they are. The server is
a real in-process app on loopback, configured as the suite configures TorchServe (tokens off, model
API on, the zoo in the model store) plus an allow-listed loopback HTTP server standing in for
torchserve.pytorch.org/mar_files.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import subprocess
import sys
import threading
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import torch
from grpc import aio
from torch import nn

from modelfleet.convert.__main__ import main as convert_main
from modelfleet.protos import inference_pb2_grpc, management_pb2_grpc
from modelfleet.server.app import running_app
from modelfleet.server.settings import (
    AuthSettings,
    ModelSettings,
    NetworkSettings,
    Settings,
    ShutdownSettings,
    SourceSettings,
)

DENSE_BLOCKS = """
import torch
from torch import nn


class DenseLayer(nn.Module):
    def __init__(self, channels_in, growth):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels_in)
        self.conv = nn.Conv2d(channels_in, growth, 3, padding=1, bias=False)

    def forward(self, x):
        return torch.cat([x, self.conv(torch.relu(self.norm(x)))], 1)
"""

CLASSIFIER = '''
import torch
from torch import nn
from torch.nn import functional as F

from dense_blocks import DenseLayer  # a sibling extra file, as densenet_161's model.py imports torchvision's


class ImageClassifier(nn.Module):
    """DenseNet-shaped: stem, a dense block (feature concatenation), global pool, 1000 ImageNet classes."""

    def __init__(self, num_classes=1000):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 7, stride=4, padding=3, bias=False), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1), DenseLayer(8, 4), DenseLayer(12, 4), nn.BatchNorm2d(16))
        self.classifier = nn.Linear(16, num_classes)

    def forward(self, x):
        x = F.adaptive_avg_pool2d(torch.relu(self.features(x)), (1, 1))
        return self.classifier(torch.flatten(x, 1))
'''

SEGMENTER = '''
from collections import OrderedDict

import torch
from torch import nn
from torch.nn import functional as F


class Segmenter(nn.Module):
    """fcn_resnet_101-shaped: OrderedDict(out, aux) of [N, 21, H, W] at the input's size."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())
        self.classifier = nn.Sequential(nn.Conv2d(16, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 21, 1))
        self.aux_classifier = nn.Conv2d(16, 21, 1)

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
    """fastrcnn-shaped output: one dict of boxes / labels / scores per image, COCO's 91 labels."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 8, 3, stride=4, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d((4, 4)))
        self.box_head = nn.Linear(8 * 16, 5 * 4)
        self.class_head = nn.Linear(8 * 16, 5 * 91)

    def forward(self, images: torch.Tensor) -> List[Dict[str, torch.Tensor]]:
        features = torch.flatten(self.backbone(images), 1)
        boxes = self.box_head(features).view(-1, 5, 4).sigmoid() * images.shape[-1]
        scores, labels = self.class_head(features).view(-1, 5, 91).softmax(-1).max(-1)
        results: List[Dict[str, torch.Tensor]] = []
        for i in range(images.shape[0]):
            results.append({"boxes": boxes[i], "labels": labels[i], "scores": torch.clamp(scores[i] * 60, max=1.0)})
        return results
'''

KINDS = {  # kind: (model.py source, class, TorchServe handler, number of labels)
    "classifier": (CLASSIFIER, "ImageClassifier", "image_classifier", 1000),
    "segmenter": (SEGMENTER, "Segmenter", "image_segmenter", 21),
    "detector": (DETECTOR, "Detector", "object_detector", 91),
}
_modules = itertools.count()


@dataclass(frozen=True)
class ZooModel:
    """One archive of the stand-in zoo, in the model store, and the eager model whose weights it holds."""

    file_name: str
    eager: nn.Module
    labels: dict[str, str]


@dataclass(frozen=True)
class Zoo:
    """The converted zoo (model store) and the archives the loopback HTTP server hands out."""

    store: Path
    mar_files: Path
    models: dict[str, ZooModel]


def seeded(model: nn.Module, seed: int) -> nn.Module:
    """Random weights and batch-norm statistics from a fixed seed."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in itertools.chain(model.named_parameters(), model.named_buffers()):
            if tensor.is_floating_point():
                tensor.copy_(
                    torch.rand(tensor.shape, generator=generator) * 0.5 + 0.1
                    if "running_var" in name
                    else torch.randn(tensor.shape, generator=generator) * 0.2
                )
    return model.eval()


def eager_model(folder: Path, kind: str, seed: int) -> nn.Module:
    """Import the archive's model.py as TorchServe does (its folder first on the path) and seed it."""
    source, class_name, _, _ = KINDS[kind]
    namespace: dict[str, Any] = {"__name__": f"ts_zoo_model_{next(_modules)}"}
    sys.path.insert(0, str(folder))
    try:
        exec(compile(source, str(folder / "model.py"), "exec"), namespace)
    finally:
        sys.path.remove(str(folder))
    model: nn.Module = namespace[class_name]()
    return seeded(model, seed)


def archive(tmp: Path, export: Path, name: str, *args: str) -> None:
    """torch-model-archiver 0.12.0, its console script, as marsgen runs it."""
    script = Path(sys.executable).parent / "torch-model-archiver"
    done = subprocess.run(
        [str(script), "--model-name", name, "--version", "1.0", "--export-path", str(export), "--force", *args],
        env={**os.environ, "TMPDIR": str(tmp)}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr + done.stdout


def build_zoo(root: Path) -> Zoo:
    """densenet161 / fcn_resnet_101 / fastrcnn eager archives converted into the store; the `_scripted`
    TorchScript classifier and the converted densenet161 also behind the HTTP stand-in."""
    tmp, eager_mars, store, mar_files = (root / part for part in ("tmp", "eager", "model_store", "mar_files"))
    for folder in (tmp, eager_mars, store, mar_files):
        folder.mkdir(parents=True)
    models: dict[str, ZooModel] = {}
    for seed, (name, kind) in enumerate(
        [("densenet161", "classifier"), ("fcn_resnet_101", "segmenter"), ("fastrcnn", "detector")], start=1
    ):
        source, _, handler, count = KINDS[kind]
        work = root / f"src-{name}"
        work.mkdir()
        (work / "model.py").write_text(source)
        labels = {str(i): f"{kind}_label_{i}" for i in range(count)}
        if kind == "classifier":
            labels.update({"281": "tabby", "282": "tiger_cat", "285": "Egyptian_cat"})
        (work / "index_to_name.json").write_text(json.dumps(labels))
        extra = [work / "index_to_name.json"]
        if kind == "classifier":
            (work / "dense_blocks.py").write_text(DENSE_BLOCKS)
            extra.append(work / "dense_blocks.py")
        model = eager_model(work, kind, seed)
        torch.save(model.state_dict(), work / f"{name}.pth")
        archive(
            tmp,
            eager_mars,
            name,
            "--model-file",
            str(work / "model.py"),
            "--serialized-file",
            str(work / f"{name}.pth"),
            "--handler",
            handler,
            "--extra-files",
            ",".join(map(str, extra)),
        )
        with contextlib.redirect_stdout(None):
            assert convert_main([str(eager_mars / f"{name}.mar"), "-o", str(store / f"{name}.mar")]) == 0
        models[name] = ZooModel(f"{name}.mar", model, labels)
        if kind == "classifier":  # the management suite's other classifier names, as marsgen's zoo has them
            for alias in ("squeezenet1_1", "resnet-18", "resnet-152-batch"):
                (store / f"{alias}.mar").write_bytes((store / f"{name}.mar").read_bytes())
        if kind == "classifier":
            with warnings.catch_warnings():  # torch deprecates torch.jit.*; TorchServe's zoo is full of such files
                warnings.simplefilter("ignore")
                torch.jit.save(torch.jit.script(model), str(work / "model_scripted.pt"))
            archive(
                tmp,
                mar_files,
                f"{name}_scripted",
                "--serialized-file",
                str(work / "model_scripted.pt"),
                "--handler",
                handler,
                "--extra-files",
                str(work / "index_to_name.json"),
            )
            models[f"{name}_scripted"] = ZooModel(f"{name}_scripted.mar", model, labels)
            (mar_files / f"{name}.mar").write_bytes((store / f"{name}.mar").read_bytes())
    return Zoo(store=store, mar_files=mar_files, models=models)


@pytest.fixture(scope="session")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Zoo:
    """Built once per session: conversion is the slow part (about 15 s)."""
    return build_zoo(tmp_path_factory.mktemp("torchserve-zoo"))


@pytest.fixture
def mar_files_url(zoo: Zoo, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """`http://127.0.0.1:PORT/mar_files/`: the zoo's download site, on loopback."""
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(zoo.mar_files.parent)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/mar_files/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@dataclass
class Suite:
    """Stubs on a running server, as test_gRPC_utils.get_*_stub hands them out."""

    inference: inference_pb2_grpc.InferenceAPIsServiceStub
    management: management_pb2_grpc.ManagementAPIsServiceStub
    store: Path


@pytest.fixture
def torchserve_like(zoo: Zoo, tmp_path: Path) -> Callable[..., contextlib.AbstractAsyncContextManager[Suite]]:
    """`async with torchserve_like(allowed=(...)) as suite:` the server as test_utils.start_torchserve starts
    TorchServe: tokens off, model API on, a fresh model store holding the zoo (marsgen's copy)
    unless gen_mar=False."""

    @contextlib.asynccontextmanager
    async def start(*, allowed: tuple[str, ...] = (), gen_mar: bool = True) -> AsyncIterator[Suite]:
        store = tmp_path / "model_store"
        store.mkdir()
        for path in zoo.store.iterdir() if gen_mar else ():
            (store / path.name).write_bytes(path.read_bytes())
        settings = Settings(
            network=NetworkSettings(inference_address="127.0.0.1:0", management_address="127.0.0.1:0"),
            auth=AuthSettings(enabled=False, enable_model_api=True, key_file=tmp_path / "key_file.json"),
            sources=SourceSettings(model_store=store, allowed_source_patterns=allowed),
            models=ModelSettings(default_workers=1),
            shutdown=ShutdownSettings(drain_delay_s=0.0, grace_s=5.0),
        )
        async with running_app(settings) as app:
            inference = aio.insecure_channel(app.inference_address)
            management = aio.insecure_channel(app.management_address)
            try:
                yield Suite(
                    inference_pb2_grpc.InferenceAPIsServiceStub(inference),
                    management_pb2_grpc.ManagementAPIsServiceStub(management),
                    store,
                )
            finally:
                await inference.close()
                await management.close()

    return start
