"""Client strings come back clipped, never whole (issue 10, finding 4, the echo part): a 6 MB health
service name is answered NOT_FOUND at once with a short message, Watch keeps no megabyte key, and no
error message or ErrorInfo value on any path is longer than the caps in echo.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2

from modelfleet.protos import inference_pb2, management_pb2
from modelfleet.server.echo import ECHO_LIMIT, MESSAGE_LIMIT
from modelfleet.server.errors import ErrorKind, ModelFleetError, Reason
from modelfleet.server.rpc import status
from modelfleet.server.rpc.error_details import error_info_from_trailer, error_status_trailer
from modelfleet.server.rpc.health import MAX_SERVICE_NAME_CHARS

HUGE = 6_000_000
"""Characters of a huge client string: just under the default 6,553,500-byte message limit."""

SUFFIX = len("... (6,000,000 characters)") + 2
"""What clipping adds: the ellipsis, the original length and, for quoted values, the quotes."""


def assert_short(details: str, metadata: dict[str, str]) -> None:
    assert len(details) <= MESSAGE_LIMIT + SUFFIX, f"{len(details):,} characters of details"
    for key, value in metadata.items():
        assert len(key) <= ECHO_LIMIT + SUFFIX and len(value) <= ECHO_LIMIT + SUFFIX, f"{len(value):,} in {key[:20]}"


async def failure(call: Any) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    with pytest.raises(aio.AioRpcError) as raised:
        await call
    error = raised.value
    info = error_info_from_trailer(list(error.trailing_metadata() or ()))
    return error.code(), error.details() or "", {} if info is None else dict(info.metadata)


async def test_health_check_of_a_6_mb_service_name_is_not_found_at_once_with_a_short_message(
    start_api: Callable[..., Any],
) -> None:
    async with start_api() as api:
        name = "s" * HUGE
        started = time.perf_counter()
        outcomes = await asyncio.gather(
            *(failure(api.health.Check(health_pb2.HealthCheckRequest(service=name), timeout=30)) for _ in range(8))
        )
        elapsed = time.perf_counter() - started
    for code, details, metadata in outcomes:
        assert code == grpc.StatusCode.NOT_FOUND
        assert details.startswith("Unknown health service name: 'sss") and "6,000,000 characters" in details
        assert len(details) < 300
        assert_short(details, metadata)
    assert elapsed < 10.0, f"8 checks took {elapsed:.1f} s"


async def test_health_watch_of_a_6_mb_service_name_answers_unknown_and_keeps_no_key(
    start_api: Callable[..., Any],
) -> None:
    async with start_api() as api:
        call = api.health.Watch(health_pb2.HealthCheckRequest(service="w" * HUGE), timeout=20)
        replies = [reply.status async for reply in call]
        assert replies == [health_pb2.HealthCheckResponse.SERVICE_UNKNOWN]
        assert await call.code() == grpc.StatusCode.OK
        assert all(len(name) <= MAX_SERVICE_NAME_CHARS for name in api.app.health._watchers)


async def test_health_watch_of_an_unknown_short_name_still_waits_for_it(start_api: Callable[..., Any]) -> None:
    async with start_api() as api:
        call = api.health.Watch(health_pb2.HealthCheckRequest(service="later"), timeout=20)
        first = await call.read()
        assert first.status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
        await api.wait_for(lambda: _watched(api, "later"), what="the Watch registered")
        call.cancel()


async def _watched(api: Any, name: str) -> bool:
    return name in api.app.health._watchers


async def test_errors_echoing_a_2_mb_model_name_are_clipped_on_every_inference_and_management_path(
    start_api: Callable[..., Any], mode: str
) -> None:
    name = "m" * 2_000_000
    async with start_api(status_mode=mode) as api:
        request = inference_pb2.PredictionsRequest(model_name=name, input={"data": b"[1.0]"})
        outcomes = [
            await failure(api.inference.Predictions(request, timeout=30)),
            await failure(_drain(api.inference.StreamPredictions(request, timeout=30))),
            await failure(api.management.DescribeModel(management_pb2.DescribeModelRequest(model_name=name))),
            await failure(api.management.UnregisterModel(management_pb2.UnregisterModelRequest(model_name=name))),
        ]
        sequenced = inference_pb2.PredictionsRequest(model_name=name, input={"data": b"[1.0]"}, sequence_id="s")
        [reply] = [r async for r in api.inference.StreamPredictions2(iter([sequenced]), timeout=30)]
    for code, details, metadata in outcomes:
        assert code != grpc.StatusCode.OK
        assert_short(details, metadata)
    in_band = error_info_from_status(reply.status)
    assert reply.status.code != 0
    assert_short(reply.status.message, in_band)


async def _drain(call: Any) -> list[Any]:
    return [reply async for reply in call]


def error_info_from_status(value: Any) -> dict[str, str]:
    from google.rpc import error_details_pb2

    for detail in value.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return dict(info.metadata)
    return {}


def test_the_status_table_clips_any_error_message_and_metadata_it_sends() -> None:
    error = ModelFleetError(
        ErrorKind.INVALID_ARGUMENT, Reason.BAD_INPUT, "x" * 1_000_000, metadata={"field": "y" * 1_000_000}
    )
    in_band = status.in_band_status(error, status.codes_for("StreamPredictions2", "torchserve"))
    assert_short(in_band.message, error_info_from_status(in_band))

    [(_, packed)] = error_status_trailer(
        grpc.StatusCode.NOT_FOUND, "z" * 1_000_000, reason="X", metadata={"k" * 999: "v"}
    )
    info = error_info_from_trailer([("grpc-status-details-bin", packed)])
    assert info is not None and len(packed) < 2 * (MESSAGE_LIMIT + ECHO_LIMIT)
    assert_short("", dict(info.metadata))
