"""Open sequences of one model version (TorchServe 0.12's sequence batching on StreamPredictions2).

Owned by the registry, one table per version whose handler is stateful. A sequence is pinned to
one worker when it opens; its requests run there one at a time, in order, with its SequenceContext.
State is released on the sequence's end, after an idle timeout, on its client's disconnect, when
its worker stops and on unregister; the handler's end_sequence then runs on that worker's thread.
Runs on the event loop only; never blocks it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field

from ..errors import ErrorKind, ModelFleetError, Reason
from .contracts import ModelHandler, SequenceContext
from .workers import WorkerPool

log = logging.getLogger(__name__)

END, IDLE, DISCONNECT, UNREGISTER, WORKER = "end", "idle", "disconnect", "unregister", "worker"
"""Why a sequence was released (SequenceContext.released)."""


@dataclass(frozen=True)
class SequenceRequest:
    """A StreamPredictions2 request's sequence fields, markers already taken out of its inputs."""

    sequence_id: str
    start: bool = False
    """ts_request_sequence_start: begin a new sequence under this id (state starts empty)."""
    end: bool = False
    """ts_request_sequence_end: release the sequence after this request."""


@dataclass(eq=False)
class _Open:
    context: SequenceContext
    owner: str
    """The worker id every request of the sequence runs on."""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    active: int = 0
    """Requests running or waiting for the lock: an active sequence never idles out."""
    last_used: float = field(default_factory=time.monotonic)


class SequenceSession:
    """The sequences one StreamPredictions2 call used, so a disconnect releases them."""

    def __init__(self) -> None:
        self._used: dict[tuple[int, str], SequenceTable] = {}

    def add(self, table: SequenceTable, sequence_id: str) -> None:
        self._used[(id(table), sequence_id)] = table

    def disconnect(self) -> None:
        for (_, sequence_id), table in self._used.items():
            table.release(sequence_id, DISCONNECT)
        self._used.clear()


class SequenceTable:
    """The open sequences of one version (see module docstring)."""

    def __init__(
        self,
        *,
        name: str,
        pool: WorkerPool,
        handler: ModelHandler,
        idle_timeout_s: float,
        max_sequences: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._pool = pool
        self._handler = handler
        self.idle_timeout_s = idle_timeout_s
        self.max_sequences = max_sequences
        self._clock = clock
        self._open: dict[str, _Open] = {}
        self._sweeper: asyncio.TimerHandle | None = None
        pool.on_worker_gone = self._worker_gone

    def __len__(self) -> int:
        return len(self._open)

    def __contains__(self, sequence_id: object) -> bool:
        return sequence_id in self._open

    async def run(
        self,
        request: SequenceRequest,
        inputs: Mapping[str, bytes],
        *,
        deadline: float | None,
        session: SequenceSession | None,
    ) -> AsyncIterator[bytes]:
        """The responses of one request of a sequence, run on the sequence's worker with its state."""
        sequence_id = request.sequence_id
        seq = self._open.get(sequence_id)
        if seq is not None and request.start:
            self.release(sequence_id, END)  # a new start under a used id begins afresh
            seq = None
        opened = seq is None
        if seq is None:
            seq = self._open_sequence(sequence_id)
        if session is not None:
            session.add(self, sequence_id)
        seq.active += 1
        try:
            async with seq.lock:
                if self._open.get(sequence_id) is not seq:
                    raise ModelFleetError(
                        ErrorKind.UNAVAILABLE,
                        Reason.NO_WORKERS,
                        f"Sequence {sequence_id} of {self.name} was released ({seq.context.released}) "
                        "while this request waited; send it again to open a new sequence",
                    )
                context = seq.context
                context.started = opened
                context.ending = request.end
                async for chunk in self._pool.stream(inputs, deadline, sequence=context, owner=seq.owner):
                    yield chunk
                if request.end or context.end_requested:
                    self.release(sequence_id, END)
        finally:
            seq.active -= 1
            seq.last_used = self._clock()

    def _open_sequence(self, sequence_id: str) -> _Open:
        if len(self._open) >= self.max_sequences:
            raise ModelFleetError(
                ErrorKind.RESOURCE_EXHAUSTED,
                Reason.LIMIT_EXCEEDED,
                f"Model {self.name} has no capacity for sequence {sequence_id}: {self.max_sequences} sequences "
                "are open (--max-sequences); end one (ts_request_sequence_end) or wait for one to idle out",
                metadata={"limit": str(self.max_sequences), "sequenceId": sequence_id},
            )
        owner = self._pick_worker()
        seq = self._open[sequence_id] = _Open(SequenceContext(sequence_id), owner, last_used=self._clock())
        self._arm_sweeper()
        return seq

    def _pick_worker(self) -> str:
        """The ready worker holding the fewest sequences (a starting one if none is ready yet)."""
        workers = [w for w in self._pool.workers if w.status == "READY"] or list(self._pool.workers)
        if not workers:
            raise ModelFleetError(
                ErrorKind.UNAVAILABLE, Reason.NO_WORKERS, f"Model {self.name} has no workers; scale it up"
            )
        load = {w.id: 0 for w in workers}
        for seq in self._open.values():
            if seq.owner in load:
                load[seq.owner] += 1
        return min(workers, key=lambda w: load[w.id]).id

    def release(self, sequence_id: str, reason: str) -> None:
        """Drop a sequence's state; the handler's end_sequence runs on its worker after its running request."""
        seq = self._open.pop(sequence_id, None)
        if seq is None:
            return
        context = seq.context
        context.released = reason
        log.debug("sequence %s of %s released (%s)", sequence_id, self.name, reason)
        handler = self._handler

        def end() -> None:
            try:
                handler.end_sequence(context)
            finally:
                context.state.clear()

        if reason != WORKER and any(w.id == seq.owner for w in self._pool.workers) and not self._pool.closed:
            self._pool.run_on(seq.owner, end)
        else:
            self._pool.loop.run_in_executor(None, _quietly, end)

    def _worker_gone(self, worker_id: str) -> None:
        for sequence_id in [sid for sid, seq in self._open.items() if seq.owner == worker_id]:
            self.release(sequence_id, WORKER)

    def close(self) -> None:
        """Unregister or shutdown: release every sequence (before the pool closes, so hooks run on workers)."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for sequence_id in list(self._open):
            self.release(sequence_id, UNREGISTER)

    # ---- idle timeout ---------------------------------------------------------------------------
    def _arm_sweeper(self) -> None:
        if self._sweeper is None and self._open:
            period = min(1.0, max(0.01, self.idle_timeout_s / 4))
            self._sweeper = self._pool.loop.call_later(period, self._sweep)

    def _sweep(self) -> None:
        self._sweeper = None
        now = self._clock()
        for sequence_id, seq in list(self._open.items()):
            if seq.active == 0 and now - seq.last_used >= self.idle_timeout_s:
                self.release(sequence_id, IDLE)
        self._arm_sweeper()


def _quietly(action: Callable[[], None]) -> None:
    try:
        action()
    except Exception:
        log.exception("a sequence release failed")
