"""ManagementAPIsService over a real server: TorchServe's sentences and JSON shapes, versions, defaults, pages."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import grpc

from modelfleet.protos import management_pb2
from modelfleet.server.settings import AuthSettings, ModelSettings

DESCRIBE_FIELDS = {
    "modelName", "modelVersion", "modelUrl", "engine", "runtime", "minWorkers", "maxWorkers", "batchSize",
    "maxBatchDelay", "responseTimeout", "startupTimeout", "maxRetryTimeoutInSec", "clientTimeoutInMills",
    "parallelType", "parallelLevel", "deviceType", "deviceIds", "continuousBatching", "useJobTicket", "useVenv",
    "stateful", "sequenceMaxIdleMSec", "sequenceTimeoutMSec", "maxNumSequence", "maxSequenceJobQueueSize",
    "loadedAtStartup", "workers", "jobQueueStatus",
}  # fmt: skip
WORKER_FIELDS = {"id", "startTime", "status", "memoryUsage", "pid", "gpu", "gpuUsage"}


async def test_register_answers_torchserve_sentences(api: Any, make_model: Callable[..., Any]) -> None:
    make_model("tiny.pt")
    assert (
        await api.register("tiny.pt", initial_workers=2)
        == 'Model "tiny" Version: 1.0 registered with 2 initial workers'
    )
    make_model("other.pt")
    assert await api.register("other.pt", synchronous=False) == "Processing worker updates..."


async def test_describe_reports_every_torchserve_field_workers_and_queue(
    api: Any, make_model: Callable[..., Any]
) -> None:
    make_model("tiny.pt")
    await api.register("tiny.pt", initial_workers=2, batch_size=4, max_batch_delay=7, response_timeout=9)
    reply = await api.management.DescribeModel(management_pb2.DescribeModelRequest(model_name="tiny"))
    assert reply.msg.startswith('[\n  {\n    "modelName": "tiny",\n')  # Gson's pretty printing
    (described,) = json.loads(reply.msg)
    assert set(described) >= DESCRIBE_FIELDS
    assert described["modelVersion"] == "1.0"
    assert described["modelUrl"] == "tiny.pt"
    assert (described["minWorkers"], described["maxWorkers"]) == (2, 2)
    assert (described["batchSize"], described["maxBatchDelay"], described["responseTimeout"]) == (4, 7, 9)
    assert described["deviceType"] == "cpu"
    assert len(described["workers"]) == 2
    for worker in described["workers"]:
        assert set(worker) >= WORKER_FIELDS
        assert worker["status"] == "READY"
        assert worker["gpu"] is False
    queue = described["jobQueueStatus"]
    assert queue == {"remainingCapacity": api.app.settings.models.job_queue_size, "pendingRequests": 0}


async def test_describe_all_lists_every_version_and_default_follows_set_default(
    api: Any, make_model: Callable[..., Any]
) -> None:
    make_model("tiny.pt", seed=1)
    make_model("tiny2.pt", seed=2)
    await api.register("tiny.pt#version=1.0", model_name="tiny")
    await api.register("tiny2.pt#version=2.0", model_name="tiny")
    assert [d["modelVersion"] for d in await api.describe("tiny", "all")] == ["1.0", "2.0"]
    assert [d["modelVersion"] for d in await api.describe("tiny")] == ["1.0"]  # first registered is default
    assert [d["modelVersion"] for d in await api.describe("tiny", "2.0")] == ["2.0"]
    first = await api.predict("tiny")
    second = await api.predict("tiny", "2.0")
    assert first != second
    assert (await api.list_models())["models"] == [{"modelName": "tiny", "modelUrl": "tiny.pt#version=1.0"}]

    reply = await api.management.SetDefault(management_pb2.SetDefaultRequest(model_name="tiny", model_version="2.0"))
    assert reply.msg == 'Default version successfully updated for model "tiny" to "2.0"'
    assert [d["modelVersion"] for d in await api.describe("tiny")] == ["2.0"]
    assert await api.predict("tiny") == second
    assert (await api.list_models())["models"] == [{"modelName": "tiny", "modelUrl": "tiny2.pt#version=2.0"}]


async def test_unregister_of_the_default_is_refused_while_other_versions_exist(
    api: Any, make_model: Callable[..., Any], mode: str
) -> None:
    make_model("tiny.pt")
    await api.register("tiny.pt#version=1.0", model_name="tiny")
    await api.register("tiny.pt#version=2.0", model_name="tiny")
    refused = await api.failure(
        api.management.UnregisterModel(management_pb2.UnregisterModelRequest(model_name="tiny"))
    )
    assert refused.code == (grpc.StatusCode.UNKNOWN if mode == "torchserve" else grpc.StatusCode.FAILED_PRECONDITION)
    assert refused.reason == "DEFAULT_VERSION_IN_USE"
    assert len(await api.describe("tiny", "all")) == 2

    reply = await api.management.UnregisterModel(
        management_pb2.UnregisterModelRequest(model_name="tiny", model_version="2.0")
    )
    assert reply.msg == 'Model "tiny" unregistered'
    reply = await api.management.UnregisterModel(management_pb2.UnregisterModelRequest(model_name="tiny"))
    assert reply.msg == 'Model "tiny" unregistered'
    assert (await api.list_models())["models"] == []


async def test_scale_worker_changes_the_workers_that_run(api: Any, make_model: Callable[..., Any]) -> None:
    make_model("tiny.pt")
    await api.register("tiny.pt", initial_workers=1)
    reply = await api.management.ScaleWorker(
        management_pb2.ScaleWorkerRequest(model_name="tiny", min_worker=3, max_worker=4, synchronous=True)
    )
    assert reply.msg == "Workers scaled to 3 for model: tiny"
    (described,) = await api.describe("tiny")
    assert (described["minWorkers"], described["maxWorkers"]) == (3, 4)
    assert [w["status"] for w in described["workers"]] == ["READY"] * 3

    reply = await api.management.ScaleWorker(
        management_pb2.ScaleWorkerRequest(model_name="tiny", model_version="1.0", min_worker=1, synchronous=True)
    )
    assert reply.msg == "Workers scaled to 1 for model: tiny, version: 1.0"
    (described,) = await api.describe("tiny")
    assert (described["minWorkers"], described["maxWorkers"]) == (1, 1)  # max 0 means "= min"
    assert len(described["workers"]) == 1
    reply = await api.management.ScaleWorker(management_pb2.ScaleWorkerRequest(model_name="tiny", min_worker=2))
    assert reply.msg == "Processing worker updates..."


async def test_list_models_pages_with_next_page_token(api: Any, make_model: Callable[..., Any]) -> None:
    make_model("tiny.pt")
    names = [f"m{i:03d}" for i in range(5)]
    for name in names:
        await api.register("tiny.pt", model_name=name, synchronous=False)
    reply = await api.management.ListModels(management_pb2.ListModelsRequest(limit=2))
    first = json.loads(reply.msg)
    assert first == {
        "nextPageToken": "2",
        "models": [{"modelName": "m000", "modelUrl": "tiny.pt"}, {"modelName": "m001", "modelUrl": "tiny.pt"}],
    }
    second = await api.list_models(limit=2, token=int(first["nextPageToken"]))
    assert [m["modelName"] for m in second["models"]] == ["m002", "m003"]
    last = await api.list_models(limit=2, token=int(second["nextPageToken"]))
    assert [m["modelName"] for m in last["models"]] == ["m004"]
    assert "nextPageToken" not in last


async def test_list_models_unset_limit_gives_the_default_page_of_100_and_large_limits_are_clamped(
    api: Any, make_model: Callable[..., Any]
) -> None:
    make_model("tiny.pt")
    for i in range(102):
        await api.register("tiny.pt", model_name=f"m{i:03d}", initial_workers=1, synchronous=False)
    for limit in (0, 101, 5000, -1):
        page = await api.list_models(limit=limit)
        assert len(page["models"]) == 100, limit
        assert page["nextPageToken"] == "100"
    rest = await api.list_models(token=100)
    assert [m["modelName"] for m in rest["models"]] == ["m100", "m101"]
    assert (await api.list_models(token=-5))["models"][0]["modelName"] == "m000"


async def test_model_api_off_refuses_register_and_unregister_only(
    start_api: Callable[..., Any], make_model: Callable[..., Any], mode: str
) -> None:
    make_model("tiny.pt")
    auth = AuthSettings(enabled=False, enable_model_api=False)
    models = ModelSettings(startup_models=("tiny=tiny.pt",), default_workers=1)
    async with start_api(status_mode=mode, auth=auth, models=models) as api:
        for call in (
            api.management.RegisterModel(management_pb2.RegisterModelRequest(url="tiny.pt", model_name="x")),
            api.management.UnregisterModel(management_pb2.UnregisterModelRequest(model_name="tiny")),
        ):
            refused = await api.failure(call)
            assert refused.code == grpc.StatusCode.PERMISSION_DENIED
            assert refused.details == "Model API disabled"
            assert refused.reason == "MODEL_API_DISABLED"
        # Scale, SetDefault, Describe and List still work, as in TorchServe.
        await api.management.ScaleWorker(management_pb2.ScaleWorkerRequest(model_name="tiny", min_worker=1))
        await api.management.SetDefault(management_pb2.SetDefaultRequest(model_name="tiny", model_version="1.0"))
        assert [m["modelName"] for m in (await api.list_models())["models"]] == ["tiny"]
        assert (await api.describe("tiny"))[0]["loadedAtStartup"] is True
