"""Values and seams shared by the domain modules (sources, loading, registry, workers).

Kept in one small module so each domain module can be written and tested alone against
these shapes. Nothing here touches torch at import time or does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..errors import ModelFleetError


@dataclass(frozen=True)
class RegisterSpec:
    """What a caller (RegisterModel, or the desired-state file) asks to load."""

    url: str
    """Model store name, file:// path or http(s):// URL, optionally with #version=/#sha256= fragments."""
    model_name: str = ""
    """Overrides the manifest's name; required when the source has no manifest and no usable file stem."""
    handler: str = ""
    """Overrides the manifest's handler; must be built in or trusted."""
    batch_size: int = 1
    max_batch_delay_ms: int = 100
    initial_workers: int = 0
    """0 means the server's default worker count (TorchServe's quirk)."""
    response_timeout_s: int = 120
    startup_timeout_s: int = 120
    synchronous: bool = False
    expected_version: str | None = None
    """When set (desired-state file, operator), loading fails unless the source's version equals it."""


@dataclass(frozen=True)
class ResolvedSource:
    """A model source made local and checked against the allow-list."""

    url: str
    """The URL as the client gave it (reported as modelUrl)."""
    path: Path
    """A local file or folder inside an allowed location (downloads land in the server's cache)."""
    version_hint: str | None = None
    """From a `#version=<v>` fragment; only used for bare .pt/.pt2/.safetensors files."""


class ModelRunner(Protocol):
    """Runs one model version on one device. One instance per worker; called from that worker's thread only."""

    def run_batch(self, inputs: Sequence[Mapping[str, bytes]]) -> list[bytes | ModelFleetError]:
        """Decode each request, run them together, encode each result.

        Must return exactly one entry per input, in order. A bad input yields a
        ModelFleetError (BAD_INPUT) in its slot and never fails its neighbours.
        """
        ...



@dataclass
class LoadedModel:
    """A model version loaded from its source, ready to create one runner per worker device."""

    name: str
    """Manifest model name, or the request's override."""
    version: str
    handler_name: str
    serialized_format: str
    """"torchscript", "export" or "safetensors"."""
    runner_factory: Any
    """Callable[[str], ModelRunner]: device string ("cpu", "cuda:0") -> a runner on that device."""
    extra: dict[str, Any] = field(default_factory=dict)

    def make_runner(self, device: str) -> ModelRunner:
        runner: ModelRunner = self.runner_factory(device)
        return runner
