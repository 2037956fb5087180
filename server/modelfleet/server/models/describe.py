"""What DescribeModel and ListModels report, as typed values the registry returns.

Called by the registry; pure apart from reading this process's RSS. Protocol shapes (TorchServe's
JSON field names, its worker states, its page token) are built from these in rpc/, never here,
so a second protocol can describe the same facts its own way.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .devices import device_index
from .workers import WorkerPool

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass(frozen=True)
class WorkerDescription:
    """One worker of a version."""

    id: str
    start_time: str
    """ISO 8601 UTC with milliseconds, when the worker thread started."""
    status: str
    """The pool's own state: STARTING, READY, FAILED or STOPPED."""
    pid: int
    device_index: int | None
    """The accelerator index the worker runs on; None on the CPU."""
    memory_bytes: int
    """Resident memory of the whole process: workers are threads, so they share it."""


@dataclass(frozen=True)
class VersionDescription:
    """One registered version with its effective settings, workers and queue."""

    name: str
    version: str
    url: str
    engine: str
    min_workers: int
    max_workers: int
    batch_size: int
    max_batch_delay_ms: int
    response_timeout_s: int
    startup_timeout_s: int
    device_ids: tuple[int, ...]
    """Sorted accelerator indexes the workers use; empty on the CPU."""
    stateful: bool
    sequence_idle_timeout_s: float
    """How long an idle sequence stays open; 0 when the handler is not stateful."""
    max_sequences: int
    """Open sequences allowed at once; 0 when the handler is not stateful."""
    loaded_at_startup: bool
    workers: tuple[WorkerDescription, ...]
    queue_pending: int
    """Requests waiting in the version's queue."""
    queue_remaining: int
    """Requests the queue still takes before it refuses (job_queue_size minus pending, at least 0)."""


@dataclass(frozen=True)
class ListedModel:
    """One model on a ListModels page: its name and its default version's URL."""

    name: str
    url: str


@dataclass(frozen=True)
class ModelPage:
    """One page of models in name order."""

    models: tuple[ListedModel, ...]
    next_offset: int | None
    """Offset of the next page; None on the last page."""


def process_rss_bytes() -> int:
    """Resident memory of this process (workers are threads, so they share it)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return 0


def describe_workers(pool: WorkerPool) -> tuple[WorkerDescription, ...]:
    memory = process_rss_bytes()
    return tuple(
        WorkerDescription(
            id=w.id,
            start_time=w.start_time,
            status=w.status,
            pid=w.pid,
            device_index=device_index(w.device),
            memory_bytes=memory,
        )
        for w in pool.describe_workers()
    )
