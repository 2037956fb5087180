"""Bearer tokens over the wire: each token opens only its own API; health and reflection need none."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from google.rpc import status_pb2
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from modelfleet.server.rpc.auth import INFERENCE, MANAGEMENT, TokenAuthInterceptor, TokenStore
from modelfleet.server.rpc.error_details import error_info_from_trailer
from modelfleet.server.rpc.health import SERVICE_NAME as HEALTH
from modelfleet.server.rpc.health import HealthServicer
from modelfleet.server.rpc.reflection import REFLECTION_SERVICES, enable_reflection
from modelfleet.server.settings import AuthSettings

ECHOED = [b"u", b"sss", b"c1c2", b"c1c2"]
SCOPES = {"test.Inference": INFERENCE, "test.Management": MANAGEMENT}


@pytest.fixture
def store(tmp_path: Path) -> TokenStore:
    (tmp_path / "management").write_text("mgmt-old\n\n  mgmt-new  \n")
    (tmp_path / "inference").write_text("inf-1\ninf-2\n")
    settings = AuthSettings(
        management_token_file=tmp_path / "management",
        inference_token_file=tmp_path / "inference",
        key_file=tmp_path / "key_file.json",
    )
    return TokenStore(settings)


@pytest.fixture
async def channel(start_server, store: TokenStore):
    interceptor = TokenAuthInterceptor(store, SCOPES, {HEALTH, *REFLECTION_SERVICES})

    def setup(server: aio.Server) -> None:
        HealthServicer().add_to_server(server)
        enable_reflection(server, ["test.Inference"])

    _, port = await start_server(interceptors=[interceptor], setup=setup)
    async with aio.insecure_channel(f"127.0.0.1:{port}") as chan:
        yield chan


def bearer(token: str) -> list[tuple[str, str]]:
    return [("authorization", f"Bearer {token}")]


async def test_a_scope_token_opens_every_kind_of_call_of_its_api(channel, call_every_kind) -> None:
    assert await call_every_kind(channel, "test.Inference", metadata=bearer("inf-1")) == ECHOED
    assert await call_every_kind(channel, "test.Management", metadata=bearer("mgmt-new")) == ECHOED


@pytest.mark.parametrize("service", ["test.Inference", "test.Management"])
async def test_a_call_without_a_token_is_denied_with_token_invalid(channel, call_every_kind, service) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await call_every_kind(channel, service)
    error = caught.value
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert error.details().startswith("Token Authorization failed")
    info = error_info_from_trailer(error.trailing_metadata())
    assert info is not None
    assert (info.reason, info.domain) == ("TOKEN_INVALID", "modelfleet.io")
    assert info.metadata["problem"] == "missing"
    assert info.metadata["scope"] == SCOPES[service]
    # grpcio-status's rpc_status.from_call rejects a details trailer that disagrees with the call.
    (raw,) = [value for key, value in error.trailing_metadata() if key == "grpc-status-details-bin"]
    status = status_pb2.Status.FromString(raw)
    assert (status.code, status.message) == (grpc.StatusCode.PERMISSION_DENIED.value[0], error.details())


async def test_every_call_shape_is_refused_not_only_unary_ones(channel) -> None:
    async def requests():
        yield b"x"

    calls = [
        channel.unary_stream("/test.Inference/ServerStream")(b"x", timeout=10),
        channel.stream_stream("/test.Inference/Bidi")(requests(), timeout=10),
    ]
    for call in calls:
        with pytest.raises(aio.AioRpcError) as caught:
            async for _ in call:
                raise AssertionError("a refused stream yielded a message")
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    client_stream = channel.stream_unary("/test.Inference/ClientStream")(requests(), timeout=10)
    with pytest.raises(aio.AioRpcError) as caught:
        await client_stream
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_a_wrong_token_is_denied_and_told_apart_from_a_missing_one(channel) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await channel.unary_unary("/test.Inference/Unary")(b"x", metadata=bearer("nope"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    info = error_info_from_trailer(caught.value.trailing_metadata())
    assert info is not None and info.reason == "TOKEN_INVALID"
    assert info.metadata["problem"] == "invalid"


@pytest.mark.parametrize(
    ("service", "token"),
    [("test.Inference", "mgmt-new"), ("test.Management", "inf-1"), ("test.Management", "inf-2")],
)
async def test_each_token_opens_only_its_own_api(channel, service, token) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await channel.unary_unary(f"/{service}/Unary")(b"x", metadata=bearer(token), timeout=10)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_every_token_listed_in_a_file_is_valid_at_once(channel) -> None:
    for token in ("mgmt-old", "mgmt-new"):
        reply = await channel.unary_unary("/test.Management/Unary")(b"m", metadata=bearer(token), timeout=10)
        assert reply == b"m"
    for token in ("inf-1", "inf-2"):
        reply = await channel.unary_unary("/test.Inference/Unary")(b"i", metadata=bearer(token), timeout=10)
        assert reply == b"i"


@pytest.mark.parametrize("value", ["bearer inf-1", "BEARER inf-1", "Bearer   inf-1  "])
async def test_the_bearer_scheme_is_case_insensitive_and_spaces_are_trimmed(channel, value) -> None:
    reply = await channel.unary_unary("/test.Inference/Unary")(b"x", metadata=[("authorization", value)], timeout=10)
    assert reply == b"x"


@pytest.mark.parametrize("value", ["inf-1", "Basic inf-1", "Bearer", "Bearer inf-1x", "Bearer inf-"])
async def test_anything_but_a_whole_bearer_token_is_refused(channel, value) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await channel.unary_unary("/test.Inference/Unary")(b"x", metadata=[("authorization", value)], timeout=10)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_a_service_without_a_scope_is_closed_even_to_valid_tokens(channel) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await channel.unary_unary("/test.Unlisted/Unary")(b"x", metadata=bearer("mgmt-new"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    info = error_info_from_trailer(caught.value.trailing_metadata())
    assert info is not None and info.reason == "TOKEN_INVALID"


async def test_health_and_reflection_need_no_token(channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    reply = await health.Check(health_pb2.HealthCheckRequest(service="modelfleet.liveness"), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING

    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    call = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10)
    listed = {service.name async for reply in call for service in reply.list_services_response.service}
    assert {"test.Inference", HEALTH, *REFLECTION_SERVICES} <= listed


async def test_an_unknown_method_of_a_scoped_api_is_denied_before_it_is_revealed(channel) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await channel.unary_unary("/test.Inference/NoSuchMethod")(b"x", timeout=10)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(aio.AioRpcError) as caught:
        await channel.unary_unary("/test.Inference/NoSuchMethod")(b"x", metadata=bearer("inf-1"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_the_app_may_choose_the_denial_code(start_server, store: TokenStore) -> None:
    interceptor = TokenAuthInterceptor(store, SCOPES, set(), code=grpc.StatusCode.UNAUTHENTICATED)
    _, port = await start_server(interceptors=[interceptor])
    async with aio.insecure_channel(f"127.0.0.1:{port}") as chan:
        with pytest.raises(aio.AioRpcError) as caught:
            await chan.unary_unary("/test.Inference/Unary")(b"x", timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    info = error_info_from_trailer(caught.value.trailing_metadata())
    assert info is not None and info.reason == "TOKEN_INVALID"


async def test_a_valid_call_gets_the_services_own_handler_unwrapped(store: TokenStore) -> None:
    sentinel = grpc.unary_unary_rpc_method_handler(lambda request, context: request)
    interceptor = TokenAuthInterceptor(store, SCOPES, set())

    async def continuation(details: object) -> grpc.RpcMethodHandler:
        return sentinel

    class Details(grpc.HandlerCallDetails):
        method = "/test.Inference/Unary"
        invocation_metadata = (("authorization", "Bearer inf-2"),)

    assert await interceptor.intercept_service(continuation, Details()) is sentinel


def test_a_scope_name_the_store_does_not_know_is_refused_at_construction(store: TokenStore) -> None:
    with pytest.raises(ValueError, match="admin"):
        TokenAuthInterceptor(store, {"test.Inference": "admin"}, set())
