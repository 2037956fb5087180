"""An object store that stops sending mid-body cannot hold a download past --download-timeout."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest

from modelfleet.protos.contract import Reason

StartApp = Any
BODY_BYTES = 1024 * 1024


class _Stalling(BaseHTTPRequestHandler):
    """Answers HEAD like S3, then sends half the body on GET and goes silent until released."""

    protocol_version = "HTTP/1.1"
    release: threading.Event

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _head(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(BODY_BYTES))
        self.send_header("ETag", '"stalling"')
        self.end_headers()

    def do_HEAD(self) -> None:
        self._head()

    def do_GET(self) -> None:
        self._head()
        self.wfile.write(b"x" * (BODY_BYTES // 2))
        self.wfile.flush()
        self.release.wait(30)
        self.close_connection = True


@pytest.fixture
def stalling_endpoint() -> Iterator[str]:
    release = threading.Event()
    handler = type("Handler", (_Stalling,), {"release": release})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    release.set()
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


async def test_a_stalled_body_ends_at_the_download_deadline_and_leaves_no_file(
    start_app: StartApp, stalling_endpoint: str, tmp_path: Path
) -> None:
    started = time.monotonic()

    async with start_app(r"s3://models/.*", storage_endpoint_url=stalling_endpoint, download_timeout_s=2.0) as api:
        failure = await api.refused("s3://models/slow/tiny.pt")
        elapsed = time.monotonic() - started
        left = [p for p in (tmp_path / "downloads").rglob("*") if p.is_file()]

    assert (failure.code, failure.reason) == (grpc.StatusCode.DEADLINE_EXCEEDED, Reason.SOURCE_FETCH_FAILED.value)
    assert "download deadline of 2s" in failure.details
    assert elapsed < 10.0
    assert left == []
