"""Server reflection: the real grpcurl (v1alpha) and a raw v1 stream list and describe our services."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2
from grpc import aio
from grpc_reflection.v1alpha import reflection_pb2

from modelfleet.protos import inference_pb2, management_pb2
from modelfleet.server.rpc.auth import INFERENCE, MANAGEMENT, TokenAuthInterceptor, TokenStore
from modelfleet.server.rpc.health import SERVICE_NAME as HEALTH
from modelfleet.server.rpc.health import HealthServicer
from modelfleet.server.rpc.reflection import REFLECTION_SERVICES, V1_SERVICE, enable_reflection
from modelfleet.server.settings import AuthSettings

from mf_tools import console_script

INFERENCE_SERVICE = inference_pb2.DESCRIPTOR.services_by_name["InferenceAPIsService"].full_name
MANAGEMENT_SERVICE = management_pb2.DESCRIPTOR.services_by_name["ManagementAPIsService"].full_name
EXPECTED = {INFERENCE_SERVICE, MANAGEMENT_SERVICE, HEALTH, *REFLECTION_SERVICES}


@pytest.fixture
async def port(start_server, tmp_path: Path) -> int:
    """A server with token auth on, so the tests also show reflection needs no token."""
    store = TokenStore(AuthSettings(key_file=tmp_path / "key_file.json"))
    interceptor = TokenAuthInterceptor(
        store, {INFERENCE_SERVICE: INFERENCE, MANAGEMENT_SERVICE: MANAGEMENT}, {HEALTH, *REFLECTION_SERVICES}
    )

    def setup(server: aio.Server) -> None:
        HealthServicer().add_to_server(server)
        enable_reflection(server, [INFERENCE_SERVICE, MANAGEMENT_SERVICE])

    _, bound = await start_server(interceptors=[interceptor], setup=setup)
    return bound


async def grpcurl(*args: str) -> str:
    # The server runs on this loop, so grpcurl must run as an asyncio subprocess (never blocking).
    process = await asyncio.create_subprocess_exec(
        console_script("grpcurl"), *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout=30)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode == 0, f"grpcurl {' '.join(args)} → rc {process.returncode}: {err.decode()}"
    return out.decode()


async def test_grpcurl_lists_both_apis_health_and_both_reflection_versions(port: int) -> None:
    listed = set((await grpcurl("-plaintext", f"127.0.0.1:{port}", "list")).split())
    assert listed == EXPECTED


async def test_grpcurl_describes_every_listed_service(port: int) -> None:
    described = await grpcurl("-plaintext", f"127.0.0.1:{port}", "describe")
    for service in EXPECTED:
        assert f"{service} is a service" in described
    assert "rpc StreamPredictions2 ( stream .org.pytorch.serve.grpc.inference.PredictionsRequest )" in described
    method = await grpcurl("-plaintext", f"127.0.0.1:{port}", "describe", f"{MANAGEMENT_SERVICE}.RegisterModel")
    assert "rpc RegisterModel" in method
    message = await grpcurl(
        "-plaintext", f"127.0.0.1:{port}", "describe", "org.pytorch.serve.grpc.management.RegisterModelRequest"
    )
    assert "int32 initial_workers" in message


async def test_grpcurl_calls_health_through_reflection_without_a_token(port: int) -> None:
    reply = await grpcurl(
        "-plaintext", "-d", '{"service": "modelfleet.liveness"}', f"127.0.0.1:{port}", "grpc.health.v1.Health/Check"
    )
    assert json.loads(reply) == {"status": "SERVING"}


async def reflect_v1(
    channel: aio.Channel, *requests: reflection_pb2.ServerReflectionRequest
) -> list[reflection_pb2.ServerReflectionResponse]:
    """Speak grpc.reflection.v1 with the (wire-identical) v1alpha message classes."""
    call = channel.stream_stream(
        f"/{V1_SERVICE}/ServerReflectionInfo",
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )

    async def stream() -> AsyncIterator[reflection_pb2.ServerReflectionRequest]:
        for request in requests:
            yield request

    return [reply async for reply in call(stream(), timeout=10)]


async def test_v1_reflection_lists_and_describes_at_its_own_path(port: int) -> None:
    async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        listed, v1_file, inference_file = await reflect_v1(
            channel,
            reflection_pb2.ServerReflectionRequest(list_services=""),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol=V1_SERVICE),
            reflection_pb2.ServerReflectionRequest(file_containing_symbol=INFERENCE_SERVICE),
        )
    assert {service.name for service in listed.list_services_response.service} == EXPECTED

    def files(reply: reflection_pb2.ServerReflectionResponse) -> dict[str, descriptor_pb2.FileDescriptorProto]:
        protos = [
            descriptor_pb2.FileDescriptorProto.FromString(raw)
            for raw in reply.file_descriptor_response.file_descriptor_proto
        ]
        return {proto.package: proto for proto in protos}

    v1 = files(v1_file)["grpc.reflection.v1"]
    assert v1.name == "grpc/reflection/v1/reflection.proto"
    (method,) = v1.service[0].method
    assert (method.name, method.input_type, method.client_streaming, method.server_streaming) == (
        "ServerReflectionInfo",
        ".grpc.reflection.v1.ServerReflectionRequest",
        True,
        True,
    )
    inference = files(inference_file)["org.pytorch.serve.grpc.inference"]
    assert [m.name for m in inference.service[0].method] == [
        "Ping",
        "Predictions",
        "StreamPredictions",
        "StreamPredictions2",
    ]


async def test_an_unknown_symbol_is_answered_in_band_with_not_found(port: int) -> None:
    async with aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        (reply,) = await reflect_v1(channel, reflection_pb2.ServerReflectionRequest(file_containing_symbol="no.Such"))
    assert reply.error_response.error_code == 5  # NOT_FOUND


async def test_enabling_reflection_twice_in_one_process_is_fine() -> None:
    names = enable_reflection(aio.server(), ["x.Y"])
    again = enable_reflection(aio.server(), ["x.Y"])
    assert names == again == tuple(sorted({"x.Y", HEALTH, *REFLECTION_SERVICES}))
