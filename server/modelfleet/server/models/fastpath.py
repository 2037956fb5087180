"""The c=1 fast path: the only call in flight server-wide, to a cheap `default`-handler model, runs on the loop.

Why: with one call in flight, handing the request to a worker thread and back costs a futex wake,
two GIL hand-offs, a self-pipe write and an extra loop iteration: more CPU and latency than a small
model's forward pass. registry.predict asks the version's pool (WorkerPool.inline_ready, which asks
its InlineGate) and then LoneCall (server-wide, last: only calls that would run inline count towards
the probe) before it submits. While an inline call runs the loop serves nobody and the
response-timeout watchdog cannot fire, so only calls whose run time is bounded and known to be
small run there:
- the built-in `default` handler only (tensors in, tensors out, no user Python), on CPU workers,
  with adaptive batching (fixed batching is TorchServe's wait-for-a-batch behaviour and keeps it);
- this call is the only one in flight server-wide (inflight.py), none other was in the last 20-40 ms,
  and nothing of its version is queued or running; no stream, no sequence;
- every PROBE_EVERY-th lone call goes to the workers anyway. Why: while calls run inline the loop
  accepts the next one only after answering the last, so a client with 32 calls in flight looks
  exactly like a lone one (the dropped first attempt: mlp at c=32 fell from 1,392 to 975 req/s,
  batches from 5.3 to 1.8). A call on a worker frees the loop: under load the calls waiting in grpc
  enter at once, the server-wide peak rises above one and the fast path stays shut while it lasts;
- an input of at most INLINE_MAX_BYTES, and the version's recent cost per request (a moving average
  over worker and inline runs; unknown until a worker ran one) at most INLINE_BUDGET_S.
Measured (docs/performance.md, round 2): c=1 p50 mlp 1.01 -> 0.86 ms, tiny 0.82 -> 0.73 ms, CPU per
request -17 %; c=8 and c=32 unchanged within the noise, with batching intact.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from .inflight import InFlight

INLINE_BUDGET_S = 0.001
"""Most recent cost per request (s) at which a lone request still runs on the loop thread."""
INLINE_MAX_BYTES = 64 * 1024
"""Largest input (bytes over all entries) run on the loop thread; bigger ones go to a worker."""
PROBE_EVERY = 16
"""Lone calls run inline in a row before one goes to a worker to see whether others are waiting."""
_WEIGHT = 0.2
"""Weight of the newest run in the moving average: about the last five runs count."""


class LoneCall:
    """Server-wide: whether the call that just entered the prediction path is alone (event loop only)."""

    def __init__(
        self, total: InFlight, *, probe_every: int = PROBE_EVERY, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.total = total
        self.probe_every = probe_every
        self._clock = clock
        self._streak = 0
        """Lone calls admitted in a row since the last probe."""

    def admits(self) -> bool:
        total = self.total
        if total.now != 1 or total.peak(self._clock()) > 1:
            self._streak = 0
            return False
        if self._streak >= self.probe_every:
            self._streak = 0
            return False  # this one is the probe
        self._streak += 1
        return True


class InlineGate:
    """Per version: whether a lone request may run on the loop; fed the cost of every run.

    observe() is called from worker threads and the loop; a float assignment is atomic under the
    GIL, and a lost update only delays the average by one run.
    """

    def __init__(self, *, budget_s: float = INLINE_BUDGET_S, max_bytes: int = INLINE_MAX_BYTES) -> None:
        self.budget_s = budget_s
        self.max_bytes = max_bytes
        self.cost_s: float | None = None
        """Moving average of run seconds per request; None until the first run."""
        self.enabled = True
        """False once the loop thread's runner could not be made (never retried)."""

    def observe(self, seconds: float, requests: int) -> None:
        per_request = seconds / max(1, requests)
        cost = self.cost_s
        self.cost_s = per_request if cost is None else cost + _WEIGHT * (per_request - cost)

    def admits(self, inputs: Mapping[str, bytes]) -> bool:
        """The request-side checks; the caller has checked that nothing else is in flight."""
        cost = self.cost_s
        if not self.enabled or cost is None or cost > self.budget_s:
            return False
        size = 0
        for value in inputs.values():
            size += len(value)
        return size <= self.max_bytes
