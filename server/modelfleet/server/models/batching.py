"""The bounded job queue of one model version and the rule that turns queued jobs into batches.

The event loop puts jobs (never blocking: a full queue is refused at once); worker threads take
batches. Batch formation happens in the worker that is free, so it costs no event-loop work:
- adaptive (default): when no worker is running a batch and no more calls of the version are
  expected, a free worker takes everything queued, up to batch_size, at once: a lone request never
  waits for company that is not coming. "Expected" is the version's in-flight count (inflight.py:
  calls inside registry.predict/stream) against its peak over the last 20-40 ms: grpc.aio hands the
  servicer one new call per loop wake-up, so under load most calls are still inside grpc while the
  queue holds a few, and calls answered a moment ago are on their way back from closed-loop
  clients. While calls are expected, a free worker holds back (never beyond max_batch_delay) until
  they are queued, so batches at c=32 grow towards batch_size instead of staying at 4-7. While
  another worker is running a batch, a free worker takes the queue only once half a batch is
  waiting or the oldest job has waited max_batch_delay; until then the busy worker, back within
  about one forward pass, takes the queue itself. So batches grow with load instead of being split
  between workers, a second worker still joins as soon as there is a batch's worth of work for it,
  and no request waits longer than the max_batch_delay its model was registered with.
- fixed (TorchServe's behaviour): a free worker waits until batch_size jobs are queued or the
  oldest has waited max_batch_delay.
`BatchPolicy.decide` is pure and takes the clock reading, the busy-worker count and the expected
calls as arguments, so tests check the rules with an injected clock and no timing.
Jobs of a stateful sequence are *pinned*: they wait in their worker's own deque (put_pinned) and
only that worker takes them, before anything from the shared queue.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ErrorKind, ModelFleetError, Reason
from .contracts import SequenceContext
from .inflight import InFlight


@dataclass(eq=False)
class Job:
    """One request waiting for a worker. `deliver` runs on the event loop with a result or an error."""

    inputs: Mapping[str, bytes]
    future: Any
    """The asyncio.Future the caller awaits (touched only on the event loop)."""
    deadline: float | None
    """time.monotonic() after which the client no longer waits; the job is dropped, not run."""
    enqueued: float = field(default_factory=time.monotonic)
    stream: StreamSink | None = None
    """Set for a streaming request: the worker runs run_stream and sends each response through it;
    the future then resolves with b"" (or the error)."""
    action: Callable[[], None] | None = None
    """Set for work that must run on this worker's thread (a sequence's release); no inputs."""


@dataclass(eq=False)
class StreamSink:
    """Where a worker thread sends one streaming request's responses, in order, as they come."""

    emit: Callable[[bytes], None]
    """Thread-safe: queues one response for the waiting RPC on the event loop."""
    sequence: SequenceContext | None = None
    cancelled: bool = False
    """Set on the event loop when the client left: the worker stops the handler at its next response."""


@dataclass(frozen=True)
class BatchPolicy:
    batch_size: int
    max_delay_s: float
    adaptive: bool

    @property
    def overflow(self) -> int:
        """Queued jobs at which a free worker starts a batch although another worker is busy."""
        return max(2, -(-self.batch_size // 2))

    def decide(self, pending: int, oldest_enqueued: float, now: float, busy_workers: int = 0, coming: int = 0) -> float:
        """0.0 = take a batch now; > 0 = seconds to wait for more; -1.0 = nothing queued, wait for a put.

        `coming`: calls of the version expected to be queued soon (InFlight.coming); adaptive only.
        """
        if pending == 0:
            return -1.0
        if pending >= self.batch_size:
            return 0.0
        if self.adaptive and (pending >= self.overflow or (busy_workers == 0 and coming == 0)):
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

    def __init__(self, *, capacity: int, policy: BatchPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = capacity
        self.policy = policy
        self._clock = clock
        self._jobs: deque[Job] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._waiting_workers = 0
        self._busy_workers = 0
        self._closed = False
        self._pinned: dict[str, deque[Job]] = {}
        """Worker id -> jobs only that worker may run (requests and releases of its sequences)."""
        self.in_flight = InFlight(clock=clock)
        """This version's calls in the prediction path; the registry counts them, batching reads them."""

    def __len__(self) -> int:
        return len(self._jobs)

    def put(self, job: Job) -> None:
        """Queue a job or raise QUEUE_FULL at once (never blocks the event loop for long)."""
        with self._cond:
            if len(self._jobs) >= self.capacity:
                raise queue_full(self.capacity)
            self._jobs.append(job)
            if self._waiting_workers and self._due_after_put(1):
                self._cond.notify()

    def put_many(self, jobs: list[Job]) -> None:
        """Queue jobs the caller already counted against the capacity; wake as few workers as needed."""
        if not jobs:
            return
        with self._cond:
            self._jobs.extend(jobs)
            if self._waiting_workers and self._due_after_put(len(jobs)):
                # One worker per batch's worth of jobs; a woken worker wakes another if work is left.
                self._cond.notify(min(self._waiting_workers, -(-len(self._jobs) // self.policy.batch_size)))

    def put_pinned(self, owner: str, job: Job) -> None:
        """Queue a job for worker `owner` only (never refused: sequences are bounded by their own limit)."""
        with self._cond:
            self._pinned.setdefault(owner, deque()).append(job)
            if self._waiting_workers:
                self._cond.notify_all()  # one condition for all workers: wake them to find the owner

    def drop_pinned(self, owner: str) -> list[Job]:
        """The jobs still pinned to a worker that stopped, so the caller can fail or rerun them."""
        with self._cond:
            return list(self._pinned.pop(owner, ()))

    @property
    def waiting_workers(self) -> int:
        """Workers blocked in take()."""
        return self._waiting_workers

    @property
    def busy_workers(self) -> int:
        """Workers between a take() that returned a batch and their finished() call."""
        return self._busy_workers

    def try_take(self, now: float) -> list[Job] | float:
        """A batch if the policy says so now, else how long to wait (-1.0: until a put).

        A returned batch counts its taker as busy until finished() is called.
        """
        with self._cond:
            return self._try_take_locked(now)

    def _try_take_locked(self, now: float) -> list[Job] | float:
        jobs = self._jobs
        if not jobs:
            return -1.0
        wait = self.policy.decide(len(jobs), jobs[0].enqueued, now, self._busy_workers, self.in_flight.coming(now))
        if wait != 0.0:
            return wait
        size = min(len(jobs), self.policy.batch_size)
        self._busy_workers += 1
        return [jobs.popleft() for _ in range(size)]

    def _due_after_put(self, added: int) -> bool:
        """Whether a put must wake a waiting worker; otherwise the timed wait it is in covers it.

        Waking a worker that only goes back to sleep costs two context switches and a GIL hand-off,
        so a put wakes one only when the queue was empty (its worker sleeps without a timer) or the
        policy would now start a batch.
        """
        pending = len(self._jobs)
        if pending == added or pending >= self.policy.batch_size:
            return True
        if not self.policy.adaptive:
            return False
        return pending >= self.policy.overflow or (
            self._busy_workers == 0 and self.in_flight.coming(self._clock()) == 0
        )

    def finished(self, *, leaving: bool = False) -> None:
        """The caller ran the batch take() gave it (worker threads only; once per batch, stuck ones too).

        A worker that takes again takes the jobs queued meanwhile itself; one that is `leaving`
        (stopped or replaced) wakes a waiting worker that may be holding back for it.
        """
        with self._cond:
            self._busy_workers -= 1
            if leaving and self._jobs and self._waiting_workers:
                self._cond.notify()

    def take(self, should_stop: Callable[[], bool], owner: str | None = None) -> list[Job] | None:
        """Block until a batch is due (worker threads only); None once should_stop() or close().

        Jobs pinned to `owner` come first, as one batch. Call finished() after running the returned batch.
        """
        with self._cond:
            while True:
                if self._closed or should_stop():
                    return None
                pinned = self._pinned.get(owner) if owner is not None else None
                if pinned:
                    self._busy_workers += 1
                    return [pinned.popleft() for _ in range(min(len(pinned), self.policy.batch_size))]
                batch = self._try_take_locked(self._clock())
                if isinstance(batch, list):
                    if self._jobs and self._waiting_workers and self._due_after_put(0):
                        self._cond.notify()  # a batch's worth left: wake another idle worker
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
            for pinned in self._pinned.values():
                left.extend(pinned)
            self._pinned.clear()
            self._cond.notify_all()
            return left
