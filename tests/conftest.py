"""Fixtures shared by every test: a model store with tiny seeded models (helpers live in tests/support)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture
def model_store(tmp_path: Path) -> Path:
    """An empty model store folder."""
    store = tmp_path / "model_store"
    store.mkdir()
    return store


@pytest.fixture
def tiny_model(model_store: Path) -> Path:
    """tiny.pt in the model store: TorchScript Linear 16->4, seed 0."""
    from modelfleet.server.demo import write_torchscript

    return write_torchscript("tiny", model_store / "tiny.pt")


@pytest.fixture
def make_model(model_store: Path) -> Callable[..., Path]:
    """Write a seeded TorchScript model (`tiny` or `mlp`) into the model store under any file name."""
    from modelfleet.server.demo import write_torchscript

    def make(file_name: str, kind: str = "tiny", seed: int = 0) -> Path:
        return write_torchscript(kind, model_store / file_name, seed=seed)

    return make
