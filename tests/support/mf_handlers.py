"""A ModelHandler around a plain runner factory, for tests that drive workers with hand-made runners.

On the path through pytest's `pythonpath` (pyproject.toml), as `mf_handlers`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

from modelfleet.server.models.contracts import SequenceContext, StreamRequest


class RunnerHandler:
    """Batch-only handler: no own streaming, no sequence state, nothing to close."""

    stateful = False
    streams = False

    def __init__(self, make: Callable[[str], Any]) -> None:
        self._make = make

    def make_runner(self, device: str) -> Any:
        return self._make(device)

    def open_stream(self, request: StreamRequest) -> AsyncIterator[bytes] | None:
        return None

    def end_sequence(self, sequence: SequenceContext) -> None:
        pass

    def close(self) -> None:
        pass
