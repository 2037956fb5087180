"""grpc.health.v1 Check, List and Watch as probes and load balancers see them over the wire."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from modelfleet.server.rpc.error_details import error_info_from_trailer
from modelfleet.server.rpc.health import LIVENESS_SERVICE, HealthServicer

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse.SERVICE_UNKNOWN


@pytest.fixture
def health() -> HealthServicer:
    return HealthServicer()


@pytest.fixture
async def stub(start_server, health: HealthServicer) -> AsyncIterator[health_pb2_grpc.HealthStub]:
    _, port = await start_server(setup=health.add_to_server)
    async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield health_pb2_grpc.HealthStub(channel)


async def check(stub: health_pb2_grpc.HealthStub, service: str) -> int:
    reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
    return int(reply.status)


async def next_status(call: aio.UnaryStreamCall) -> int:
    reply = await asyncio.wait_for(call.read(), timeout=10)
    assert reply is not aio.EOF, "the Watch stream ended"
    return int(reply.status)


async def test_a_new_server_is_alive_but_not_ready(stub) -> None:
    assert await check(stub, LIVENESS_SERVICE) == SERVING
    assert await check(stub, "") == NOT_SERVING


async def test_an_unknown_name_is_not_found_with_error_info(stub) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await check(stub, "no-such-model")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no-such-model" in caught.value.details()
    info = error_info_from_trailer(caught.value.trailing_metadata())
    assert info is not None and info.reason == "MODEL_NOT_FOUND" and info.metadata["service"] == "no-such-model"


async def test_check_follows_set_and_remove(stub, health: HealthServicer) -> None:
    health.set("tiny", True)
    health.set("tiny/1.0", False)
    assert await check(stub, "tiny") == SERVING
    assert await check(stub, "tiny/1.0") == NOT_SERVING
    health.set("tiny", False)
    assert await check(stub, "tiny") == NOT_SERVING
    health.remove("tiny")
    with pytest.raises(aio.AioRpcError) as caught:
        await check(stub, "tiny")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_list_reports_every_known_name(stub, health: HealthServicer) -> None:
    health.set("tiny", True)
    reply = await stub.List(health_pb2.HealthListRequest(), timeout=10)
    assert {name: value.status for name, value in reply.statuses.items()} == {
        "": NOT_SERVING,
        LIVENESS_SERVICE: SERVING,
        "tiny": SERVING,
    }
    assert health.names() == {"", LIVENESS_SERVICE, "tiny"}


async def test_watch_sends_the_current_status_then_every_change(stub, health: HealthServicer) -> None:
    health.set("tiny", False)
    call = stub.Watch(health_pb2.HealthCheckRequest(service="tiny"))
    assert await next_status(call) == NOT_SERVING
    health.set("tiny", True)
    assert await next_status(call) == SERVING
    health.set("tiny", True)  # not a change: nothing is sent for it
    health.set("tiny", False)
    assert await next_status(call) == NOT_SERVING
    health.remove("tiny")
    assert await next_status(call) == SERVICE_UNKNOWN
    health.set("tiny", True)
    assert await next_status(call) == SERVING
    call.cancel()


async def test_watching_an_unknown_name_waits_for_it_to_appear(stub, health: HealthServicer) -> None:
    call = stub.Watch(health_pb2.HealthCheckRequest(service="later"))
    assert await next_status(call) == SERVICE_UNKNOWN
    health.set("later", True)
    assert await next_status(call) == SERVING
    call.cancel()


async def test_draining_turns_every_name_not_serving_and_keeps_it_so(stub, health: HealthServicer) -> None:
    health.set("", True)
    health.set("tiny", True)
    overall = stub.Watch(health_pb2.HealthCheckRequest(service=""))
    liveness = stub.Watch(health_pb2.HealthCheckRequest(service=LIVENESS_SERVICE))
    assert await next_status(overall) == SERVING
    assert await next_status(liveness) == SERVING
    health.set_all_not_serving()
    assert health.draining
    assert await next_status(overall) == NOT_SERVING
    assert await next_status(liveness) == NOT_SERVING
    health.set("tiny", True)
    health.set("other", True)
    assert await check(stub, "tiny") == NOT_SERVING
    assert await check(stub, "other") == NOT_SERVING
    assert await check(stub, "") == NOT_SERVING
    overall.cancel()
    liveness.cancel()


async def test_close_ends_open_watch_streams_with_ok(stub, health: HealthServicer) -> None:
    call = stub.Watch(health_pb2.HealthCheckRequest(service=LIVENESS_SERVICE))
    assert await next_status(call) == SERVING
    health.set_all_not_serving()
    health.close()
    assert await next_status(call) == NOT_SERVING
    assert await asyncio.wait_for(call.read(), timeout=10) is aio.EOF
    assert await call.code() == grpc.StatusCode.OK


async def test_stopping_the_server_ends_watch_streams_and_forgets_the_watchers(start_server, health) -> None:
    server, port = await start_server(setup=health.add_to_server)
    async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
        assert await next_status(call) == NOT_SERVING
        await server.stop(None)
        with pytest.raises(aio.AioRpcError) as caught:
            await next_status(call)
        assert caught.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
    assert health._watchers == {}


async def test_one_instance_serves_several_servers(start_server, health: HealthServicer) -> None:
    ports = [(await start_server(setup=health.add_to_server))[1] for _ in range(2)]
    async with (
        aio.insecure_channel(f"127.0.0.1:{ports[0]}") as first,
        aio.insecure_channel(f"127.0.0.1:{ports[1]}") as second,
    ):
        calls = [
            health_pb2_grpc.HealthStub(chan).Watch(health_pb2.HealthCheckRequest(service="tiny"))
            for chan in (first, second)
        ]
        for call in calls:
            assert await next_status(call) == SERVICE_UNKNOWN
        health.set("tiny", True)
        for call in calls:
            assert await next_status(call) == SERVING
        for call in calls:
            call.cancel()
