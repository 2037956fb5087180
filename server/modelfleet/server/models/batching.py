"""The bounded job queue of one model version and the rule that turns queued jobs into batches.

The event loop puts jobs (never blocking: a full queue is refused at once); worker threads take
batches. Batch formation happens in the worker that is free, so it costs no event-loop work:
- adaptive (default): a free worker takes everything queued, up to batch_size, at once. A lone
  request never waits for company that is not coming; under load, requests pile up while the
  workers are busy and the next free worker takes them together, so batches grow with load.
- fixed (TorchServe's behaviour): a free worker waits until batch_size jobs are queued or the
  oldest has waited max_batch_delay.
`BatchPolicy.decide` is pure and takes the clock reading as an argument, so tests check the delay
rule with an injected clock and no timing.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ErrorKind, ModelFleetError, Reason


@dataclass(eq=False)
class Job:
    """One request waiting for a worker. `deliver` runs on the event loop with a result or an error."""

    inputs: Mapping[str, bytes]
    future: Any
    """The asyncio.Future the caller awaits (touched only on the event loop)."""
    deadline: float | None
    """time.monotonic() after which the client no longer waits; the job is dropped, not run."""
    enqueued: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class BatchPolicy:
    batch_size: int
    max_delay_s: float
    adaptive: bool

    def decide(self, pending: int, oldest_enqueued: float, now: float) -> float:
        """0.0 = take a batch now; > 0 = seconds to wait for more; -1.0 = nothing queued, wait for a put."""
        if pending == 0:
            return -1.0
        if pending >= self.batch_size or self.adaptive:
            return 0.0
        remaining = oldest_enqueued + self.max_delay_s - now
        return 0.0 if remaining <= 0 else remaining


def queue_full(capacity: int) -> ModelFleetError:
    return ModelFleetError(
        ErrorKind.RESOURCE_EXHAUSTED,
        Reason.QUEUE_FULL,
        f"Model job queue is full ({capacity} requests waiting); retry later or add workers",
    )


class JobQueue:
    """Thread-safe bounded FIFO shared by a version's workers."""

    def __init__(
        self, *, capacity: int, policy: BatchPolicy, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.capacity = capacity
        self.policy = policy
        self._clock = clock
        self._jobs: deque[Job] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._waiting_workers = 0
        self._closed = False

    def __len__(self) -> int:
        return len(self._jobs)

    def put(self, job: Job) -> None:
        """Queue a job or raise QUEUE_FULL at once (never blocks the event loop for long)."""
        with self._cond:
            if len(self._jobs) >= self.capacity:
                raise queue_full(self.capacity)
            self._jobs.append(job)
            if self._waiting_workers:
                self._cond.notify()

    def put_many(self, jobs: list[Job]) -> None:
        """Queue jobs the caller already counted against the capacity; wake as few workers as needed."""
        if not jobs:
            return
        with self._cond:
            self._jobs.extend(jobs)
            if self._waiting_workers:
                # One worker per batch's worth of jobs; a woken worker wakes another if work is left.
                self._cond.notify(min(self._waiting_workers, -(-len(self._jobs) // self.policy.batch_size)))

    def try_take(self, now: float) -> list[Job] | float:
        """A batch if the policy says so now, else how long to wait (-1.0: until a put)."""
        with self._cond:
            return self._try_take_locked(now)

    def _try_take_locked(self, now: float) -> list[Job] | float:
        jobs = self._jobs
        wait = self.policy.decide(len(jobs), jobs[0].enqueued if jobs else now, now)
        if wait != 0.0:
            return wait
        size = min(len(jobs), self.policy.batch_size)
        return [jobs.popleft() for _ in range(size)]

    def take(self, should_stop: Callable[[], bool]) -> list[Job] | None:
        """Block until a batch is due (worker threads only); None once should_stop() or close()."""
        with self._cond:
            while True:
                if self._closed or should_stop():
                    return None
                batch = self._try_take_locked(self._clock())
                if isinstance(batch, list):
                    if self._jobs and self._waiting_workers:
                        self._cond.notify()  # more work left: wake another idle worker
                    return batch
                self._waiting_workers += 1
                try:
                    self._cond.wait(None if batch < 0 else batch)
                finally:
                    self._waiting_workers -= 1

    def wake_all(self) -> None:
        """Make blocked take() calls re-check should_stop()."""
        with self._cond:
            self._cond.notify_all()

    def close(self) -> list[Job]:
        """Stop handing out batches; return the jobs still queued so the caller can fail them."""
        with self._cond:
            self._closed = True
            left = list(self._jobs)
            self._jobs.clear()
            self._cond.notify_all()
            return left
