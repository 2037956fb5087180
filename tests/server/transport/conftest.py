"""Fixtures for the transport tests: real grpc.aio servers on 127.0.0.1:0 with a tiny echo service.

`test.Inference`, `test.Management` and `test.Unlisted` each have one method per streaming kind
(and Double), on raw bytes (no serializers), so auth and size limits are tested on every call
shape without generated code.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Protocol

import grpc
import pytest
from grpc import aio

from modelfleet.server.rpc.transport import bind

import mf_polling as polling

ECHO_SERVICES = ("test.Inference", "test.Management", "test.Unlisted")


async def _unary(request: bytes, context: aio.ServicerContext) -> bytes:
    return request


async def _double(request: bytes, context: aio.ServicerContext) -> bytes:
    return request + request


async def _server_stream(request: bytes, context: aio.ServicerContext) -> AsyncIterator[bytes]:
    for _ in range(3):
        yield request


async def _client_stream(requests: AsyncIterator[bytes], context: aio.ServicerContext) -> bytes:
    return b"".join([item async for item in requests])


async def _bidi(requests: AsyncIterator[bytes], context: aio.ServicerContext) -> AsyncIterator[bytes]:
    async for item in requests:
        yield item


def echo_handlers() -> list[grpc.GenericRpcHandler]:
    methods = {
        "Unary": grpc.unary_unary_rpc_method_handler(_unary),
        "Double": grpc.unary_unary_rpc_method_handler(_double),
        "ServerStream": grpc.unary_stream_rpc_method_handler(_server_stream),
        "ClientStream": grpc.stream_unary_rpc_method_handler(_client_stream),
        "Bidi": grpc.stream_stream_rpc_method_handler(_bidi),
    }
    return [grpc.method_handlers_generic_handler(service, methods) for service in ECHO_SERVICES]


async def _call_every_kind(
    channel: aio.Channel, service: str, *, metadata: Sequence[tuple[str, str]] = ()
) -> list[bytes]:
    """Call the four methods of one echo service; returns what came back (raises AioRpcError)."""
    results = [await channel.unary_unary(f"/{service}/Unary")(b"u", metadata=metadata, timeout=10)]
    stream = channel.unary_stream(f"/{service}/ServerStream")(b"s", metadata=metadata, timeout=10)
    results.append(b"".join([item async for item in stream]))

    async def requests() -> AsyncIterator[bytes]:
        yield b"c1"
        yield b"c2"

    results.append(await channel.stream_unary(f"/{service}/ClientStream")(requests(), metadata=metadata, timeout=10))
    bidi = channel.stream_stream(f"/{service}/Bidi")(requests(), metadata=metadata, timeout=10)
    results.append(b"".join([item async for item in bidi]))
    return results


@pytest.fixture
def call_every_kind() -> Callable[..., Awaitable[list[bytes]]]:
    """Call Unary, ServerStream, ClientStream and Bidi of one echo service; returns the answers.

    A working service answers [b"u", b"sss", b"c1c2", b"c1c2"].
    """
    return _call_every_kind


class StartServer(Protocol):
    def __call__(
        self,
        *,
        interceptors: Sequence[aio.ServerInterceptor] = (),
        options: Sequence[tuple[str, Any]] = (),
        credentials: grpc.ServerCredentials | None = None,
        setup: Callable[[aio.Server], None] | None = None,
    ) -> Awaitable[tuple[aio.Server, int]]: ...


@pytest.fixture
async def start_server() -> AsyncIterator[StartServer]:
    """Start servers with the echo service (plus whatever `setup` adds); all stopped at teardown."""
    servers: list[aio.Server] = []

    async def start(
        *,
        interceptors: Sequence[aio.ServerInterceptor] = (),
        options: Sequence[tuple[str, Any]] = (),
        credentials: grpc.ServerCredentials | None = None,
        setup: Callable[[aio.Server], None] | None = None,
    ) -> tuple[aio.Server, int]:
        server = aio.server(interceptors=list(interceptors), options=list(options))
        server.add_generic_rpc_handlers(echo_handlers())
        if setup is not None:
            setup(server)
        port = bind(server, "127.0.0.1:0", credentials)
        await server.start()
        servers.append(server)
        return server, port

    yield start
    await asyncio.gather(*(server.stop(None) for server in servers))


async def _wait_until(predicate: Callable[[], Awaitable[bool]], *, timeout: float = 10.0, what: str = "") -> None:
    """Poll an async condition until true; fail after `timeout` seconds."""
    await polling.eventually(predicate, timeout=timeout, what=what)


@pytest.fixture
def wait_until() -> Callable[..., Awaitable[None]]:
    """`await wait_until(async_predicate, timeout=..., what=...)`: poll, never sleep-and-hope."""
    return _wait_until
