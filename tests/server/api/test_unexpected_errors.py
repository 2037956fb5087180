"""An unexpected exception anywhere under an RPC → INTERNAL, a generic message, the traceback only in the log."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest

from modelfleet.protos import inference_pb2, management_pb2

SECRET = "/secret/path/in/a/traceback"


def explode(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError(SECRET)


async def explode_streaming(*args: Any, **kwargs: Any) -> AsyncIterator[bytes]:
    yield b"[0]"
    raise KeyError(SECRET)


async def test_unexpected_exceptions_become_internal_with_a_generic_message(
    api: Any, make_model: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    make_model("tiny.pt")
    await api.register("tiny.pt")
    registry = api.app.registry
    monkeypatch.setattr(registry, "describe", explode)
    monkeypatch.setattr(registry, "predict", explode)
    monkeypatch.setattr(registry, "stream", explode_streaming)
    request = inference_pb2.PredictionsRequest(model_name="tiny", input={"data": api.sample_bytes})
    with caplog.at_level(logging.ERROR, logger="modelfleet.server.rpc.status"):
        calls = {
            "DescribeModel": api.management.DescribeModel(management_pb2.DescribeModelRequest(model_name="tiny")),
            "Predictions": api.inference.Predictions(request),
            "StreamPredictions": _drain(api.inference.StreamPredictions(request)),
        }
        for method, call in calls.items():
            got = await api.failure(call)
            assert (got.code, got.details, got.reason) == (
                grpc.StatusCode.INTERNAL,
                "Internal server error",
                "INTERNAL",
            )
            assert SECRET not in repr(got)
            assert any(method in r.getMessage() and SECRET in (r.exc_text or "") for r in caplog.records), method
    monkeypatch.undo()
    assert len(await api.predict("tiny")) == 4  # the server is still up


async def _drain(call: Any) -> list[Any]:
    return [reply async for reply in call]
