"""Deadline, minimum rate and cancellation for one http(s) download, enforced at every socket read.

Used by download.py: its urllib opener gets connections whose sockets (plain and TLS) ask the
TransferGuard before each read, so a server that trickles bytes (1 B/s) cannot stretch a
download past its total deadline, and an abandoned download stops at its next read. The guard
also sets each read's socket timeout to the time left, so a silent server is cut off on time.
Does no I/O of its own and never touches the event loop.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.request import HTTPHandler, HTTPSHandler, Request

from ..errors import ErrorKind, ModelFleetError, Reason


@dataclass(frozen=True)
class TransferLimits:
    """The time limits of one download (from SourceSettings)."""

    timeout_s: float
    """The whole download, from the call to the last byte."""
    min_rate_bytes_s: int = 0
    """Average bytes/s required once grace_s has passed; 0 = none."""
    grace_s: float = 10.0


class TransferGuard:
    """Shared by the download thread (reads) and the caller (abort); thread-safe by construction:
    the caller only sets an Event, the thread alone reads and counts."""

    def __init__(self, url: str, limits: TransferLimits) -> None:
        self.url = url
        self.limits = limits
        self.started = time.monotonic()
        self.deadline = self.started + limits.timeout_s
        self.received = 0
        self._aborted = threading.Event()
        self._rate_from: float | None = None
        """When the transfer itself began (after waiting for a slot); the grace period counts from here."""

    # ---- the caller's side ------------------------------------------------------------------
    def abort(self) -> None:
        """The caller gave up (cancelled or timed out): the thread stops at its next read."""
        self._aborted.set()

    @property
    def aborted(self) -> bool:
        return self._aborted.is_set()

    def remaining(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    # ---- the download thread's side ---------------------------------------------------------
    def begin(self) -> None:
        self._rate_from = time.monotonic()
        self.check()

    def check(self) -> float:
        """Raise if the download must stop now; else the longest the next read may block."""
        now = time.monotonic()
        if self._aborted.is_set():
            raise self.failed(ErrorKind.DEADLINE_EXCEEDED, "the registration was cancelled or gave up")
        left = self.deadline - now
        if left <= 0:
            raise self.deadline_error()
        rate = self.limits.min_rate_bytes_s
        if rate <= 0 or self._rate_from is None:
            return left
        # The rate falls below the minimum once elapsed > received / rate (and the grace is over).
        until_slow = self._rate_from + max(self.limits.grace_s, self.received / rate) - now
        if until_slow <= 0:
            raise self.too_slow_error(now)
        return min(left, until_slow)

    def timed_out(self) -> ModelFleetError:
        """The error for a socket timeout: the guard set it, so it is the deadline or the rate."""
        now = time.monotonic()
        if self._aborted.is_set() or now >= self.deadline or self._rate_from is None:
            return self.deadline_error()
        return self.too_slow_error(now)

    def deadline_error(self) -> ModelFleetError:
        return self.failed(
            ErrorKind.DEADLINE_EXCEEDED,
            f"not finished within the download deadline of {self.limits.timeout_s:g}s (--download-timeout "
            f"limits the whole download; {self.received} bytes received)",
        )

    def too_slow_error(self, now: float) -> ModelFleetError:
        elapsed = now - (self._rate_from if self._rate_from is not None else self.started)
        return self.failed(
            ErrorKind.DEADLINE_EXCEEDED,
            f"too slow: {self.received} bytes in {elapsed:.1f}s, below the minimum of "
            f"{self.limits.min_rate_bytes_s} bytes/s after the first {self.limits.grace_s:g}s "
            "(--min-download-rate, --download-rate-grace)",
        )

    def failed(self, kind: ErrorKind, why: str) -> ModelFleetError:
        message = f"downloading model source {self.url!r} failed: {why}"
        return ModelFleetError(kind, Reason.SOURCE_FETCH_FAILED, message, metadata={"url": self.url})

    def before_read(self, sock: socket.socket) -> None:
        sock.settimeout(max(self.check(), 0.001))

    def after_read(self, count: int) -> None:
        self.received += count


class _GuardedSocket(socket.socket):
    """A plain TCP socket that asks its guard before every read (http.client reads via recv_into)."""

    guard: TransferGuard | None = None

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        if self.guard is not None:
            self.guard.before_read(self)
        count = super().recv_into(buffer, nbytes, flags)
        if self.guard is not None:
            self.guard.after_read(count)
        return count

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if self.guard is not None:
            self.guard.before_read(self)
        data = super().recv(bufsize, flags)
        if self.guard is not None:
            self.guard.after_read(len(data))
        return data


class _GuardedSSLSocket(ssl.SSLSocket):
    """The TLS counterpart; the guard is attached after the handshake (bounded by its own timeout)."""

    guard: TransferGuard | None = None

    def recv_into(self, buffer: Any, nbytes: int | None = None, flags: int = 0) -> int:
        if self.guard is not None:
            self.guard.before_read(self)
        count = super().recv_into(buffer, nbytes, flags)
        if self.guard is not None:
            self.guard.after_read(count)
        return count

    def recv(self, buflen: int = 1024, flags: int = 0) -> bytes:
        if self.guard is not None:
            self.guard.before_read(self)
        data = super().recv(buflen, flags)
        if self.guard is not None:
            self.guard.after_read(len(data))
        return data


def _guarded_connect(guard: TransferGuard) -> Any:
    """socket.create_connection, bounded by the time left, returning a _GuardedSocket."""

    def create(address: tuple[str, int], timeout: Any = None, source_address: Any = None) -> socket.socket:
        raw = socket.create_connection(address, max(guard.check(), 0.001), source_address)
        sock = _GuardedSocket(raw.family, raw.type, raw.proto, fileno=raw.detach())
        sock.settimeout(max(guard.check(), 0.001))
        sock.guard = guard
        return sock

    return create


class _GuardedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, *args: Any, guard: TransferGuard, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = _guarded_connect(guard)


class _GuardedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, *args: Any, guard: TransferGuard, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._guard = guard
        self._create_connection = _guarded_connect(guard)

    def connect(self) -> None:
        super().connect()
        if isinstance(self.sock, _GuardedSSLSocket):
            self.sock.guard = self._guard


class GuardedHTTPHandler(HTTPHandler):
    def __init__(self, guard: TransferGuard) -> None:
        super().__init__()
        self._guard = guard

    def http_open(self, req: Request) -> http.client.HTTPResponse:
        def connection(*args: Any, **kwargs: Any) -> http.client.HTTPConnection:
            return _GuardedHTTPConnection(*args, guard=self._guard, **kwargs)

        return self.do_open(connection, req)


class GuardedHTTPSHandler(HTTPSHandler):
    """Default certificate verification, always: the context is ssl.create_default_context()'s."""

    def __init__(self, guard: TransferGuard) -> None:
        context = ssl.create_default_context()
        context.sslsocket_class = _GuardedSSLSocket
        super().__init__(context=context)
        self._guard = guard
        self._context_for_guard = context

    def https_open(self, req: Request) -> http.client.HTTPResponse:
        def connection(*args: Any, **kwargs: Any) -> http.client.HTTPConnection:
            return _GuardedHTTPSConnection(*args, guard=self._guard, **kwargs)

        return self.do_open(connection, req, context=self._context_for_guard)
