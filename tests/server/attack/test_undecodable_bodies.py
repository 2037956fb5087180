"""Undecodable request bodies on every service: INVALID_ARGUMENT, one throttled WARNING, no traceback.

Issue 10, finding 9: grpc answered a body it could not parse with UNKNOWN (INTERNAL inside
StreamPredictions2) and logged an ERROR traceback every time, even for unauthenticated health and
reflection calls. rpc/decoding.py's interceptor, installed by app.py on every server, fixes that.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc import aio

from modelfleet.protos import inference_pb2, management_pb2
from modelfleet.server.app import App, running_app
from modelfleet.server.rpc.decoding import WarningThrottle
from modelfleet.server.settings import (
    AuthSettings,
    ModelSettings,
    NetworkSettings,
    Settings,
    ShutdownSettings,
    SourceSettings,
)

GARBAGE = b"\xff\xff\xff\xff"
"""Field 31, wire type 7 (there is no wire type 7): no request type of any service parses it."""

INF = "/org.pytorch.serve.grpc.inference.InferenceAPIsService/"
MGMT = "/org.pytorch.serve.grpc.management.ManagementAPIsService/"
# (method, request streaming, response streaming)
METHODS = [
    (INF + "Ping", False, False), (INF + "Predictions", False, False), (INF + "StreamPredictions", False, True),
    (INF + "StreamPredictions2", True, True),
    *((MGMT + m, False, False) for m in ("DescribeModel", "ListModels", "RegisterModel", "ScaleWorker",
                                         "SetDefault", "UnregisterModel")),
    ("/grpc.health.v1.Health/Check", False, False), ("/grpc.health.v1.Health/List", False, False),
    ("/grpc.health.v1.Health/Watch", False, True),
    ("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", True, True),
    ("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", True, True),
]  # fmt: skip


def settings(tmp_path: Path, model_store: Path, *, auth: bool = False) -> Settings:
    return Settings(
        network=NetworkSettings(
            inference_address="127.0.0.1:0", management_address="127.0.0.1:0", health_address="127.0.0.1:0"
        ),
        auth=AuthSettings(enabled=auth, enable_model_api=True, key_file=tmp_path / "key_file.json"),
        sources=SourceSettings(model_store=model_store),
        models=ModelSettings(default_workers=1),
        shutdown=ShutdownSettings(drain_delay_s=0.0, grace_s=5.0),
        status_mode="conventional",
    )


@pytest.fixture
async def app(tmp_path: Path, model_store: Path) -> AsyncIterator[App]:
    async with running_app(settings(tmp_path, model_store)) as running:
        yield running


async def call(
    channel: aio.Channel, method: str, bodies: list[bytes], *, streams: tuple[bool, bool], metadata: Any = None
) -> tuple[grpc.StatusCode, str, list[bytes]]:
    """Send raw bodies (no client serializer); the final code, its details and the raw replies."""
    replies: list[bytes] = []
    try:
        if streams[0]:
            async for reply in channel.stream_stream(method)(iter(bodies), timeout=10, metadata=metadata):
                replies.append(reply)
        elif streams[1]:
            async for reply in channel.unary_stream(method)(bodies[0], timeout=10, metadata=metadata):
                replies.append(reply)
        else:
            replies.append(await channel.unary_unary(method)(bodies[0], timeout=10, metadata=metadata))
    except aio.AioRpcError as error:
        return error.code(), error.details() or "", replies
    return grpc.StatusCode.OK, "", replies


async def test_an_undecodable_body_on_every_rpc_of_every_port_is_invalid_argument_without_a_traceback(
    app: App, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    ports = [app.inference_address, app.management_address, f"127.0.0.1:{app.health_port}"]
    seen = 0
    for address in ports:
        async with aio.insecure_channel(address) as channel:
            for method, *streams in METHODS:
                on_this_port = ("Health" in method) or (
                    address != ports[2]
                    and ("reflection" in method or method.startswith(INF if address == ports[0] else MGMT))
                )
                if not on_this_port:
                    continue
                code, details, _ = await call(channel, method, [GARBAGE], streams=(streams[0], streams[1]))
                assert code == grpc.StatusCode.INVALID_ARGUMENT, (address, method, code, details)
                assert "not a valid" in details and len(details) < 200, details
                seen += 1
    assert seen == 9 + 11 + 3  # inference: 4 + health 3 + reflection 2; management: 6 + 3 + 2; health port: 3
    assert not [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    warnings = [r for r in caplog.records if "undecodable" in r.getMessage()]
    assert all(r.levelno == logging.WARNING for r in warnings)
    # One line per method (the three health servers share one interceptor per app, so Check,
    # List and Watch log once each even though they were hit on three ports).
    logged = {r.getMessage().split()[5] for r in warnings}
    assert logged == {method for method, *_ in METHODS}, logged


async def test_a_bad_message_in_the_middle_of_stream_predictions2_ends_the_call_with_invalid_argument(
    app: App, make_model: Callable[..., Path]
) -> None:
    make_model("tiny.pt")
    async with aio.insecure_channel(app.management_address) as channel:
        register = channel.unary_unary(MGMT + "RegisterModel")
        await register(
            management_pb2.RegisterModelRequest(url="tiny.pt", model_name="tiny", synchronous=True).SerializeToString(),
            timeout=60,
        )
    sample = b"[" + b"0.5," * 15 + b"0.5]"
    good = inference_pb2.PredictionsRequest(model_name="tiny", sequence_id="s1", input={"data": sample})
    async with aio.insecure_channel(app.inference_address) as channel:
        code, details, replies = await call(
            channel,
            INF + "StreamPredictions2",
            [good.SerializeToString(), GARBAGE, good.SerializeToString()],
            streams=(True, True),
        )
    assert code == grpc.StatusCode.INVALID_ARGUMENT, details
    first = inference_pb2.PredictionResponse.FromString(replies[0])
    assert first.sequence_id == "s1" and not first.HasField("status")
    assert len(replies) == 1  # the call ended at the bad message; the third request never ran


async def test_garbage_without_a_token_gets_the_token_error_and_is_never_parsed(
    tmp_path: Path, model_store: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with (
        running_app(settings(tmp_path, model_store, auth=True)) as app,
        aio.insecure_channel(app.inference_address) as channel,
    ):
        code, _, _ = await call(channel, INF + "Predictions", [GARBAGE], streams=(False, False))
        assert code == grpc.StatusCode.UNAUTHENTICATED
        # Health stays open: the same garbage there is parsed and refused as bad input.
        code, _, _ = await call(channel, "/grpc.health.v1.Health/Check", [GARBAGE], streams=(False, False))
        assert code == grpc.StatusCode.INVALID_ARGUMENT
    logged = [r.getMessage() for r in caplog.records if "undecodable" in r.getMessage()]
    assert len(logged) == 1 and "Health/Check" in logged[0]


def test_the_warning_is_logged_once_per_method_and_interval_then_with_the_suppressed_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    throttle = WarningThrottle(10.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="modelfleet.server.rpc.decoding"):
        assert throttle.warn("/a/B", "bad body to %s", "/a/B")
        for _ in range(4):
            now[0] += 1.0
            assert not throttle.warn("/a/B", "bad body to %s", "/a/B")
        assert throttle.warn("/c/D", "bad body to %s", "/c/D")  # another method has its own budget
        now[0] += 7.0  # 11 s after the first line
        assert throttle.warn("/a/B", "bad body to %s", "/a/B")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["bad body to /a/B", "bad body to /c/D", "bad body to /a/B (and 4 more in the last 10 s)"]
