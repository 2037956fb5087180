"""Every row of docs/torchserve-contract.md's status table, in both modes, with ErrorInfo reasons.

torchserve mode reproduces what TorchServe 0.12 clients saw (quirks included); conventional mode
answers with gRPC's usual codes. Reasons are the same in both.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import empty_pb2
from grpc_health.v1 import health_pb2

from modelfleet.protos import inference_pb2, management_pb2
from modelfleet.server.settings import AuthSettings, ModelSettings, SourceSettings

C = grpc.StatusCode


def pick(mode: str, torchserve: grpc.StatusCode, conventional: grpc.StatusCode) -> grpc.StatusCode:
    return torchserve if mode == "torchserve" else conventional


async def test_inference_on_unknown_model_or_version_or_after_unregister(
    api: Any, make_model: Callable[..., Any], mode: str
) -> None:
    make_model("tiny.pt")
    await api.register("tiny.pt")
    code = pick(mode, C.INTERNAL, C.NOT_FOUND)
    cases = [("nope", "", "MODEL_NOT_FOUND"), ("tiny", "9.9", "VERSION_NOT_FOUND")]
    for name, version, reason in cases:
        request = inference_pb2.PredictionsRequest(model_name=name, model_version=version, input={"data": b"[1]"})
        for call in (api.inference.Predictions(request), _drain(api.inference.StreamPredictions(request))):
            got = await api.failure(call)
            assert (got.code, got.reason) == (code, reason), (name, version)
    assert (await api.failure(api.inference.Predictions(_request("nope")))).details == "Model not found: nope"
    await api.management.UnregisterModel(management_pb2.UnregisterModelRequest(model_name="tiny"))
    got = await api.failure(api.inference.Predictions(_request("tiny")))
    assert (got.code, got.reason) == (code, "MODEL_NOT_FOUND")


def _request(name: str) -> inference_pb2.PredictionsRequest:
    return inference_pb2.PredictionsRequest(model_name=name, input={"data": b"[1]"})


async def _drain(call: Any) -> list[Any]:
    return [reply async for reply in call]


async def test_predictions_without_model_name(api: Any, mode: str) -> None:
    for call in (api.inference.Predictions(_request("")), _drain(api.inference.StreamPredictions(_request("")))):
        got = await api.failure(call)
        assert (got.code, got.reason) == (pick(mode, C.INTERNAL, C.INVALID_ARGUMENT), "MISSING_FIELD")
        assert got.details == "Parameter model_name is required."
        assert got.metadata == {"field": "model_name"}


async def test_duplicate_register_leaves_the_first_untouched(
    api: Any, make_model: Callable[..., Any], mode: str, model_store: Path
) -> None:
    make_model("tiny.pt")
    await api.register("tiny.pt")
    before = await api.snapshot()
    code = pick(mode, C.UNKNOWN, C.ALREADY_EXISTS)
    got = await api.failure(api.register("tiny.pt"))
    assert (got.code, got.reason) == (code, "ALREADY_EXISTS")
    assert got.metadata == {"model": "tiny", "version": "1.0"}
    # The same model through a file:// URL (allowed: it is inside the store).
    got = await api.failure(api.register((model_store / "tiny.pt").as_uri()))
    assert (got.code, got.reason) == (code, "ALREADY_EXISTS")
    assert await api.snapshot() == before


async def test_register_url_with_dot_dot_or_outside_the_allow_list(
    api: Any, mode: str, model_store: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.pt"
    outside.write_bytes(b"not even a model")
    for url in ("../outside.pt", "sub/../../outside.pt", f"file://{model_store}/../outside.pt"):
        got = await api.failure(api.register(url))
        assert (got.code, got.reason) == (pick(mode, C.NOT_FOUND, C.INVALID_ARGUMENT), "PATH_ESCAPE"), url
        assert got.details == f"Relative path is not allowed in url: {url}"  # TorchServe's words
    for url in (outside.as_uri(), "http://127.0.0.1:1/model.pt", "file:///etc/passwd"):
        got = await api.failure(api.register(url))
        assert (got.code, got.reason) == (pick(mode, C.NOT_FOUND, C.PERMISSION_DENIED), "SOURCE_NOT_ALLOWED"), url
        assert got.details == f"Given URL {url} does not match any allowed URL(s)"
        assert "--allowed-sources" in got.metadata["hint"]
    long_url = "http://127.0.0.1:1/" + "m" * 1_000_000
    got = await api.failure(api.register(long_url))
    assert got.reason == "SOURCE_NOT_ALLOWED" and len(got.details) < 300  # echoed URLs are clipped
    assert (await api.list_models())["models"] == []


async def test_register_from_a_url_whose_file_name_the_model_store_has(
    start_api: Callable[..., Any], make_model: Callable[..., Any], mode: str, model_store: Path, tmp_path: Path
) -> None:
    """TorchServe copied a URL's file into the store: a taken name is INTERNAL "Model file already exists"."""
    (tmp_path / "elsewhere").mkdir()
    url = make_model("tiny.pt").replace(tmp_path / "elsewhere" / "tiny.pt").as_uri()
    make_model("tiny.pt", seed=1)
    sources = SourceSettings(model_store=model_store, allowed_source_patterns=(re.escape(url),))
    async with start_api(status_mode=mode, sources=sources) as api:
        got = await api.failure(api.register(url))
        assert (got.code, got.reason) == (pick(mode, C.INTERNAL, C.ALREADY_EXISTS), "MODEL_FILE_EXISTS")
        assert got.details == "Model file already exists tiny.pt"
        assert got.metadata == {"url": url, "file": "tiny.pt"}
        assert (await api.list_models())["models"] == []
        # The store's own file registers; the same name again is the duplicate case, UNKNOWN.
        await api.register("tiny.pt")
        got = await api.failure(api.register("tiny.pt"))
        assert (got.code, got.reason) == (pick(mode, C.UNKNOWN, C.ALREADY_EXISTS), "ALREADY_EXISTS")
        # With the store's file gone, the URL registers (a new version of the same model).
        (model_store / "tiny.pt").unlink()
        await api.register(url + "#version=2.0")
        assert [d["modelVersion"] for d in await api.describe("tiny", "all")] == ["1.0", "2.0"]


async def test_set_default_without_a_version(api: Any, make_model: Callable[..., Any], mode: str) -> None:
    """TorchServe looks version "" up and answers NOT_FOUND in its words; conventional: a missing field."""
    make_model("tiny.pt")
    await api.register("tiny.pt")
    got = await api.failure(api.management.SetDefault(management_pb2.SetDefaultRequest(model_name="tiny")))
    assert (got.code, got.reason) == (pick(mode, C.NOT_FOUND, C.INVALID_ARGUMENT), "MISSING_FIELD")
    assert got.details == pick_text(
        mode, "Model version  does not exist for model tiny", "Parameter model_version is required."
    )
    assert got.metadata["field"] == "model_version"
    # TorchServe looks the model up first.
    got = await api.failure(api.management.SetDefault(management_pb2.SetDefaultRequest(model_name="nope")))
    if mode == "torchserve":
        assert (got.code, got.reason, got.details) == (C.NOT_FOUND, "MODEL_NOT_FOUND", "Model not found: nope")
    else:
        assert (got.code, got.reason) == (C.INVALID_ARGUMENT, "MISSING_FIELD")
    got = await api.failure(api.management.SetDefault(management_pb2.SetDefaultRequest(model_version="1.0")))
    assert (got.code, got.reason) == (pick(mode, C.NOT_FOUND, C.INVALID_ARGUMENT), "MISSING_FIELD")
    assert (await api.describe("tiny"))[0]["modelVersion"] == "1.0"


def pick_text(mode: str, torchserve: str, conventional: str) -> str:
    return torchserve if mode == "torchserve" else conventional


async def test_malformed_input_is_invalid_argument_in_both_modes(api: Any, make_model: Callable[..., Any]) -> None:
    make_model("tiny.pt")
    await api.register("tiny.pt")
    got = await api.failure(api.predict("tiny", data=b"[1, 2, 3]"))
    assert (got.code, got.reason) == (C.INVALID_ARGUMENT, "BAD_INPUT")


async def test_management_calls_on_unknown_model_or_version_are_not_found(
    api: Any, make_model: Callable[..., Any]
) -> None:
    make_model("tiny.pt")
    await api.register("tiny.pt")
    m = management_pb2
    for name, version, reason in (("nope", "", "MODEL_NOT_FOUND"), ("tiny", "9.9", "VERSION_NOT_FOUND")):
        calls = [
            api.management.ScaleWorker(m.ScaleWorkerRequest(model_name=name, model_version=version, min_worker=1)),
            api.management.DescribeModel(m.DescribeModelRequest(model_name=name, model_version=version)),
            api.management.UnregisterModel(m.UnregisterModelRequest(model_name=name, model_version=version)),
            api.management.SetDefault(m.SetDefaultRequest(model_name=name, model_version=version or "1.0")),
        ]
        for call in calls:
            got = await api.failure(call)
            assert (got.code, got.reason) == (C.NOT_FOUND, reason), (name, version)
    got = await api.failure(api.describe("nope", "all"))
    assert (got.code, got.reason, got.details) == (C.NOT_FOUND, "MODEL_NOT_FOUND", "Model not found: nope")


async def test_scale_worker_with_max_below_min(api: Any, make_model: Callable[..., Any]) -> None:
    make_model("tiny.pt")
    await api.register("tiny.pt")
    got = await api.failure(
        api.management.ScaleWorker(management_pb2.ScaleWorkerRequest(model_name="tiny", min_worker=3, max_worker=2))
    )
    assert (got.code, got.reason) == (C.INVALID_ARGUMENT, "BAD_INPUT")
    assert got.details == "max_worker cannot be less than min_worker."
    assert (await api.describe("tiny"))[0]["minWorkers"] == 1


async def test_missing_or_wrong_token_and_each_token_opens_only_its_api(
    start_api: Callable[..., Any], tmp_path: Path, mode: str
) -> None:
    (tmp_path / "mgmt").write_text("management-secret\n")
    (tmp_path / "inf").write_text("inference-secret\n")
    auth = AuthSettings(
        enable_model_api=True, management_token_file=tmp_path / "mgmt", inference_token_file=tmp_path / "inf"
    )
    code = pick(mode, C.PERMISSION_DENIED, C.UNAUTHENTICATED)
    async with start_api(status_mode=mode, auth=auth) as api:
        inference_md = (("authorization", "Bearer inference-secret"),)
        management_md = (("authorization", "Bearer management-secret"),)
        denied = [
            api.inference.Ping(empty_pb2.Empty()),
            api.inference.Ping(empty_pb2.Empty(), metadata=(("authorization", "Bearer wrong"),)),
            api.inference.Ping(empty_pb2.Empty(), metadata=management_md),
            api.management.ListModels(management_pb2.ListModelsRequest()),
            api.management.ListModels(management_pb2.ListModelsRequest(), metadata=inference_md),
        ]
        for call in denied:
            got = await api.failure(call)
            assert (got.code, got.reason) == (code, "TOKEN_INVALID")
            assert got.details.startswith("Token Authorization failed.")
        await api.inference.Ping(empty_pb2.Empty(), metadata=inference_md)
        await api.management.ListModels(management_pb2.ListModelsRequest(), metadata=management_md)
        # Health needs no token, on both ports.
        for stub in (api.health, api.management_health):
            reply = await stub.Check(health_pb2.HealthCheckRequest(service="modelfleet.liveness"))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_full_queue_answers_at_once_and_the_queued_requests_still_finish(
    start_api: Callable[..., Any], make_model: Callable[..., Any], gate: Any, mode: str
) -> None:
    make_model("tiny.pt")
    models = ModelSettings(default_workers=1, job_queue_size=1, trusted_handlers=("mf_gate_handler",))
    async with start_api(status_mode=mode, models=models) as api:
        await api.register("tiny.pt", handler="mf_gate_handler")
        running = asyncio.ensure_future(api.predict("tiny"))
        await api.wait_for(lambda: _is_set(gate.ENTERED), what="the first request to reach the model")
        queued = asyncio.ensure_future(api.predict("tiny"))
        await api.wait_for(lambda: _pending(api, 1), what="the second request to be queued")
        got = await api.failure(api.predict("tiny"))
        assert (got.code, got.reason) == (pick(mode, C.INTERNAL, C.RESOURCE_EXHAUSTED), "QUEUE_FULL")
        gate.RELEASE.set()
        assert len(await running) == 1 and len(await queued) == 1


async def test_response_timeout_fails_the_call_and_the_worker_recovers(
    start_api: Callable[..., Any], make_model: Callable[..., Any], gate: Any, mode: str
) -> None:
    make_model("tiny.pt")
    models = ModelSettings(default_workers=1, trusted_handlers=("mf_gate_handler",))
    async with start_api(status_mode=mode, models=models) as api:
        await api.register("tiny.pt", handler="mf_gate_handler", response_timeout=1)
        got = await api.failure(api.predict("tiny"))
        assert (got.code, got.reason) == (C.DEADLINE_EXCEEDED, "RESPONSE_TIMEOUT")
        gate.RELEASE.set()
        assert len(await api.predict("tiny")) == 1


async def _is_set(event: Any) -> bool:
    return bool(event.is_set())


async def _pending(api: Any, count: int) -> bool:
    (described,) = await api.describe("tiny")
    return bool(described["jobQueueStatus"]["pendingRequests"] == count)
