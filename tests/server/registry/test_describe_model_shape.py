"""DescribeModel's element per version, as a TorchServe 0.12 client reads it: every field in
DescribeModelResponse's order (null ones omitted, as Gson does), workers[] and jobQueueStatus.
The registry's typed description goes through rpc/torchserve_json.py, as the servicer sends it."""

from __future__ import annotations

import asyncio
import os
import re
from typing import Any

from modelfleet.server.models.contracts import RegisterSpec
from modelfleet.server.models.describe import WorkerDescription
from modelfleet.server.models.registry import ModelRegistry
from modelfleet.server.rpc import torchserve_json

import mf_domain_harness as h

TORCHSERVE_FIELDS = [
    "modelName",
    "modelVersion",
    "modelUrl",
    "engine",
    "runtime",
    "minWorkers",
    "maxWorkers",
    "batchSize",
    "maxBatchDelay",
    "responseTimeout",
    "startupTimeout",
    "maxRetryTimeoutInSec",
    "clientTimeoutInMills",
    "parallelType",
    "parallelLevel",
    "deviceType",
    "deviceIds",
    "continuousBatching",
    "useJobTicket",
    "useVenv",
    "stateful",
    "sequenceMaxIdleMSec",
    "sequenceTimeoutMSec",
    "maxNumSequence",
    "maxSequenceJobQueueSize",
    "loadedAtStartup",
    "workers",
    "jobQueueStatus",
]  # DescribeModelResponse.java minus status, metrics, customizedMetadata (null there, so omitted)
WORKER_FIELDS = ["id", "startTime", "status", "memoryUsage", "pid", "gpu", "gpuUsage"]


def described(registry: ModelRegistry, version: str | None) -> list[dict[str, Any]]:
    return torchserve_json.describe_json(registry.describe("tiny", version))


async def test_every_torchserve_field_in_order_with_the_registered_settings(registries: Any, tiny_model: Any) -> None:
    registry = registries.new(job_queue_size=7)
    await registry.register(
        RegisterSpec(
            url="tiny.pt#version=1.5",
            synchronous=True,
            initial_workers=2,
            batch_size=8,
            max_batch_delay_ms=12,
            response_timeout_s=33,
            startup_timeout_s=44,
        )
    )
    [element] = described(registry, None)
    assert list(element) == TORCHSERVE_FIELDS
    assert {k: element[k] for k in TORCHSERVE_FIELDS[:11]} == {
        "modelName": "tiny",
        "modelVersion": "1.5",
        "modelUrl": "tiny.pt#version=1.5",
        "engine": "torchscript",
        "runtime": "python",
        "minWorkers": 2,
        "maxWorkers": 2,
        "batchSize": 8,
        "maxBatchDelay": 12,
        "responseTimeout": 33,
        "startupTimeout": 44,
    }
    assert (element["deviceType"], element["deviceIds"]) == ("cpu", [])
    assert element["loadedAtStartup"] is False
    assert element["jobQueueStatus"] == {"remainingCapacity": 7, "pendingRequests": 0}
    assert len(element["workers"]) == 2
    for worker in element["workers"]:
        assert list(worker) == WORKER_FIELDS
        assert worker["id"].isdigit() and worker["status"] == "READY"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", worker["startTime"])
        assert worker["pid"] == os.getpid()
        assert worker["gpu"] is False and worker["gpuUsage"] == "N/A"
        assert isinstance(worker["memoryUsage"], int) and worker["memoryUsage"] > 0
    assert len({w["id"] for w in element["workers"]}) == 2


async def test_unset_settings_report_torchserve_defaults(registries: Any, tiny_model: Any) -> None:
    registry = registries.new(default_workers=1)
    await registry.register(
        RegisterSpec(url="tiny.pt", batch_size=0, max_batch_delay_ms=0, response_timeout_s=0, startup_timeout_s=0)
    )
    element = described(registry, None)[0]
    assert (element["batchSize"], element["maxBatchDelay"]) == (1, 100)
    assert (element["responseTimeout"], element["startupTimeout"]) == (120, 120)
    assert (element["minWorkers"], element["maxWorkers"]) == (1, 1)


async def test_job_queue_status_counts_waiting_requests(registries: Any, tiny_model: Any, handler_module: Any) -> None:
    handler = handler_module(h.HOLDING_HANDLER)
    registry = registries.new(job_queue_size=10, trusted_handlers=(handler.__name__,))
    await registry.register(RegisterSpec(url="tiny.pt", handler=handler.__name__, synchronous=True, initial_workers=1))
    rows = h.seeded_rows(1, seed=1)
    calls = [asyncio.ensure_future(h.predict(registry, "tiny", h.held(rows)))]
    await h.in_thread(lambda: handler.ENTERED.acquire(timeout=h.WAIT_S))  # the only worker is busy
    calls += [asyncio.ensure_future(h.predict(registry, "tiny", h.rows_json(rows))) for _ in range(3)]
    await h.eventually(lambda: len(registry.get("tiny").pool.queue) == 3, what="three requests queued")
    assert described(registry, None)[0]["jobQueueStatus"] == {"remainingCapacity": 7, "pendingRequests": 3}
    handler.GATE.set()
    await asyncio.gather(*calls)
    assert described(registry, None)[0]["jobQueueStatus"] == {"remainingCapacity": 10, "pendingRequests": 0}


async def test_describe_all_lists_every_version_and_a_version_alone(registries: Any, tiny_model: Any) -> None:
    registry = registries.new()
    for version in ("2.0", "1.0", "1.1"):
        await registry.register(RegisterSpec(url=f"tiny.pt#version={version}", initial_workers=1))
    assert [d["modelVersion"] for d in described(registry, "all")] == ["1.0", "1.1", "2.0"]
    assert [d["modelVersion"] for d in described(registry, "1.1")] == ["1.1"]
    assert [d["modelVersion"] for d in described(registry, None)] == ["2.0"]  # first registered


def test_a_stopped_worker_is_reported_as_torchserve_s_unloading() -> None:
    def worker(status: str, device_index: int | None) -> dict[str, Any]:
        return torchserve_json.worker_json(
            WorkerDescription(id="1", start_time="t", status=status, pid=7, device_index=device_index, memory_bytes=9)
        )

    assert [worker(s, None)["status"] for s in ("STARTING", "READY", "FAILED", "STOPPED")] == [
        "STARTING",
        "READY",
        "FAILED",
        "UNLOADING",
    ]
    assert (worker("READY", 0)["gpu"], worker("READY", None)["gpu"]) == (True, False)
