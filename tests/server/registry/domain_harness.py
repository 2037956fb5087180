"""Shared by the registry, workers, metrics and perf_paths tests (loaded by path from tests/server/conftest.py):
real ModelRegistry instances with the real SourceResolver and ModelLoader on a model store, and
trusted handler modules written into the test's tmp folder whose requests can be held at a gate.

tests/server/conftest.py loads this file once by path (tests/ is not a package in
importlib mode) as the module `mf_domain_harness`, re-exports the fixtures below, and the test
modules then `import mf_domain_harness` (already in sys.modules) for the helpers.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import pytest
import torch

from modelfleet.server.models.loading import ModelLoader
from modelfleet.server.models.registry import ModelRegistry
from modelfleet.server.models.sources import SourceResolver
from modelfleet.server.settings import ModelSettings, SourceSettings

import mf_polling as polling

T = TypeVar("T")

WAIT_S = 15.0
"""Upper bound for anything a test awaits; a healthy run needs a small fraction of it."""


class Registries:
    """Builds registries on one model store and closes them all at teardown."""

    def __init__(self, model_store: Path) -> None:
        self.model_store = model_store
        self._made: list[ModelRegistry] = []

    def new(self, *, devices: Sequence[str] = ("cpu",), cpus: int = 2, **models: Any) -> ModelRegistry:
        """A registry whose ModelSettings take `models` (job_queue_size=, trusted_handlers=, ...).

        `cpus` is injected so worker and thread defaults do not depend on the test machine.
        """
        settings = ModelSettings(**models)
        registry = ModelRegistry(
            settings,
            resolver=SourceResolver(SourceSettings(model_store=self.model_store)),
            loader=ModelLoader(settings),
            devices=list(devices),
            cpus=cpus,
        )
        self._made.append(registry)
        return registry

    async def close_all(self) -> None:
        for registry in self._made:
            await registry.close()


def rows_json(rows: torch.Tensor) -> bytes:
    return json.dumps(rows.tolist()).encode()


def seeded_rows(count: int, *, seed: int, width: int = 16) -> torch.Tensor:
    return torch.randn(count, width, generator=torch.Generator().manual_seed(seed))


def eager(kind: str = "tiny", *, seed: int = 0) -> Callable[[torch.Tensor], torch.Tensor]:
    """The seeded eager module the demo builder scripts: the reference for served outputs."""
    from modelfleet.server.demo import build_module

    module = build_module(kind, seed=seed)

    def forward(rows: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            result: torch.Tensor = module(rows)
            return result

    return forward


def as_tensor(answer: bytes) -> torch.Tensor:
    return torch.tensor(json.loads(answer), dtype=torch.float32)


async def predict(
    registry: ModelRegistry,
    name: str,
    inputs: Mapping[str, bytes] | bytes,
    *,
    version: str | None = None,
    deadline: float | None = None,
) -> bytes:
    """One prediction, bounded in time so a broken worker fails the test instead of hanging it."""
    entries = {"data": inputs} if isinstance(inputs, bytes) else inputs
    return await asyncio.wait_for(registry.predict(name, version, entries, deadline=deadline), WAIT_S)


async def eventually(predicate: Callable[[], bool], *, what: str, timeout_s: float = WAIT_S) -> None:
    """Poll a condition the event loop or worker threads make true (bounded; never a fixed sleep)."""
    await polling.eventually(predicate, timeout=timeout_s, what=what, interval=0.005)


async def in_thread(call: Callable[[], T]) -> T:
    """Run a blocking wait (threading.Event/Semaphore with its own timeout) off the event loop."""
    return await asyncio.wait_for(asyncio.to_thread(call), WAIT_S + 5)


async def gather_outcomes(calls: Sequence[Awaitable[T]]) -> list[T | BaseException]:
    return list(await asyncio.gather(*calls, return_exceptions=True))


HOLDING_HANDLER = '''
"""Test handler: JSON number rows in (one row or a list of rows).

`{"hold": true, "rows": ...}` waits at GATE until the test opens it: that occupies a worker for as
long as the test needs, with no timing involved. Every request preprocess sees is recorded.
"""
import json
import threading

import torch

GATE = threading.Event()
ENTERED = threading.Semaphore(0)
"""Released once per held request that reached a worker."""
SEEN = []
"""(worker thread name, decoded request) per request preprocess saw; list.append is atomic."""


def preprocess(inputs):
    document = json.loads(inputs["data"])
    SEEN.append((threading.current_thread().name, document))
    if isinstance(document, dict):
        ENTERED.release()
        if not GATE.wait(60):
            raise RuntimeError("the test never opened the gate")
        document = document["rows"]
    rows = torch.tensor(document, dtype=torch.float32)
    return rows if rows.dim() == 2 else rows.unsqueeze(0)
'''

SLOW_BUILD_HANDLER = '''
"""Test handler for .safetensors weights whose build_model() waits at GATE (a slow model build)."""
import threading

GATE = threading.Event()
BUILDS = []


def build_model():
    BUILDS.append(1)
    if not GATE.wait(60):
        raise RuntimeError("the test never opened the gate")
    from modelfleet.server.demo import build_module
    return build_module("tiny")
'''


def held(rows: torch.Tensor) -> bytes:
    return json.dumps({"hold": True, "rows": rows.tolist()}).encode()


def trusted_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str) -> ModuleType:
    """Write a handler module on sys.path, as if installed in the image; the imported module.

    The loader imports it by name later and gets this very module object, so the test can reach its
    GATE and counters. A unique name per test keeps module state from leaking between tests.
    """
    name = f"mf_domain_handler_{uuid.uuid4().hex[:12]}"
    folder = tmp_path / "site"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(folder))
    module = importlib.import_module(name)
    monkeypatch.setitem(sys.modules, name, module)
    return module


@pytest.fixture
async def registries(model_store: Path) -> AsyncIterator[Registries]:
    made = Registries(model_store)
    yield made
    await made.close_all()


@pytest.fixture
def handler_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], ModuleType]]:
    """Write trusted handler modules; every GATE they hold is opened at teardown."""
    made: list[ModuleType] = []

    def make(source: str) -> ModuleType:
        module = trusted_module(tmp_path, monkeypatch, source)
        made.append(module)
        return module

    yield make
    for module in made:
        module.GATE.set()  # let any thread still parked in a handler finish
