"""Slow http(s) sources: a total download deadline, a minimum rate, abandoned downloads that stop,
and a download pool of its own, so a trickling server never holds up loads from the model store."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc import aio

from modelfleet.protos import management_pb2, management_pb2_grpc
from modelfleet.server.app import running_app
from modelfleet.server.errors import ErrorKind, ModelFleetError, Reason
from modelfleet.server.models.download import Downloader
from modelfleet.server.models.download_guard import TransferLimits
from modelfleet.server.models.sources import SourceResolver
from modelfleet.server.settings import AuthSettings, ModelSettings, NetworkSettings, Settings, SourceSettings

import mf_polling as polling

DEFAULT_POOL = min(32, (os.cpu_count() or 1) + 4)
"""Threads of the loop's default executor (asyncio's default), which store registrations use:
downloads on that pool once starved them."""
SLOW_REGISTRATIONS = DEFAULT_POOL + 2
TRICKLE_LIMIT_S = 30.0
"""Longest a trickling connection lasts if the client never gives up (teardown ends it at once)."""


@dataclass
class Trickle:
    """A loopback HTTP server that sends one byte per `interval_s`, in the headers or in the body."""

    base: str
    interval_s: float
    stop: threading.Event
    open_connections: int = 0
    connections: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return self.base + path

    def serve(self, conn: socket.socket) -> None:
        with self.lock:
            self.connections += 1
            self.open_connections += 1
        try:
            with conn:
                request = b""
                while b"\r\n\r\n" not in request:
                    data = conn.recv(4096)
                    if not data:
                        return
                    request += data
                trickle_headers = request.startswith(b"GET /headers/")
                head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n"
                if not trickle_headers:
                    conn.sendall(head)
                payload = head if trickle_headers else b"x" * 1_000_000
                deadline = time.monotonic() + TRICKLE_LIMIT_S
                for byte in payload:
                    # The server's own pacing (1 byte per interval), not a test waiting for a state.
                    if self.stop.wait(self.interval_s) or time.monotonic() > deadline:
                        return
                    conn.sendall(bytes([byte]))
        except OSError:
            return  # the client went away: what the cancellation tests wait for
        finally:
            with self.lock:
                self.open_connections -= 1


@pytest.fixture
def trickle() -> Iterator[Callable[[float], Trickle]]:
    started: list[tuple[socket.socket, Trickle]] = []

    def start(interval_s: float) -> Trickle:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(32)
        server = Trickle(f"http://127.0.0.1:{listener.getsockname()[1]}", interval_s, threading.Event())

        def accept() -> None:
            while True:
                try:
                    conn, _ = listener.accept()
                except OSError:
                    return
                threading.Thread(target=server.serve, args=(conn,), daemon=True).start()

        threading.Thread(target=accept, daemon=True).start()
        started.append((listener, server))
        return server

    yield start
    for listener, server in started:
        server.stop.set()
        listener.close()


def resolver_for(model_store: Path, *patterns: str, **overrides: Any) -> SourceResolver:
    return SourceResolver(SourceSettings(model_store=model_store, allowed_source_patterns=patterns, **overrides))


def part_files(model_store: Path) -> list[Path]:
    downloads = model_store / ".downloads"
    return sorted(downloads.rglob("*")) if downloads.exists() else []


@pytest.mark.parametrize("where", ["body", "headers"])
async def test_a_source_sending_one_byte_per_second_is_refused_at_the_total_deadline(
    trickle: Callable[[float], Trickle], model_store: Path, where: str
) -> None:
    server = trickle(1.0)
    # No minimum rate: the total deadline alone must end it (before, it only bounded each read).
    resolver = resolver_for(
        model_store, re.escape(server.base) + "/.*", download_timeout_s=2.0, min_download_rate_bytes_s=0
    )
    started = time.monotonic()

    with pytest.raises(ModelFleetError) as caught:
        await resolver.resolve(server.url(f"/{where}/m.pt"))

    elapsed = time.monotonic() - started
    assert (caught.value.kind, caught.value.reason) == (ErrorKind.DEADLINE_EXCEEDED, Reason.SOURCE_FETCH_FAILED)
    assert "deadline of 2s" in caught.value.message and "--download-timeout" in caught.value.message
    assert 1.9 <= elapsed < 3.5
    assert [path for path in part_files(model_store) if path.is_file()] == []  # no partial file left


async def test_a_source_below_the_minimum_rate_is_refused_after_the_grace_period(
    trickle: Callable[[float], Trickle], model_store: Path
) -> None:
    server = trickle(0.05)  # about 20 bytes/s
    resolver = resolver_for(
        model_store,
        re.escape(server.base) + "/.*",
        download_timeout_s=30.0,
        min_download_rate_bytes_s=1000,
        download_rate_grace_s=0.5,
    )
    started = time.monotonic()

    with pytest.raises(ModelFleetError) as caught:
        await resolver.resolve(server.url("/body/m.pt"))

    assert (caught.value.kind, caught.value.reason) == (ErrorKind.DEADLINE_EXCEEDED, Reason.SOURCE_FETCH_FAILED)
    assert "too slow" in caught.value.message and "1000 bytes/s" in caught.value.message
    assert time.monotonic() - started < 5.0


async def test_a_fast_source_passes_the_minimum_rate(http_server: Any, model_store: Path) -> None:
    http_server.add("big.pt", b"m" * (4 * 1024 * 1024))
    resolver = resolver_for(
        model_store, re.escape(http_server.base) + "/.*", min_download_rate_bytes_s=64 * 1024, download_rate_grace_s=0.5
    )

    source = await resolver.resolve(http_server.url("/chunked/big.pt"))

    assert source.path.stat().st_size == 4 * 1024 * 1024


async def test_abandoned_downloads_stop_and_free_their_threads(
    trickle: Callable[[float], Trickle], http_server: Any, model_store: Path
) -> None:
    slow = trickle(0.1)
    http_server.add("tiny.pt", b"model")
    resolver = resolver_for(
        model_store,
        re.escape(slow.base) + "/.*",
        re.escape(http_server.base) + "/.*",
        download_timeout_s=30.0,
        min_download_rate_bytes_s=0,
        max_concurrent_downloads=3,
    )
    tasks = [asyncio.create_task(resolver.resolve(slow.url(f"/body/m{i}.pt"))) for i in range(3)]
    await polling.eventually(lambda: slow.open_connections == 3, timeout=10, what="3 slow downloads running")

    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)

    # Long before their 30 s deadline: each thread stops at its next read and closes its connection.
    await polling.eventually(
        lambda: slow.open_connections == 0 and not resolver.downloader.active,
        timeout=5,
        what="abandoned downloads stopped",
        diagnose=lambda: f"open={slow.open_connections} active={len(resolver.downloader.active)}",
    )
    assert [path for path in part_files(model_store) if path.is_file()] == []
    started = time.monotonic()
    source = await resolver.resolve(http_server.url("/files/tiny.pt"))
    assert source.path.read_bytes() == b"model"
    assert time.monotonic() - started < 2.0


async def test_a_download_beyond_the_concurrency_limit_waits_for_a_slot_only_within_its_deadline(
    trickle: Callable[[float], Trickle], http_server: Any, tmp_path: Path
) -> None:
    slow = trickle(0.1)
    http_server.add("tiny.pt", b"model")
    downloader = Downloader(max_concurrent=1)

    def fetch(url: str, timeout_s: float, name: str) -> Any:
        return downloader.download(
            url,
            tmp_path / name / "m.pt",
            max_bytes=10**7,
            limits=TransferLimits(timeout_s=timeout_s),
            sha256=None,
            check_redirect=lambda _url: None,
        )

    holder = asyncio.create_task(fetch(slow.url("/body/m.pt"), 30.0, "slow"))
    await polling.eventually(lambda: slow.open_connections == 1, timeout=10, what="the slot taken")

    with pytest.raises(ModelFleetError) as caught:
        await fetch(http_server.url("/files/tiny.pt"), 0.5, "queued")
    assert caught.value.kind is ErrorKind.DEADLINE_EXCEEDED
    assert "download slots stayed busy" in caught.value.message
    assert http_server.state.requests == []  # it never started

    waiting = asyncio.create_task(fetch(http_server.url("/files/tiny.pt"), 10.0, "next"))
    holder.cancel()
    assert (await waiting).read_bytes() == b"model"


# ---- through the real server: slow sources never hold up registrations from the model store ----
@pytest.fixture
async def management(tmp_path: Path, model_store: Path, trickle: Callable[[float], Trickle]) -> AsyncIterator[Any]:
    slow = trickle(1.0)
    settings = Settings(
        network=NetworkSettings(inference_address="127.0.0.1:0", management_address="127.0.0.1:0"),
        auth=AuthSettings(enabled=False, enable_model_api=True, key_file=tmp_path / "key_file.json"),
        sources=SourceSettings(
            model_store=model_store,
            allowed_source_patterns=(re.escape(slow.base) + "/.*",),
            download_timeout_s=4.0,
            max_concurrent_downloads=SLOW_REGISTRATIONS,
        ),
        models=ModelSettings(default_workers=1),
        status_mode="conventional",
    )
    async with running_app(settings) as app, aio.insecure_channel(app.management_address) as channel:
        yield slow, management_pb2_grpc.ManagementAPIsServiceStub(channel)


async def test_a_store_registration_finishes_quickly_while_slow_downloads_run(
    management: Any, tiny_model: Path
) -> None:
    slow, stub = management
    began = time.monotonic()
    slow_calls = [
        asyncio.ensure_future(stub.RegisterModel(management_pb2.RegisterModelRequest(url=slow.url(f"/body/m{i}.pt"))))
        for i in range(SLOW_REGISTRATIONS)
    ]
    await polling.eventually(
        lambda: slow.open_connections >= DEFAULT_POOL, timeout=10, what="as many slow downloads as the default pool"
    )
    started = time.monotonic()

    await stub.RegisterModel(management_pb2.RegisterModelRequest(url=tiny_model.name, synchronous=True))

    assert time.monotonic() - started < 2.0
    for call in slow_calls:
        with pytest.raises(aio.AioRpcError) as caught:
            await call
        assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        assert "deadline" in (caught.value.details() or "")
    assert time.monotonic() - began < 4.0 + 2.0  # the 4 s deadline, plus the abandon slack and a margin
