"""Calls inside the prediction path, counted server-wide and per model version: the load signal.

grpc.aio hands the servicer one new call per event-loop wake-up, so under load most of a client's
calls wait inside grpc while the job queue holds a few: the queue alone reads 32 calls in flight as
2. The registry counts each call from its entry into predict/stream until its answer is back in its
coroutine (both APIs: TorchServe Predictions and Open Inference ModelInfer go through predict), and
each count keeps its recent peak. Calls that were in flight within the last PEAK_WINDOW_S and are not
now are, for the closed-loop clients that TorchServe and OIP clients are, about to come back:
batching.py holds a free worker back for them, and fastpath.py runs a call on the loop only when
nothing else was in flight anywhere recently. Only the event loop writes a count (plain ints, no
lock); worker threads read it, and a stale read costs at most one batching decision.
"""

from __future__ import annotations

import time
from collections.abc import Callable

PEAK_WINDOW_S = 0.02
"""How long a peak counts (s); the peak is kept over the current and the previous window (20-40 ms).

Long against the time one batch takes to go round (a few ms at c=32), so the peak a burst reached is
still known when its calls come back; short against a change of load, so a lone client that
follows a burst waits at most 40 ms of batching delays before it counts as lone again."""


class InFlight:
    """One count of calls in flight and the highest it was over the last one to two windows."""

    __slots__ = ("now", "_peak", "_previous", "_window_end", "_window", "_clock")

    def __init__(self, *, window_s: float = PEAK_WINDOW_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.now = 0
        """Calls in flight now."""
        self._peak = 0
        """Highest `now` seen in the current window."""
        self._previous = 0
        """Highest `now` seen in the window before it."""
        self._window_end = float("-inf")
        self._window = window_s
        self._clock = clock

    def enter(self) -> None:
        """A call entered the prediction path (event loop only)."""
        self.now += 1
        stamp = self._clock()
        if stamp >= self._window_end:
            self._previous = self._peak if stamp < self._window_end + self._window else 0
            self._peak = 0
            self._window_end = stamp + self._window
        if self.now > self._peak:
            self._peak = self.now

    def leave(self) -> None:
        """The call's answer (or error) is back in its coroutine (event loop only)."""
        self.now -= 1

    def peak(self, stamp: float) -> int:
        """The most calls in flight at once over the last one to two windows before `stamp` (any thread)."""
        end = self._window_end
        if stamp < end:
            return max(self._peak, self._previous, self.now)
        if stamp < end + self._window:
            return max(self._peak, self.now)
        return self.now

    def coming(self, stamp: float) -> int:
        """Calls that were in flight recently and are not now: the ones expected back soon."""
        return max(0, self.peak(stamp) - self.now)
