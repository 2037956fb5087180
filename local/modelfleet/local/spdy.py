"""SPDY/3.1 framing, the server half that `kubectl port-forward` needs (over raw TCP or a WebSocket).

kubectl speaks SPDY to the API server for port-forward, either directly after an HTTP upgrade or
tunnelled in WebSocket binary messages. This module turns the byte stream into frames and frames into
bytes, including the zlib-compressed header blocks (one compression context per direction, primed
with the SPDY/3 dictionary). portforward.py runs the protocol on top. No I/O here.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

VERSION = 3
SYN_STREAM, SYN_REPLY, RST_STREAM, SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE = 1, 2, 3, 4, 6, 7, 8, 9
FLAG_FIN = 0x01
RST_CANCEL = 5

_WORDS = (
    "options head post put delete trace accept accept-charset accept-encoding accept-language accept-ranges "
    "age allow authorization cache-control connection content-base content-encoding content-language "
    "content-length content-location content-md5 content-range content-type date etag expect expires from "
    "host if-match if-modified-since if-none-match if-range if-unmodified-since last-modified location "
    "max-forwards pragma proxy-authenticate proxy-authorization range referer retry-after server te trailer "
    "transfer-encoding upgrade user-agent vary via warning www-authenticate method get status"
).split() + ["200 OK", "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin"]
_TAIL = (
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized"
    "403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable"
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT"
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,"
    "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
)
DICTIONARY = b"".join(struct.pack(">I", len(w)) + w.encode() for w in _WORDS) + _TAIL.encode()
"""The header-compression dictionary of the SPDY/3 specification (section 2.6.10.1), 1423 bytes."""


@dataclass(frozen=True)
class Frame:
    """One frame: a control frame (`kind` > 0) or a data frame (`kind` == 0, `stream_id` set)."""

    kind: int
    flags: int
    stream_id: int = 0
    data: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    value: int = 0  # RST_STREAM status, PING id, GOAWAY status

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


class ProtocolError(Exception):
    """The peer sent bytes that are not SPDY/3 (the session ends)."""


class Decoder:
    """Bytes in, frames out; keeps partial frames and the header decompression context."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._inflate = zlib.decompressobj(zdict=DICTIONARY)

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames: list[Frame] = []
        while len(self._buffer) >= 8:
            length = int.from_bytes(self._buffer[5:8], "big")
            if len(self._buffer) < 8 + length:
                break
            head, payload = bytes(self._buffer[:8]), bytes(self._buffer[8 : 8 + length])
            del self._buffer[: 8 + length]
            frames.append(self._frame(head, payload))
        return frames

    def _frame(self, head: bytes, payload: bytes) -> Frame:
        flags = head[4]
        if not head[0] & 0x80:
            return Frame(0, flags, stream_id=int.from_bytes(head[:4], "big") & 0x7FFFFFFF, data=payload)
        version, kind = struct.unpack(">HH", head[:4])
        if version & 0x7FFF != VERSION:
            raise ProtocolError(f"SPDY version {version & 0x7FFF} (only 3 is spoken)")
        if kind == SYN_STREAM:
            stream_id = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
            return Frame(kind, flags, stream_id=stream_id, headers=self._headers(payload[10:]))
        if kind in (SYN_REPLY, HEADERS):
            return Frame(
                kind,
                flags,
                stream_id=int.from_bytes(payload[:4], "big") & 0x7FFFFFFF,
                headers=self._headers(payload[4:]),
            )
        if kind == RST_STREAM:
            stream_id, status = struct.unpack(">II", payload[:8])
            return Frame(kind, flags, stream_id=stream_id & 0x7FFFFFFF, value=status)
        if kind == PING:
            return Frame(kind, flags, value=int.from_bytes(payload[:4], "big"))
        if kind == GOAWAY:
            return Frame(
                kind,
                flags,
                stream_id=int.from_bytes(payload[:4], "big") & 0x7FFFFFFF,
                value=int.from_bytes(payload[4:8], "big"),
            )
        return Frame(kind, flags, data=payload)  # SETTINGS, WINDOW_UPDATE, ...: nothing to do

    def _headers(self, block: bytes) -> dict[str, str]:
        try:
            raw = self._inflate.decompress(block)
        except zlib.error as exc:
            raise ProtocolError(f"bad header block: {exc}") from exc
        count, pos = int.from_bytes(raw[:4], "big"), 4
        headers: dict[str, str] = {}
        for _ in range(count):
            size = int.from_bytes(raw[pos : pos + 4], "big")
            name = raw[pos + 4 : pos + 4 + size].decode("latin-1")
            pos += 4 + size
            size = int.from_bytes(raw[pos : pos + 4], "big")
            headers[name.lower()] = raw[pos + 4 : pos + 4 + size].decode("latin-1")
            pos += 4 + size
        return headers


class Encoder:
    """Frames out as bytes; owns the header compression context (encode in send order)."""

    def __init__(self) -> None:
        self._deflate = zlib.compressobj(zdict=DICTIONARY)

    def _control(self, kind: int, flags: int, payload: bytes) -> bytes:
        return struct.pack(">HHI", 0x8000 | VERSION, kind, (flags << 24) | len(payload)) + payload

    def syn_reply(self, stream_id: int, headers: dict[str, str] | None = None) -> bytes:
        pairs = headers or {}
        block = struct.pack(">I", len(pairs)) + b"".join(
            struct.pack(">I", len(k)) + k.encode() + struct.pack(">I", len(v)) + v.encode() for k, v in pairs.items()
        )
        compressed = self._deflate.compress(block) + self._deflate.flush(zlib.Z_SYNC_FLUSH)
        return self._control(SYN_REPLY, 0, struct.pack(">I", stream_id) + compressed)

    def data(self, stream_id: int, data: bytes, *, fin: bool = False) -> bytes:
        return struct.pack(">II", stream_id, ((FLAG_FIN if fin else 0) << 24) | len(data)) + data

    def rst_stream(self, stream_id: int, status: int = RST_CANCEL) -> bytes:
        return self._control(RST_STREAM, 0, struct.pack(">II", stream_id, status))

    def ping(self, ping_id: int) -> bytes:
        return self._control(PING, 0, struct.pack(">I", ping_id))

    def goaway(self, last_stream_id: int) -> bytes:
        return self._control(GOAWAY, 0, struct.pack(">II", last_stream_id, 0))
