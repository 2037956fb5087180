"""Fixtures for the loading tests: tiny models built here (TorchScript, torch.export, .mar, folders,
safetensors with a trusted handler module) and a loader."""

from __future__ import annotations

import json
import sys
import uuid
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from modelfleet.server.demo import build_module
from modelfleet.server.models.contracts import LoadedModel, RegisterSpec, ResolvedSource
from modelfleet.server.models.loading import ModelLoader
from modelfleet.server.settings import ModelSettings


def quietly(build: Callable[[], Any]) -> Any:
    """torch 2.13 deprecates torch.jit.*; the tests still need TorchScript files (users have them)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        return build()


def manifest(**model: str) -> bytes:
    """MAR-INF/MANIFEST.json as torch-model-archiver 0.12 writes it."""
    return json.dumps(
        {"createdOn": "24/11/2025 14:46:00", "runtime": "python", "model": model, "archiverVersion": "0.12.0"},
        indent=2,
    ).encode()


class Models:
    """Writes model files into `root`."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = root
        self._monkeypatch = monkeypatch

    manifest = staticmethod(manifest)
    quietly = staticmethod(quietly)

    def eager(self, kind: str = "tiny") -> torch.nn.Module:
        module: torch.nn.Module = build_module(kind)
        return module

    def torchscript(self, name: str = "tiny.pt", module: torch.nn.Module | None = None) -> Path:
        path = self.root / name
        scripted = quietly(lambda: torch.jit.script(module if module is not None else self.eager()))
        quietly(lambda: scripted.save(str(path)))
        return path

    def export(self, name: str = "tiny.pt2", module: torch.nn.Module | None = None, dynamic: bool = True) -> Path:
        path = self.root / name
        module = module if module is not None else self.eager()
        shapes = {"input": {0: torch.export.Dim("batch", min=1, max=1024)}} if dynamic else None
        program = quietly(lambda: torch.export.export(module, (torch.randn(2, 16),), dynamic_shapes=shapes))
        quietly(lambda: torch.export.save(program, str(path)))
        return path

    def mar(self, name: str, entries: dict[str, bytes]) -> Path:
        path = self.root / name
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            for entry, data in entries.items():
                archive.writestr(entry, data)
        return path

    def folder(self, name: str, entries: dict[str, bytes]) -> Path:
        folder = self.root / name
        for entry, data in entries.items():
            (folder / entry).parent.mkdir(parents=True, exist_ok=True)
            (folder / entry).write_bytes(data)
        return folder

    def trusted_module(self, source: str) -> str:
        """Write a handler module into a folder on sys.path (as if installed in the image); its name."""
        name = f"mf_trusted_{uuid.uuid4().hex[:12]}"
        folder = self.root / "site"
        folder.mkdir(exist_ok=True)
        (folder / f"{name}.py").write_text(source)
        self._monkeypatch.syspath_prepend(str(folder))
        self._monkeypatch.delitem(sys.modules, name, raising=False)
        return name


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Models:
    root = tmp_path / "models"
    root.mkdir()
    return Models(root, monkeypatch)


@pytest.fixture
def loader() -> ModelLoader:
    return ModelLoader(ModelSettings())


def source(path: Path, version_hint: str | None = None) -> ResolvedSource:
    return ResolvedSource(url=path.name, path=path, version_hint=version_hint)


LoadFn = Callable[..., LoadedModel]


@pytest.fixture
def load(loader: ModelLoader) -> LoadFn:
    """identify() then load(), as the registry does."""

    def run(
        path: Path, *, loader_: ModelLoader | None = None, version_hint: str | None = None, **spec: Any
    ) -> LoadedModel:
        chosen = loader_ or loader
        src = source(path, version_hint)
        register = RegisterSpec(url=path.name, **spec)
        return chosen.load(src, register, chosen.identify(src, register))

    return run


@pytest.fixture
def identify(loader: ModelLoader) -> Callable[..., Any]:
    def run(path: Path, *, version_hint: str | None = None, **spec: Any) -> Any:
        return loader.identify(source(path, version_hint), RegisterSpec(url=path.name, **spec))

    return run
