"""InferenceAPIsService over a real server: Ping, Predictions, StreamPredictions, StreamPredictions2."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import grpc
import pytest
import torch
from google.protobuf import empty_pb2
from google.rpc import error_details_pb2

from modelfleet.protos import inference_pb2
from modelfleet.server.demo import build_module


def expected_output(sample: list[float], seed: int = 0) -> list[float]:
    with torch.no_grad():
        result: list[float] = build_module("tiny", seed=seed)(torch.tensor(sample)).tolist()
    return result


async def test_ping_answers_torchserve_health_json(api: Any, make_model: Callable[..., Any]) -> None:
    reply = await api.inference.Ping(empty_pb2.Empty())
    assert reply.health == '{\n  "status": "Healthy"\n}'
    make_model("tiny.pt")
    await api.register("tiny.pt")
    assert json.loads((await api.inference.Ping(empty_pb2.Empty())).health) == {"status": "Healthy"}


async def test_ping_says_unhealthy_with_ok_status_when_the_registry_is_not_healthy(
    api: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api.app.registry, "healthy", lambda: False)
    reply = await api.inference.Ping(empty_pb2.Empty())
    assert json.loads(reply.health) == {"status": "Unhealthy"}


async def test_predictions_run_the_model(api: Any, make_model: Callable[..., Any]) -> None:
    make_model("tiny.pt")
    await api.register("tiny.pt")
    assert await api.predict("tiny") == pytest.approx(expected_output(api.sample), rel=1e-5)
    assert await api.predict("tiny", "1.0") == pytest.approx(expected_output(api.sample), rel=1e-5)


async def test_stream_predictions_yields_one_response_for_a_non_streaming_model(
    api: Any, make_model: Callable[..., Any]
) -> None:
    make_model("tiny.pt")
    await api.register("tiny.pt")
    call = api.inference.StreamPredictions(
        inference_pb2.PredictionsRequest(model_name="tiny", input={"data": api.sample_bytes}), timeout=30
    )
    replies = [reply async for reply in call]
    assert len(replies) == 1
    assert json.loads(replies[0].prediction) == pytest.approx(expected_output(api.sample), rel=1e-5)
    assert await call.code() == grpc.StatusCode.OK


async def test_stream_predictions2_echoes_sequence_ids_and_reports_errors_in_band(
    api: Any, make_model: Callable[..., Any], mode: str
) -> None:
    make_model("tiny.pt")
    await api.register("tiny.pt")
    good = {"data": api.sample_bytes}
    requests = [
        inference_pb2.PredictionsRequest(model_name="tiny", input=good, sequence_id="seq-1"),
        inference_pb2.PredictionsRequest(model_name="tiny", input=good),  # no sequence_id
        inference_pb2.PredictionsRequest(model_name="nope", input=good, sequence_id="seq-1"),
        inference_pb2.PredictionsRequest(model_name="tiny", input={"data": b"\xff\xfe"}, sequence_id="seq-1"),
        inference_pb2.PredictionsRequest(model_name="tiny", input=good, sequence_id="seq-1"),
    ]
    call = api.inference.StreamPredictions2(iter(requests), timeout=30)
    replies = [reply async for reply in call]
    assert await call.code() == grpc.StatusCode.OK  # errors never end the call
    assert len(replies) == len(requests)
    expected = expected_output(api.sample)

    def in_band(reply: Any) -> tuple[int, str]:
        assert reply.HasField("status")
        (detail,) = reply.status.details
        info = error_details_pb2.ErrorInfo()
        assert detail.Unpack(info)
        assert info.domain == "modelfleet.io"
        return reply.status.code, info.reason

    first, missing, unknown, garbage, last = replies
    for reply in (first, last):
        assert not reply.HasField("status")
        assert reply.sequence_id == "seq-1"
        assert json.loads(reply.prediction) == pytest.approx(expected, rel=1e-5)
    torchserve = mode == "torchserve"
    assert in_band(missing) == (13 if torchserve else 3, "MISSING_FIELD")
    assert missing.status.message == "Parameter sequenceId is required."
    assert not missing.HasField("sequence_id")
    assert in_band(unknown) == (13 if torchserve else 5, "MODEL_NOT_FOUND")
    assert unknown.sequence_id == "seq-1"
    assert in_band(garbage) == (3, "BAD_INPUT")
