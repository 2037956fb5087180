"""Worker pool of one model version: threads that run batches off the event loop.

Why threads, not processes: torch releases the GIL inside operators, so a worker thread runs the
forward pass while the event loop keeps serving gRPC I/O, and workers share one CPU copy of the
weights. The registry owns one pool per version; the RPC layer only sees `submit()`.
Results go back to the loop with one call_soon_threadsafe per batch, not per request.
The only call in flight, to a cheap `default`-handler model, skips the threads and runs on the loop
(fastpath.py says when: the hand-off costs more than such a forward pass).
A watchdog on the loop enforces response_timeout: the stuck batch fails with DEADLINE_EXCEEDED
and a fresh worker replaces the stuck one (a Python thread cannot be killed; it is abandoned
and exits when its call returns).

One process, not several: a second server process or worker processes measured no gain above the
run-to-run noise on the benchmark machine, each would hold its own copy of torch and the weights,
and the kernel spreads connections, not calls, while TorchServe's clients multiplex every call on
one channel. Scale out with pod replicas instead (transport.py keeps grpc.so_reuseport=0, so a
second server on a busy port fails). The measurements: benchmarks/RESULTS.md, "Threads in one process".
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..errors import ErrorKind, ModelFleetError, Reason, load_failed
from .batching import Job, JobQueue, StreamSink, queue_full
from .contracts import LoadedModel, ModelRunner, Request, SequenceContext
from .fastpath import InlineGate
from .handlers import DEFAULT

log = logging.getLogger(__name__)

_worker_ids = itertools.count(9000)  # TorchServe numbers its workers from 9000


STREAM_WINDOW = 64
"""Streamed responses a handler may produce ahead of what its client has read."""
STREAM_STALL_S = 30.0
"""How long a handler waits for its client to read before the stream is stopped."""


def _open_fully(window: threading.BoundedSemaphore) -> None:
    while True:
        try:
            window.release()
        except ValueError:  # back at its bound: nothing is waiting any more
            return


def _deadline_passed() -> ModelFleetError:
    return ModelFleetError(
        ErrorKind.DEADLINE_EXCEEDED, Reason.DEADLINE_PASSED, "Client deadline passed before the request ran"
    )


def _unexpected() -> ModelFleetError:
    """What callers see of a failure inside the model run (the traceback goes to the log)."""
    return ModelFleetError(ErrorKind.INTERNAL, Reason.INTERNAL, "Internal server error")


def _yield_wake_ups_to_the_loop() -> None:
    """Put the calling worker thread in SCHED_BATCH (Linux): waking it no longer preempts the event loop.

    Why: every batch starts with the loop waking a worker. Under the default policy the woken worker
    preempts the loop thread on its CPU, finds the GIL taken and sleeps again: two context switches
    and a cold cache for nothing, per batch (the loop saw ~5 involuntary switches per request).
    SCHED_BATCH only drops that wake-up preemption (same nice level, same CPU share, an idle CPU still
    runs the worker at once), so the worker runs when the loop next blocks or on the other core, and
    requests that arrive meanwhile join its batch. Measured (tiny, c=32, 6 interleaved pairs, load
    3.6-6.5, /tmp/prof/ab.sh of the performance work): server CPU 0.450-0.497 -> 0.347-0.380 ms/request
    (medians), mean batch 1.5-1.9 -> 2.4-4.3, req/s 1683-1732 -> 1793-1804 (medians); mlp c=32 (2 pairs):
    0.59 -> 0.42-0.50 ms/request; c=1 p50 unchanged (0.76 vs 0.75 ms, 3 pairs).
    Unprivileged and never an error: where the policy is missing or refused the thread stays as it was.
    """
    set_policy = getattr(os, "sched_setscheduler", None)
    policy = getattr(os, "SCHED_BATCH", None)
    if set_policy is None or policy is None:
        return
    try:
        set_policy(0, policy, os.sched_param(0))  # pid 0: the calling thread only (Linux)
    except OSError:
        pass


BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


@dataclass
class WorkerStats:
    """Counters one worker thread updates per batch; only that thread writes them, so no lock.

    Metrics are summed over workers at scrape time, so the request path pays nothing for them.
    """

    requests: int = 0
    errors: int = 0
    batches: int = 0
    inference_us: float = 0.0
    queue_us: float = 0.0
    batch_size_counts: list[int] = field(default_factory=lambda: [0] * (len(BATCH_SIZE_BUCKETS) + 1))
    batch_size_sum: int = 0

    def record(self, size: int, errors: int, *, queue_us: float, inference_us: float) -> None:
        self.requests += size
        self.errors += errors
        self.batches += 1
        self.batch_size_sum += size
        self.queue_us += queue_us
        self.inference_us += inference_us
        self.batch_size_counts[bisect.bisect_left(BATCH_SIZE_BUCKETS, size)] += 1

    def add(self, other: WorkerStats) -> None:
        self.requests += other.requests
        self.errors += other.errors
        self.batches += other.batches
        self.batch_size_sum += other.batch_size_sum
        self.queue_us += other.queue_us
        self.inference_us += other.inference_us
        for index, count in enumerate(other.batch_size_counts):
            self.batch_size_counts[index] += count


@dataclass(frozen=True)
class WorkerInfo:
    """One worker as DescribeModel reports it."""

    id: str
    start_time: str
    status: str
    device: str
    pid: int


class Worker:
    """One thread that takes batches from the version's queue and runs them on its device."""

    def __init__(self, pool: WorkerPool, device: str) -> None:
        self.pool = pool
        self.device = device
        self.id = str(next(_worker_ids))
        self.started_at = datetime.now(UTC)
        self.status = "STARTING"
        self.busy_since: float | None = None
        self.current: list[Job] = []
        self.abandoned = False
        self.stats = WorkerStats()
        self.warmed_up = False
        """True once warm-up ran a zero-input forward on this worker's device (see warm_up)."""
        self._stop = False
        self._thread = threading.Thread(target=self._run, name=f"worker-{pool.name}-{self.id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop = True

    def should_stop(self) -> bool:
        return self._stop or self.abandoned

    def info(self) -> WorkerInfo:
        stamp = self.started_at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{self.started_at.microsecond // 1000:03d}Z"
        return WorkerInfo(self.id, stamp, self.status, self.device, os.getpid())

    @property
    def thread_id(self) -> int | None:
        """The OS thread id of this worker (None before it starts)."""
        return self._thread.native_id

    def _run(self) -> None:
        pool = self.pool
        _yield_wake_ups_to_the_loop()
        try:
            runner = pool.loaded.make_runner(self.device)
        except Exception:
            log.exception("worker %s of %s failed to start on %s", self.id, pool.name, self.device)
            self.status = "FAILED"
            pool.post(pool.worker_exited, self)
            return
        self.warm_up(runner)
        self.status = "READY"
        pool.post(pool.worker_changed)
        queue = pool.queue
        clock = time.monotonic
        while True:
            batch = queue.take(self.should_stop, self.id)
            if batch is None:
                break
            try:
                self._run_batch(runner, batch, clock())
            finally:
                queue.finished(leaving=self.should_stop())
            if self.abandoned:
                return  # the watchdog replaced this worker and failed its batch
        self.status = "STOPPED"
        pool.post(pool.worker_exited, self)

    def warm_up(self, runner: ModelRunner) -> None:
        """Let the runner prepare its device and run a zero-input forward before this worker is READY.

        Optional (runners without `warm_up` skip it); a failure is logged, and the worker serves
        anyway: requests show a real problem with their own error, a warm-up quirk (a model that
        refuses zeros) must not take the version down.
        """
        warm_up: Callable[[], bool] | None = getattr(runner, "warm_up", None)
        if warm_up is None:
            return
        try:
            self.warmed_up = warm_up()
        except Exception as exc:
            log.warning(
                "warm-up of worker %s of %s on %s failed (serving anyway): %s",
                self.id,
                self.pool.name,
                self.device,
                exc,
            )

    def _run_batch(self, runner: ModelRunner, batch: list[Job], now: float) -> None:
        live: list[Job] = []
        dropped: list[Job] = []
        streams: list[Job] = []
        for job in batch:
            if job.action is not None:
                self._run_action(job)
                continue
            # Reading done() from this thread is a plain attribute read; a stale answer only
            # means we run a request whose caller just left, which is harmless.
            if job.future.done():
                continue
            if job.deadline is not None and job.deadline <= now:
                dropped.append(job)
            elif job.stream is not None:
                streams.append(job)
            else:
                live.append(job)
        if dropped:
            self.pool.post(self.pool.deliver, dropped, [_deadline_passed()] * len(dropped))
        for job in streams:
            self._run_stream(runner, job)
        if not live:
            return
        self.current = live
        started = self.busy_since = time.monotonic()
        results = run_inputs(runner, [job.inputs for job in live], self.pool.name)
        finished = time.monotonic()
        self.pool.inline.observe(finished - started, len(live))
        self.busy_since = None
        self.current = []
        if not self.abandoned:
            # Counted before the answers go back: a client that got its answer and then scrapes
            # /metrics must find its request counted.
            self.stats.record(
                len(live),
                sum(1 for result in results if isinstance(result, BaseException)),
                queue_us=sum(started - job.enqueued for job in live) * 1e6,
                inference_us=sum(finished - job.enqueued for job in live) * 1e6,
            )
            self.pool.post(self.pool.deliver, live, results)

    def _run_action(self, job: Job) -> None:
        assert job.action is not None
        try:
            job.action()
        except Exception:
            log.exception("a sequence release of %s failed", self.pool.name)
        self.pool.post(self.pool.deliver, [job], [b""])

    def _run_stream(self, runner: ModelRunner, job: Job) -> None:
        """One streaming request: each response goes out as it comes; the future then says how it ended."""
        sink = job.stream
        assert sink is not None
        self.current = [job]
        started = self.busy_since = time.monotonic()
        result: bytes | ModelFleetError = b""
        chunks = runner.run_stream(Request(job.inputs, sink.sequence))
        try:
            for chunk in chunks:
                if sink.cancelled or self.abandoned:
                    break
                sink.emit(chunk)
        except ModelFleetError as exc:
            result = exc
        except Exception:
            log.exception("model %s failed on a streaming request", self.pool.name)
            result = _unexpected()
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()  # a generator left early (client gone): run its finally blocks now
        finished = time.monotonic()
        self.busy_since = None
        self.current = []
        if not self.abandoned:
            self.stats.record(
                1,
                int(isinstance(result, ModelFleetError)),
                queue_us=(started - job.enqueued) * 1e6,
                inference_us=(finished - job.enqueued) * 1e6,
            )
            self.pool.post(self.pool.deliver, [job], [result])


def run_inputs(runner: ModelRunner, inputs: list[Mapping[str, bytes]], name: str) -> list[bytes | ModelFleetError]:
    """One result per input, in order (worker threads, and the loop for an inline request)."""
    outcome = _run_inputs(runner, inputs, name)
    if isinstance(outcome, list):
        return outcome
    if len(inputs) == 1:
        return [outcome]
    # The runner failed the whole batch (runners answer bad inputs per slot, so this is a handler
    # bug one input set off): each runs alone so only that request fails.
    results: list[bytes | ModelFleetError] = []
    for one in inputs:
        alone = _run_inputs(runner, [one], name)
        results.append(alone[0] if isinstance(alone, list) else alone)
    return results


def _run_inputs(
    runner: ModelRunner, inputs: list[Mapping[str, bytes]], name: str
) -> list[bytes | ModelFleetError] | ModelFleetError:
    """The runner's results, or the one error standing for all of them when it raised."""
    try:
        results = runner.run_batch(inputs)
        if len(results) != len(inputs):
            raise RuntimeError(f"runner returned {len(results)} results for {len(inputs)} inputs")
        return list(results)
    except ModelFleetError as exc:
        return exc
    except Exception:
        log.exception("model %s failed on a batch of %d", name, len(inputs))
        return _unexpected()


def _run_quietly(action: Callable[[], None]) -> None:
    try:
        action()
    except Exception:
        log.exception("a sequence release failed")


class WorkerPool:
    """The workers and queue of one model version. Methods without a thread note run on the event loop."""

    def __init__(
        self,
        *,
        name: str,
        loaded: LoadedModel,
        queue: JobQueue,
        response_timeout_s: float,
        loop: asyncio.AbstractEventLoop,
        on_change: Callable[[], None],
        next_device: Callable[[], str],
    ) -> None:
        self.name = name
        self.loaded = loaded
        self.queue = queue
        self.response_timeout_s = response_timeout_s
        self.loop = loop
        self._on_change = on_change
        self._next_device = next_device
        self.workers: list[Worker] = []
        self._watchdog: asyncio.TimerHandle | None = None
        self._ready_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._inline_stats = WorkerStats()
        """Counters of the requests run on the loop thread (fastpath.py); written on the loop only."""
        self._counted: tuple[WorkerStats, ...] = (WorkerStats(), self._inline_stats)
        """[0]: totals of retired workers; [1]: the inline runs'; then the stats of every worker not yet
        retired (stopping ones included). Replaced as a whole on the loop, so a scrape from another
        thread always sums a consistent snapshot and the Prometheus counters never dip (a dip reads as
        a counter reset)."""
        self.rejected = 0
        self.closed = False
        self._staged: list[Job] = []
        self._flush_scheduled = False
        self.on_worker_gone: Callable[[str], None] | None = None
        """Told a worker's id when it stops or is replaced (the sequence table releases its sequences)."""
        self.inline = InlineGate()
        """Fed every run's cost; asked whether a lone request may run on the loop (fastpath.py)."""
        self._inline_runner: ModelRunner | None = None
        # The built-in tensor pipeline only, and not in TorchServe's fixed mode (fastpath.py).
        self._inline_allowed = loaded.handler_name == DEFAULT and queue.policy.adaptive
        self._cpu_only = True
        """Every worker runs on the CPU (an inline run uses the loop thread's CPU); set by scale()."""

    # ---- request path -------------------------------------------------------------------
    def submit(
        self,
        inputs: Mapping[str, bytes],
        deadline: float | None,
        *,
        stream: StreamSink | None = None,
        owner: str | None = None,
    ) -> asyncio.Future[bytes]:
        """Queue one request; the returned future resolves with its bytes or a ModelFleetError.

        `stream`: a streaming request (see stream()); `owner`: run it on that worker only (a sequence's).
        """
        if owner is not None:
            future_pinned: asyncio.Future[bytes] = self.loop.create_future()
            self.queue.put_pinned(owner, Job(inputs, future_pinned, deadline, stream=stream))
            return future_pinned
        if not self.workers:
            raise ModelFleetError(
                ErrorKind.UNAVAILABLE, Reason.NO_WORKERS, f"Model {self.name} has no workers; scale it up"
            )
        queue = self.queue
        if len(queue) + len(self._staged) >= queue.capacity:
            self.rejected += 1
            raise queue_full(queue.capacity)
        future: asyncio.Future[bytes] = self.loop.create_future()
        self._staged.append(Job(inputs, future, deadline, stream=stream))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)
        return future

    async def stream(
        self,
        inputs: Mapping[str, bytes],
        deadline: float | None,
        *,
        sequence: SequenceContext | None = None,
        owner: str | None = None,
    ) -> AsyncIterator[bytes]:
        """The responses of one streaming request, each as soon as the worker produces it."""
        chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
        loop = self.loop
        # Backpressure: a handler may run ahead of its client by STREAM_WINDOW responses, no more, so
        # a client that stops reading cannot make the server buffer without bound.
        window = threading.BoundedSemaphore(STREAM_WINDOW)

        def emit(chunk: bytes) -> None:  # worker thread
            if not window.acquire(timeout=STREAM_STALL_S):
                raise ModelFleetError(
                    ErrorKind.DEADLINE_EXCEEDED,
                    Reason.RESPONSE_TIMEOUT,
                    f"the client read none of {self.name}'s last {STREAM_WINDOW} streamed responses for "
                    f"{STREAM_STALL_S:g} s; the stream was stopped",
                )
            try:
                loop.call_soon_threadsafe(chunks.put_nowait, chunk)
            except RuntimeError:  # loop closed during shutdown
                pass

        sink = StreamSink(emit, sequence)
        future = self.submit(inputs, deadline, stream=sink, owner=owner)
        # Runs after every response the worker posted before its final deliver (one FIFO of callbacks).
        future.add_done_callback(lambda _: chunks.put_nowait(None))
        try:
            while (chunk := await chunks.get()) is not None:
                window.release()
                yield chunk
            future.result()  # raises the request's error, if any
        finally:
            sink.cancelled = True
            _open_fully(window)  # a worker blocked on a full window sees `cancelled` at once
            if not future.done():
                future.cancel()  # a worker skips it, or stops it at its next response

    def inline_ready(self, inputs: Mapping[str, bytes]) -> bool:
        """Whether this request may run on the loop now; the caller has checked it is the only call in flight."""
        queue = self.queue
        return (
            self._inline_allowed
            and self._cpu_only
            and bool(self.workers)
            and not queue.busy_workers
            and not len(queue)
            and not self._staged
            and self.inline.admits(inputs)
            and self._loop_runner() is not None
        )

    def _loop_runner(self) -> ModelRunner | None:
        """The loop thread's own runner, made on first use; None (and the fast path off) if it cannot be."""
        if self._inline_runner is None and self.inline.enabled:
            try:
                self._inline_runner = self.loaded.make_runner("cpu")
            except Exception:
                log.exception("no loop-thread runner for %s; its requests all go to the workers", self.name)
                self.inline.enabled = False
        return self._inline_runner

    def run_inline(self, inputs: Mapping[str, bytes], deadline: float | None) -> bytes:
        """Run one request on the loop thread, now (after inline_ready said yes); raises its error."""
        started = time.monotonic()
        if deadline is not None and deadline <= started:
            raise _deadline_passed()
        runner = self._inline_runner
        assert runner is not None  # made by inline_ready
        result = run_inputs(runner, [inputs], self.name)[0]
        finished = time.monotonic()
        self.inline.observe(finished - started, 1)
        self._inline_stats.record(
            1, int(isinstance(result, ModelFleetError)), queue_us=0.0, inference_us=(finished - started) * 1e6
        )
        if isinstance(result, ModelFleetError):
            raise result
        return result

    @property
    def inline_requests(self) -> int:
        """Requests run on the event-loop thread (fastpath.py) rather than by a worker."""
        return self._inline_stats.requests

    def run_on(self, owner: str, action: Callable[[], None]) -> None:
        """Run `action` on worker `owner`'s thread after the jobs already pinned to it (sequence releases)."""
        self.queue.put_pinned(owner, Job({}, self.loop.create_future(), None, action=action))

    def _settle(self, jobs: Sequence[Job], error: ModelFleetError) -> None:
        """Fail jobs no worker will run; actions (releases) still run, on a pool thread."""
        failed = [job for job in jobs if job.action is None]
        self.deliver(failed, [error] * len(failed))
        for job in jobs:
            if job.action is not None and not job.future.done():
                job.future.set_result(b"")
                self.loop.run_in_executor(None, _run_quietly, job.action)

    def _worker_gone(self, worker: Worker) -> None:
        """A worker stopped or was replaced: its sequences end and the jobs pinned to it fail."""
        if self.on_worker_gone is not None:
            self.on_worker_gone(worker.id)
        left = self.queue.drop_pinned(worker.id)
        if left:
            self._settle(
                left,
                ModelFleetError(
                    ErrorKind.UNAVAILABLE, Reason.NO_WORKERS, f"The worker of this sequence of {self.name} stopped"
                ),
            )

    def _flush(self) -> None:
        """Hand every request staged during this loop iteration to the workers at once.

        Why: waking a worker thread costs a context switch and a GIL hand-off, far more than a
        tiny model's forward pass. Requests that arrive in the same event-loop iteration go to
        the queue together with one wake-up, so they can share a batch, and a lone request
        waits only for the end of the current iteration (microseconds), never for a timer.
        """
        self._flush_scheduled = False
        staged, self._staged = self._staged, []
        if self.closed:
            return
        self.queue.put_many(staged)

    def post(self, callback: Callable[..., Any], *args: Any) -> None:
        """Run callback on the event loop (worker threads only)."""
        try:
            self.loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # loop closed during shutdown
            pass

    @staticmethod
    def deliver(jobs: Sequence[Job], results: Sequence[bytes | BaseException]) -> None:
        for job, result in zip(jobs, results):
            future = job.future
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)

    def stats(self) -> WorkerStats:
        """Totals over current, stopping and retired workers (read at scrape time; slightly stale is fine)."""
        total = WorkerStats()
        for stats in self._counted:
            total.add(stats)
        return total

    def _count(self, worker: Worker) -> None:
        self._counted = (*self._counted, worker.stats)

    def _retire(self, worker: Worker) -> None:
        """Fold a finished worker's counters into the retired totals (its thread no longer writes them)."""
        if not any(stats is worker.stats for stats in self._counted[1:]):
            return
        folded = WorkerStats()
        folded.add(self._counted[0])
        folded.add(worker.stats)
        self._counted = (folded, *(stats for stats in self._counted[1:] if stats is not worker.stats))

    # ---- workers --------------------------------------------------------------------------
    @property
    def ready_count(self) -> int:
        return sum(1 for worker in self.workers if worker.status == "READY")

    def scale(self, target: int) -> None:
        """Start or stop workers until `target` run; stopped ones finish their current batch first."""
        while len(self.workers) < target:
            worker = Worker(self, self._next_device())
            self.workers.append(worker)
            self._count(worker)
            worker.start()
        while len(self.workers) > target:
            worker = self.workers.pop()
            worker.stop()  # still counted; its stats are folded in when its thread exits (worker_exited)
            self._worker_gone(worker)
        self._cpu_only = all(worker.device == "cpu" for worker in self.workers)
        self.queue.wake_all()
        self._arm_watchdog()
        self._on_change()

    async def wait_ready(self, count: int, timeout_s: float | None) -> None:
        """Wait until at least `count` workers are READY (ScaleWorker/RegisterModel synchronous)."""
        if self.ready_count >= count:
            return
        if count > len(self.workers):  # some already failed to start; they are not restarted
            raise load_failed(f"Only {len(self.workers)} of {count} workers of {self.name} started; see the server log")
        future: asyncio.Future[None] = self.loop.create_future()
        self._ready_waiters.append((count, future))
        try:
            await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            raise ModelFleetError(
                ErrorKind.DEADLINE_EXCEEDED,
                Reason.LOAD_TIMEOUT,
                f"Workers of {self.name} not ready within {timeout_s:g}s",
            ) from None
        finally:
            self._ready_waiters = [(n, f) for n, f in self._ready_waiters if f is not future]

    def worker_changed(self) -> None:
        ready = self.ready_count
        for count, future in self._ready_waiters:
            if ready >= count and not future.done():
                future.set_result(None)
        self._on_change()

    def worker_exited(self, worker: Worker) -> None:
        self._retire(worker)
        self._worker_gone(worker)  # again: jobs may have been pinned to it while it finished
        if worker in self.workers:  # died by itself (failed start): keep the count honest
            self.workers.remove(worker)
            # Failed workers are not restarted, so a wait for more workers than are left can never
            # end: fail it now (TorchServe: "Failed to start workers") instead of at the timeout.
            error = load_failed(f"A worker of {self.name} failed to start on {worker.device}; see the server log")
            for count, future in self._ready_waiters:
                if count > len(self.workers) and not future.done():
                    future.set_exception(error)
        self.worker_changed()

    # ---- response timeout ----------------------------------------------------------------
    def _arm_watchdog(self) -> None:
        if self._watchdog is None and self.workers and not self.closed:
            period = min(1.0, max(0.05, self.response_timeout_s / 10))
            self._watchdog = self.loop.call_later(period, self._check_stuck)

    def _check_stuck(self) -> None:
        self._watchdog = None
        now = time.monotonic()
        for worker in list(self.workers):
            since = worker.busy_since
            if since is None or now - since <= self.response_timeout_s:
                continue
            log.error(
                "worker %s of %s exceeded response timeout %gs; replacing it",
                worker.id,
                self.name,
                self.response_timeout_s,
            )
            worker.abandoned = True
            jobs = worker.current
            error = ModelFleetError(
                ErrorKind.DEADLINE_EXCEEDED,
                Reason.RESPONSE_TIMEOUT,
                f"Model {self.name} did not respond within {self.response_timeout_s:g}s",
            )
            self.deliver(jobs, [error] * len(jobs))
            self._retire(worker)
            self._worker_gone(worker)
            index = self.workers.index(worker)
            replacement = Worker(self, worker.device)
            self.workers[index] = replacement
            self._count(replacement)
            replacement.start()
            self._on_change()
        self._arm_watchdog()

    # ---- lifecycle -------------------------------------------------------------------------
    def close(self, error: ModelFleetError) -> None:
        """Stop all workers and fail every queued job with `error` (unregister, shutdown)."""
        self.closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        for worker in self.workers:
            worker.stop()
        self.workers = []
        left = self.queue.close() + self._staged
        self._staged = []
        self._settle(left, error)
        for _, future in self._ready_waiters:
            if not future.done():
                future.set_exception(error)
        self._on_change()

    def describe_workers(self) -> list[WorkerInfo]:
        return [worker.info() for worker in self.workers]
