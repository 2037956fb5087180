"""`kubectl port-forward`: the pods/portforward subresource, forwarding to the pod's loopback address.

kubectl 1.37 first asks for a WebSocket carrying SPDY (`SPDY/3.1+portforward.k8s.io`), and falls
back to a plain SPDY/3.1 upgrade (also with KUBECTL_PORT_FORWARD_WEBSOCKETS=false). Either way it
opens an error stream and a data stream per local connection (headers streamtype, port, requestid);
the data stream is piped to <pod IP>:<port>, and the error stream carries a failure message, as the
kubelet does. Called by apiserver.py, which resolves the pod; Services are resolved by kubectl itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp.web

from modelfleet.local import spdy

log = logging.getLogger(__name__)

PROTOCOL = "portforward.k8s.io"
WEBSOCKET_PROTOCOL = "SPDY/3.1+" + PROTOCOL
_CHUNK = 64 * 1024


@dataclass
class _Pair:
    """One forwarded connection: kubectl's error and data streams, and bytes waiting for the pod."""

    port: int
    error_id: int = 0
    data_id: int = 0
    to_pod: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None
    closed: bool = False


class Session:
    """One kubectl port-forward connection: SPDY frames in, pod connections out."""

    def __init__(self, host: str, send: Callable[[bytes], Awaitable[None]]) -> None:
        self.host = host
        self._send = send
        self._decoder = spdy.Decoder()
        self._encoder = spdy.Encoder()
        self._lock = asyncio.Lock()  # header compression state must follow the order bytes are sent
        self._pairs: dict[str, _Pair] = {}
        self._by_stream: dict[int, _Pair] = {}
        self.done = asyncio.Event()

    async def _write(self, build: Callable[[spdy.Encoder], bytes]) -> None:
        async with self._lock:
            with contextlib.suppress(ConnectionError, RuntimeError):
                await self._send(build(self._encoder))

    async def _data(self, stream_id: int, data: bytes, *, fin: bool = False) -> None:
        await self._write(lambda enc: enc.data(stream_id, data, fin=fin))

    async def feed(self, data: bytes) -> None:
        try:
            frames = self._decoder.feed(data)
        except spdy.ProtocolError as exc:
            log.info("port-forward: %s", exc)
            self.done.set()
            return
        for frame in frames:
            await self._on_frame(frame)

    async def _on_frame(self, frame: spdy.Frame) -> None:
        if frame.kind == spdy.SYN_STREAM:
            await self._on_stream(frame)
        elif frame.kind == 0:
            pair = self._by_stream.get(frame.stream_id)
            if pair is not None and frame.stream_id == pair.data_id:
                if frame.data:
                    pair.to_pod.put_nowait(frame.data)
                if frame.fin:
                    pair.to_pod.put_nowait(None)
        elif frame.kind == spdy.RST_STREAM:
            pair = self._by_stream.get(frame.stream_id)
            if pair is not None and pair.task is not None:
                pair.task.cancel()
        elif frame.kind == spdy.PING:
            await self._write(lambda enc: enc.ping(frame.value))
        elif frame.kind == spdy.GOAWAY:
            self.done.set()

    async def _on_stream(self, frame: spdy.Frame) -> None:
        await self._write(lambda enc: enc.syn_reply(frame.stream_id))
        headers = frame.headers
        request_id = headers.get("requestid", str(frame.stream_id))
        try:
            port = int(headers.get("port", ""))
        except ValueError:
            await self._data(frame.stream_id, b"invalid port header", fin=True)
            return
        pair = self._pairs.setdefault(request_id, _Pair(port=port))
        if headers.get("streamtype") == "error":
            pair.error_id = frame.stream_id
        elif headers.get("streamtype") == "data":
            pair.data_id = frame.stream_id
        else:
            await self._write(lambda enc: enc.rst_stream(frame.stream_id, 1))
            return
        self._by_stream[frame.stream_id] = pair
        if pair.error_id and pair.data_id and pair.task is None:
            pair.task = asyncio.create_task(self._forward(request_id, pair))

    async def _forward(self, request_id: str, pair: _Pair) -> None:
        """Pipe the data stream to host:port until either side finishes; report failures on the error stream."""
        message = b""
        writer: asyncio.StreamWriter | None = None
        try:
            try:
                reader, writer = await asyncio.open_connection(self.host, pair.port)
            except OSError as exc:
                message = (
                    f"error forwarding port {pair.port} to pod at {self.host}: "
                    f"dial tcp {self.host}:{pair.port}: connect: "
                    f"{os.strerror(exc.errno).lower() if exc.errno else exc}"
                ).encode()
                return
            upload = asyncio.create_task(_upload(pair.to_pod, writer))
            try:
                while chunk := await reader.read(_CHUNK):
                    await self._data(pair.data_id, chunk)
            finally:
                upload.cancel()
                with contextlib.suppress(asyncio.CancelledError, OSError):
                    await upload
        except OSError as exc:
            message = f"error forwarding port {pair.port}: {exc}".encode()
        finally:
            if writer is not None:
                writer.close()
            await self._finish(request_id, pair, message)

    async def _finish(self, request_id: str, pair: _Pair, message: bytes) -> None:
        if pair.closed:
            return
        pair.closed = True
        await self._data(pair.data_id, b"", fin=True)
        await self._data(pair.error_id, message, fin=True)
        self._pairs.pop(request_id, None)
        self._by_stream.pop(pair.data_id, None)
        self._by_stream.pop(pair.error_id, None)

    async def close(self) -> None:
        for pair in list(self._pairs.values()):
            if pair.task is not None:
                pair.task.cancel()
        tasks = [p.task for p in self._pairs.values() if p.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


async def _upload(queue: asyncio.Queue[bytes | None], writer: asyncio.StreamWriter) -> None:
    while (chunk := await queue.get()) is not None:
        writer.write(chunk)
        await writer.drain()
    if writer.can_write_eof():
        writer.write_eof()


def wants_websocket(request: aiohttp.web.BaseRequest) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


async def serve_websocket(request: aiohttp.web.BaseRequest, host: str) -> aiohttp.web.StreamResponse:
    """SPDY tunnelled in WebSocket binary messages (kubectl's first choice)."""
    ws = aiohttp.web.WebSocketResponse(protocols=(WEBSOCKET_PROTOCOL,), autoping=True, max_msg_size=0)
    await ws.prepare(request)
    session = Session(host, ws.send_bytes)
    try:
        async for message in ws:
            if message.type == aiohttp.WSMsgType.BINARY:
                await session.feed(message.data)
                if session.done.is_set():
                    break
    finally:
        await session.close()
        await ws.close()
    return ws


class _RawParser:
    """Takes aiohttp's place as the connection's reader once it has answered 101 (aiohttp's parser
    only hands WebSocket upgrades over; for SPDY it would parse the frames as HTTP requests)."""

    def __init__(self, queue: asyncio.Queue[bytes | None]) -> None:
        self._queue = queue

    def feed_data(self, data: bytes) -> tuple[bool, bytes]:
        self._queue.put_nowait(bytes(data))
        return False, b""

    def feed_eof(self) -> None:
        self._queue.put_nowait(None)


async def serve_spdy(request: aiohttp.web.BaseRequest, host: str) -> aiohttp.web.StreamResponse:
    """A plain SPDY/3.1 upgrade (kubectl's fallback)."""
    transport = request.transport
    if transport is None:
        raise ConnectionResetError("the client went away")
    incoming: asyncio.Queue[bytes | None] = asyncio.Queue()
    request.protocol.set_parser(_RawParser(incoming))  # type: ignore[arg-type]

    async def send(data: bytes) -> None:
        if transport.is_closing():
            raise ConnectionResetError("the client went away")
        transport.write(data)

    response = aiohttp.web.StreamResponse(
        status=101, headers={"Connection": "Upgrade", "Upgrade": "SPDY/3.1", "X-Stream-Protocol-Version": PROTOCOL}
    )
    await response.prepare(request)
    session = Session(host, send)
    try:
        while not session.done.is_set() and (data := await incoming.get()) is not None:
            await session.feed(data)
    finally:
        await session.close()
        transport.close()
    return response


def spdy_protocols(request: aiohttp.web.BaseRequest) -> list[str]:
    return [p.strip() for value in request.headers.getall("X-Stream-Protocol-Version", []) for p in value.split(",")]


async def serve(request: aiohttp.web.BaseRequest, host: str) -> aiohttp.web.StreamResponse:
    """Answer a pods/<name>/portforward request, forwarding to `host` (the pod's address)."""
    if wants_websocket(request):
        return await serve_websocket(request, host)
    if request.headers.get("Upgrade", "").upper().startswith("SPDY/3") and PROTOCOL in spdy_protocols(request):
        return await serve_spdy(request, host)
    return aiohttp.web.json_response(_upgrade_required(), status=400)


def _upgrade_required() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Status",
        "status": "Failure",
        "code": 400,
        "reason": "BadRequest",
        "message": f"Upgrade request required: ask for a WebSocket ({WEBSOCKET_PROTOCOL}) or SPDY/3.1 "
        f"with X-Stream-Protocol-Version: {PROTOCOL}",
    }
