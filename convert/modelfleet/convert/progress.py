"""Progress lines for the steps a person waits on (exporting, verifying a large model), on stderr.

Created by __main__ and passed to the pipeline; stdout stays for the report. Every line carries the
time since the start, so a slow step shows itself.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator


class Progress:
    """Announces each step when it starts and how long it took when it ends."""

    def __init__(self, write: Callable[[str], None] | None = None) -> None:
        self._write = write if write is not None else _stderr
        self._started = time.monotonic()

    def say(self, message: str) -> None:
        elapsed = int(time.monotonic() - self._started)
        self._write(f"[convert {elapsed // 60}:{elapsed % 60:02d}] {message}")

    @contextlib.contextmanager
    def step(self, what: str) -> Iterator[None]:
        began = time.monotonic()
        self.say(f"{what} ...")
        outcome = "failed"
        try:
            yield
            outcome = "done"
        finally:
            self.say(f"{what}: {outcome} in {time.monotonic() - began:.1f} s")


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
