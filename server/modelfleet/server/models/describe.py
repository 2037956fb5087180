"""DescribeModel's JSON element for one version, in TorchServe 0.12's field order and names.

Called by the registry; pure apart from reading this process's RSS. Fields TorchServe leaves
null (and Gson therefore omits: status, metrics, customizedMetadata) are omitted here too.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from .devices import device_index

if TYPE_CHECKING:
    from .registry import ModelVersion

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def process_rss_bytes() -> int:
    """Resident memory of this process (workers are threads, so they share it)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return 0


def describe_version(version: ModelVersion, *, job_queue_size: int) -> dict[str, Any]:
    pool = version.pool
    workers = pool.describe_workers()
    gpu_ids = sorted({i for i in (device_index(w.device) for w in workers) if i is not None})
    memory = process_rss_bytes()
    pending = len(pool.queue)
    sequences = version.sequences
    return {
        "modelName": version.key.name,
        "modelVersion": version.key.version,
        "modelUrl": version.source.url,
        "engine": version.loaded.load_info.engine,
        "runtime": "python",
        "minWorkers": version.min_workers,
        "maxWorkers": version.max_workers,
        "batchSize": version.batch_size,
        "maxBatchDelay": version.max_batch_delay_ms,
        "responseTimeout": version.response_timeout_s,
        "startupTimeout": version.startup_timeout_s,
        "maxRetryTimeoutInSec": 0,
        "clientTimeoutInMills": 0,
        "parallelType": "",
        "parallelLevel": 0,
        "deviceType": "gpu" if gpu_ids else "cpu",
        "deviceIds": gpu_ids,
        "continuousBatching": False,
        "useJobTicket": False,
        "useVenv": False,
        "stateful": sequences is not None,
        "sequenceMaxIdleMSec": round(sequences.idle_timeout_s * 1000) if sequences is not None else 0,
        "sequenceTimeoutMSec": 0,
        "maxNumSequence": sequences.max_sequences if sequences is not None else 0,
        "maxSequenceJobQueueSize": 0,
        "loadedAtStartup": version.loaded_at_startup,
        "workers": [
            {
                "id": w.id,
                "startTime": w.start_time,
                "status": "READY" if w.status == "READY" else "UNLOADING" if w.status == "STOPPED" else w.status,
                "memoryUsage": memory,
                "pid": w.pid,
                "gpu": device_index(w.device) is not None,
                "gpuUsage": "N/A",
            }
            for w in workers
        ],
        "jobQueueStatus": {"remainingCapacity": max(0, job_queue_size - pending), "pendingRequests": pending},
    }
