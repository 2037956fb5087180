"""A real loopback HTTP file server (normal, chunked, stalling, redirecting, failing routes) and resolver helpers."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest

from modelfleet.server.errors import ErrorKind, ModelFleetError, Reason
from modelfleet.server.models.sources import SourceResolver
from modelfleet.server.settings import SourceSettings

STALL_LIMIT_S = 10.0
"""Longest a stalling route holds its connection; teardown releases it at once."""


@dataclass
class ServerState:
    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: ServerState  # set on a per-server subclass

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _headers(self, code: int, headers: dict[str, str]) -> None:
        self.send_response(code)
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()

    def do_GET(self) -> None:
        self.state.requests.append(self.path)
        parts = urlsplit(self.path)
        route, _, rest = unquote(parts.path).lstrip("/").partition("/")
        self.close_connection = True
        if route == "status":
            self._headers(int(rest.split("/")[0]), {"Content-Length": "0"})
        elif route == "redirect":
            self._headers(302, {"Location": parse_qs(parts.query)["to"][0], "Content-Length": "0"})
        elif route == "loop":  # redirects to itself forever
            self._headers(302, {"Location": self.path, "Content-Length": "0"})
        elif rest not in self.state.files:
            self._headers(404, {"Content-Length": "0"})
        elif route == "files":
            body = self.state.files[rest]
            self._headers(200, {"Content-Length": str(len(body))})
            self.wfile.write(body)
        elif route == "chunked":  # no Content-Length: the size is only known while reading
            self._headers(200, {"Transfer-Encoding": "chunked"})
            body = self.state.files[rest]
            for start in range(0, len(body), 4096):
                chunk = body[start : start + 4096]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")
        elif route == "stall":  # announces the whole body, sends half, then goes silent
            body = self.state.files[rest]
            self._headers(200, {"Content-Length": str(len(body))})
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.state.release.wait(STALL_LIMIT_S)
        else:
            self._headers(404, {"Content-Length": "0"})


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that give up (timeouts, size limits, rejected certificates) are expected here."""


@dataclass
class FileServer:
    base: str
    """http://127.0.0.1:<port>"""
    state: ServerState

    def url(self, path: str) -> str:
        return self.base + path

    def add(self, name: str, body: bytes) -> None:
        self.state.files[name] = body


def start_server(wrap: Callable[[ThreadingHTTPServer], None] | None = None) -> tuple[ThreadingHTTPServer, ServerState]:
    state = ServerState()
    handler = type("Handler", (_Handler,), {"state": state})
    server = _QuietServer(("127.0.0.1", 0), handler)
    if wrap is not None:
        wrap(server)
    return server, state


@pytest.fixture(autouse=True)
def no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """urllib honours *_proxy variables; the loopback servers here must be reached directly."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def serve() -> Iterator[Callable[..., FileServer]]:
    """Start real loopback HTTP servers (optionally with a socket wrapper, e.g. TLS); stopped at teardown."""
    started: list[tuple[ThreadingHTTPServer, ServerState, threading.Thread]] = []

    def start(*, scheme: str = "http", wrap: Callable[[ThreadingHTTPServer], None] | None = None) -> FileServer:
        server, state = start_server(wrap)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        started.append((server, state, thread))
        return FileServer(f"{scheme}://127.0.0.1:{server.server_address[1]}", state)

    yield start
    for server, state, thread in started:
        state.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def http_server(serve: Callable[..., FileServer]) -> FileServer:
    server: FileServer = serve()
    return server


@pytest.fixture
def make_resolver(model_store: Path) -> Callable[..., SourceResolver]:
    """A SourceResolver over the test's model store; keyword arguments override SourceSettings fields."""

    def make(*patterns: str, **overrides: Any) -> SourceResolver:
        settings: dict[str, Any] = {"model_store": model_store, "download_timeout_s": 5.0}
        settings.update(overrides)
        return SourceResolver(SourceSettings(allowed_source_patterns=patterns, **settings))

    return make


Refused = Callable[[SourceResolver, str, ErrorKind, Reason], Awaitable[ModelFleetError]]


@pytest.fixture
def refused() -> Refused:
    """`await refused(resolver, url, kind, reason)`: resolving must fail with exactly that kind and reason."""

    async def check(resolver: SourceResolver, url: str, kind: ErrorKind, reason: Reason) -> ModelFleetError:
        with pytest.raises(ModelFleetError) as caught:
            await resolver.resolve(url)
        assert (caught.value.kind, caught.value.reason) == (kind, reason), caught.value.message
        return caught.value

    return check
