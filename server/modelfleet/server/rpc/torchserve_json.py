"""The registry's descriptions in TorchServe 0.12's JSON shapes (DescribeModelResponse, ListModelsResponse).

Called by management.py; pure. Field names and order are TorchServe's, and fields it leaves null
(so Gson omits them: status, metrics, customizedMetadata) are omitted here too, so clients that
parse the pretty JSON read what they read before. Another protocol builds its own shape from the
same typed values.
"""

from __future__ import annotations

from typing import Any

from modelfleet.server.models.describe import ModelPage, VersionDescription, WorkerDescription


def worker_status(status: str) -> str:
    """TorchServe has no STOPPED worker: one on its way out is UNLOADING."""
    return "UNLOADING" if status == "STOPPED" else status


def worker_json(worker: WorkerDescription) -> dict[str, Any]:
    return {
        "id": worker.id,
        "startTime": worker.start_time,
        "status": worker_status(worker.status),
        "memoryUsage": worker.memory_bytes,
        "pid": worker.pid,
        "gpu": worker.device_index is not None,
        "gpuUsage": "N/A",
    }


def version_json(version: VersionDescription) -> dict[str, Any]:
    """DescribeModel's element for one version; fields we do not implement carry TorchServe's defaults."""
    return {
        "modelName": version.name,
        "modelVersion": version.version,
        "modelUrl": version.url,
        "engine": version.engine,
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
        "deviceType": "gpu" if version.device_ids else "cpu",
        "deviceIds": list(version.device_ids),
        "continuousBatching": False,
        "useJobTicket": False,
        "useVenv": False,
        "stateful": version.stateful,
        "sequenceMaxIdleMSec": round(version.sequence_idle_timeout_s * 1000),
        "sequenceTimeoutMSec": 0,
        "maxNumSequence": version.max_sequences,
        "maxSequenceJobQueueSize": 0,
        "loadedAtStartup": version.loaded_at_startup,
        "workers": [worker_json(w) for w in version.workers],
        "jobQueueStatus": {"remainingCapacity": version.queue_remaining, "pendingRequests": version.queue_pending},
    }


def describe_json(versions: list[VersionDescription]) -> list[dict[str, Any]]:
    return [version_json(v) for v in versions]


def page_json(page: ModelPage) -> dict[str, Any]:
    """ListModels' page; nextPageToken comes first and only when there is a next page, as in TorchServe."""
    result: dict[str, Any] = {}
    if page.next_offset is not None:
        result["nextPageToken"] = str(page.next_offset)
    result["models"] = [{"modelName": m.name, "modelUrl": m.url} for m in page.models]
    return result
