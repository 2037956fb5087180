"""The one way tests wait for a state: poll the condition until it holds, bounded by a timeout.

Every wait in the suite goes through `eventually` (async tests) or `eventually_sync` (plain tests),
so no test sleeps for a fixed time and hopes; the short pause between checks is the only sleep,
and a condition that never holds fails with what was awaited (and what `diagnose` says).
On the path through pytest's `pythonpath` (pyproject.toml), as `mf_polling`.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any

INTERVAL_S = 0.02
"""Pause between checks: short against every timeout here, long enough not to spin a core."""


async def _resolve(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def eventually(
    predicate: Callable[[], Any],
    *,
    timeout: float,
    what: str = "",
    interval: float = INTERVAL_S,
    diagnose: Callable[[], Any] | None = None,
) -> Any:
    """Poll `predicate` (sync or async) until it returns something truthy, and return that.

    After `timeout` seconds raise AssertionError naming `what` and, if given, `diagnose()`'s
    account of the state (sync or async).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await _resolve(predicate())
        if value:
            return value
        if loop.time() > deadline:
            detail = "" if diagnose is None else f"\n{await _resolve(diagnose())}"
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what or predicate}{detail}")
        await asyncio.sleep(interval)


def eventually_sync(
    predicate: Callable[[], Any], *, timeout: float, what: str = "", interval: float = INTERVAL_S
) -> Any:
    """`eventually` for tests without an event loop (threads, subprocesses)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what or predicate}")
        time.sleep(interval)
