"""Channel options a user relies on: message size limits, connection age (GOAWAY), loud bind errors."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from modelfleet.server.rpc.health import HealthServicer
from modelfleet.server.rpc.transport import TransportError, bind, server_options
from modelfleet.server.settings import NetworkSettings

LIMIT = 1024


@pytest.fixture
async def small_limits_port(start_server) -> int:
    settings = NetworkSettings(max_receive_message_bytes=LIMIT, max_send_message_bytes=LIMIT)
    _, port = await start_server(options=server_options(settings))
    return int(port)


async def test_an_oversized_request_is_resource_exhausted_and_the_server_keeps_serving(small_limits_port) -> None:
    # The client may send more than the server takes: its own limit is raised for the test.
    async with aio.insecure_channel(
        f"127.0.0.1:{small_limits_port}", options=[("grpc.max_send_message_length", 10 * LIMIT)]
    ) as channel:
        echo = channel.unary_unary("/test.Inference/Unary")
        with pytest.raises(aio.AioRpcError) as caught:
            await echo(b"x" * (LIMIT + 1), timeout=10)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert await echo(b"x" * (LIMIT - 100), timeout=10) == b"x" * (LIMIT - 100)


async def test_an_oversized_response_is_resource_exhausted_and_the_server_keeps_serving(small_limits_port) -> None:
    async with aio.insecure_channel(f"127.0.0.1:{small_limits_port}") as channel:
        double = channel.unary_unary("/test.Inference/Double")
        with pytest.raises(aio.AioRpcError) as caught:
            await double(b"y" * (LIMIT // 2 + 10), timeout=10)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert await double(b"y" * 100, timeout=10) == b"y" * 200


async def test_the_default_limit_is_torchserves(start_server) -> None:
    _, port = await start_server(options=server_options(NetworkSettings()))
    big = b"z" * 6_000_000  # above grpc's own 4 MiB default, below TorchServe's 6,553,500
    async with aio.insecure_channel(
        f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    ) as channel:
        echo = channel.unary_unary("/test.Inference/Unary")
        assert len(await echo(big, timeout=30)) == len(big)
        with pytest.raises(aio.AioRpcError) as caught:
            await echo(b"z" * 6_553_501, timeout=30)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_an_aged_connection_is_closed_so_a_long_stream_ends_unavailable(start_server) -> None:
    health = HealthServicer()
    settings = NetworkSettings(max_connection_age_s=0.3, max_connection_age_grace_s=0.3)
    _, port = await start_server(options=server_options(settings), setup=health.add_to_server)
    async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
        first = await asyncio.wait_for(watch.read(), timeout=10)
        assert first.status == health_pb2.HealthCheckResponse.NOT_SERVING
        loop = asyncio.get_running_loop()
        started = loop.time()
        # Nothing changes, so only the server closing the aged connection can end this read.
        with pytest.raises(aio.AioRpcError) as caught:
            await asyncio.wait_for(watch.read(), timeout=15)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert loop.time() - started < 10
        # The channel reconnects on its own: a new call on the same channel works.
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="modelfleet.liveness"), timeout=10
        )
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_without_an_age_a_stream_outlives_it(start_server) -> None:
    health = HealthServicer()
    _, port = await start_server(options=server_options(NetworkSettings()), setup=health.add_to_server)
    async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
        await asyncio.wait_for(watch.read(), timeout=10)
        pending = asyncio.ensure_future(watch.read())
        # The control case: still open well after the age and grace of the test above (0.3 + 0.3 s).
        done, _ = await asyncio.wait({pending}, timeout=1.0)
        assert not done
        health.set("", True)
        assert (await asyncio.wait_for(pending, timeout=10)).status == health_pb2.HealthCheckResponse.SERVING
        watch.cancel()


async def test_a_port_in_use_fails_loudly_instead_of_being_shared(start_server) -> None:
    options = server_options(NetworkSettings())
    _, port = await start_server(options=options)
    second = aio.server(options=options)
    with pytest.raises(TransportError, match=f"127.0.0.1:{port}"):
        bind(second, f"127.0.0.1:{port}", None)


async def test_an_address_of_another_host_fails_loudly() -> None:
    with pytest.raises(TransportError, match="192.0.2.1"):
        bind(aio.server(), "192.0.2.1:0", None)


def test_unset_connection_settings_leave_grpc_defaults() -> None:
    unset = dict(server_options(NetworkSettings(max_connection_age_s=None, keepalive_time_s=None)))
    assert not {"grpc.max_connection_age_ms", "grpc.max_connection_age_grace_ms", "grpc.keepalive_time_ms"} & set(unset)
    given = dict(
        server_options(NetworkSettings(max_connection_age_s=300, max_connection_age_grace_s=30, keepalive_time_s=60))
    )
    assert given["grpc.max_connection_age_ms"] == 300_000
    assert given["grpc.max_connection_age_grace_ms"] == 30_000
    assert given["grpc.keepalive_time_ms"] == 60_000
