"""Fetch an allow-listed http(s) model source into the download folder (stdlib urllib, off the event loop).

Called by sources.SourceResolver after it has checked the URL; every redirect hop goes back through
the resolver's check before it is followed. Downloads run on their own bounded thread pool
(Downloader), never the loop's default executor, so slow sources cannot starve model-store loads.
Streams to a private temp file, enforces the size limit, the total deadline and the minimum rate
(download_guard), verifies an optional sha256, then renames atomically. Never disables TLS
verification and never keeps a partial or mismatching file.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import logging
import os
import re
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path, PurePosixPath
from typing import IO, Any
from urllib.error import HTTPError, URLError
from urllib.parse import unquote, urljoin, urlsplit
from urllib.request import HTTPRedirectHandler, Request, build_opener

from ..errors import ErrorKind, ModelFleetError, Reason
from .download_guard import GuardedHTTPHandler, GuardedHTTPSHandler, TransferGuard, TransferLimits

log = logging.getLogger(__name__)

CHUNK_BYTES = 1024 * 1024
ABANDON_SLACK_S = 1.0
"""Past its deadline the caller stops waiting even if the thread is stuck where no read is
(e.g. a DNS lookup); the thread then ends at its next read."""
_UNSAFE_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.+-]")
_MAX_NAME_CHARS = 200


def fetch_failed(kind: ErrorKind, url: str, why: str, **metadata: str) -> ModelFleetError:
    message = f"downloading model source {url!r} failed: {why}"
    return ModelFleetError(kind, Reason.SOURCE_FETCH_FAILED, message, metadata={"url": url, **metadata})


def source_too_large(url: str, max_bytes: int) -> ModelFleetError:
    return fetch_failed(ErrorKind.INVALID_ARGUMENT, url, f"the source is larger than {max_bytes} bytes")


def checksum_mismatch(url: str, *, expected: str, actual: str) -> ModelFleetError:
    return ModelFleetError(
        ErrorKind.INVALID_ARGUMENT,
        Reason.CHECKSUM_MISMATCH,
        f"model source {url!r}: sha256 is {actual}, the URL's #sha256= expects {expected}",
        metadata={"url": url, "expected": expected, "actual": actual},
    )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def download_target(root: Path, url: str) -> Path:
    """`<root>/<sha256(url)[:32]>/<basename>`: one folder per URL, so equal basenames never clash.

    The basename (made filesystem-safe) is kept because the loader picks the format by its
    suffix (.pt, .pt2, .mar, .safetensors) and names a bare model after its stem.
    """
    folder = hashlib.sha256(url.encode()).hexdigest()[:32]
    name = _UNSAFE_NAME_CHARS.sub("_", unquote(PurePosixPath(urlsplit(url).path).name)).lstrip(".")
    return root / folder / (name[-_MAX_NAME_CHARS:] or "model")


class _CheckedRedirects(HTTPRedirectHandler):
    """Follows a redirect only after the resolver's allow-list check accepts the new URL.

    Checked twice: on the raw Location (before urllib's own scheme filter answers a file:// or
    ftp:// target with a bare HTTP error) and on the exact URL urllib is about to request.
    """

    def __init__(self, check: Callable[[str], None]) -> None:
        self._check = check

    def _checked(self, fp: IO[bytes], new_url: str) -> None:
        try:
            self._check(new_url)
        except ModelFleetError:
            fp.close()
            raise

    def http_error_302(self, req: Request, fp: IO[bytes], code: int, msg: str, headers: http.client.HTTPMessage) -> Any:
        location = headers.get("location") or headers.get("uri")
        if location is not None:
            self._checked(fp, urljoin(req.full_url, location))
        return super().http_error_302(req, fp, code, msg, headers)

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302

    def redirect_request(
        self, req: Request, fp: IO[bytes], code: int, msg: str, headers: http.client.HTTPMessage, newurl: str
    ) -> Request | None:
        self._checked(fp, newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class Downloader:
    """Runs downloads on a private pool of max_concurrent threads, each bounded by a TransferGuard.

    Beyond max_concurrent, a download waits for a slot, and the wait counts against its own
    deadline (a queue, not a refusal: registrations from a desired state often come together).
    A slot is freed when its thread really ends, not when the caller gives up, so the pool never
    holds more threads than the limit. A caller that is cancelled or runs past the deadline aborts
    its download: the thread stops at its next read and removes the partial file.
    """

    def __init__(self, *, max_concurrent: int) -> None:
        self.max_concurrent = max_concurrent
        # Neither starts a thread here: the executor spawns on first submit, the semaphore binds
        # to the loop that first waits on it.
        self._executor = ThreadPoolExecutor(max_workers=max_concurrent, thread_name_prefix="modelfleet-download")
        self._slots = asyncio.Semaphore(max_concurrent)
        self.active: set[TransferGuard] = set()
        """Downloads holding a slot (their threads may outlive an abandoned caller)."""

    async def download(
        self,
        url: str,
        target: Path,
        *,
        max_bytes: int,
        limits: TransferLimits,
        sha256: str | None,
        check_redirect: Callable[[str], None],
    ) -> Path:
        """Fetch `url` (no fragment) to `target`; returns target. Raises ModelFleetError only."""
        return await self.run(
            url,
            limits,
            lambda guard: _fetch(
                url, target, max_bytes=max_bytes, guard=guard, sha256=sha256, check_redirect=check_redirect
            ),
        )

    async def run(self, url: str, limits: TransferLimits, work: Callable[[TransferGuard], Path]) -> Path:
        """Run `work(guard)` on the pool once a slot is free, bounded by `limits` (any scheme's download).

        `work` must call guard.begin() first and guard.check() between reads; it returns the local path.
        """
        guard = TransferGuard(url, limits)
        try:
            await asyncio.wait_for(self._slots.acquire(), guard.remaining())
        except TimeoutError:
            raise guard.failed(
                ErrorKind.DEADLINE_EXCEEDED,
                f"all {self.max_concurrent} download slots stayed busy for the whole download deadline of "
                f"{limits.timeout_s:g}s (--max-concurrent-downloads)",
            ) from None
        self.active.add(guard)
        try:
            future = asyncio.get_running_loop().run_in_executor(self._executor, work, guard)
        except BaseException:
            self._release(guard)
            raise
        future.add_done_callback(lambda done: self._finished(guard, done))
        try:
            return await asyncio.wait_for(asyncio.shield(future), guard.remaining() + ABANDON_SLACK_S)
        except TimeoutError:
            guard.abort()
            raise guard.deadline_error() from None
        except asyncio.CancelledError:
            guard.abort()
            raise

    def _finished(self, guard: TransferGuard, done: asyncio.Future[Path]) -> None:
        # Nobody awaits an abandoned download's outcome; retrieving it here keeps asyncio quiet.
        error = None if done.cancelled() else done.exception()
        if error is not None and guard.aborted:
            log.debug("abandoned download of %s stopped: %s", guard.url, error)
        self._release(guard)

    def _release(self, guard: TransferGuard) -> None:
        self.active.discard(guard)
        self._slots.release()


def _fetch(
    url: str,
    target: Path,
    *,
    max_bytes: int,
    guard: TransferGuard,
    sha256: str | None,
    check_redirect: Callable[[str], None],
) -> Path:
    guard.begin()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # With a checksum the content is pinned, so a cached copy that matches is the same model.
        if sha256 is not None and target.is_file() and sha256_of(target) == sha256:
            return target
        fd, temp_name = tempfile.mkstemp(dir=target.parent, prefix=".", suffix=".part")
    except OSError as error:
        raise _cannot_write(url, target.parent, error) from None
    try:
        with os.fdopen(fd, "wb") as out:
            actual = _stream(url, out, max_bytes=max_bytes, guard=guard, check_redirect=check_redirect)
        if sha256 is not None and actual != sha256:
            raise checksum_mismatch(url, expected=sha256, actual=actual)
        guard.check()  # an abandoned download never lands in the cache
        try:
            os.replace(temp_name, target)
        except OSError as error:
            raise _cannot_write(url, target.parent, error) from None
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise
    return target


def _cannot_write(url: str, folder: Path, error: OSError) -> ModelFleetError:
    """The download folder is the server's own (e.g. a read-only model store): not the client's fault."""
    return fetch_failed(ErrorKind.INTERNAL, url, f"cannot write the download folder {str(folder)!r}: {error.strerror}")


def _stream(
    url: str, out: IO[bytes], *, max_bytes: int, guard: TransferGuard, check_redirect: Callable[[str], None]
) -> str:
    """Copy the body to `out`; returns its sha256. The guard bounds every socket read (download_guard)."""
    opener = build_opener(_CheckedRedirects(check_redirect), GuardedHTTPHandler(guard), GuardedHTTPSHandler(guard))
    request = Request(url, headers={"User-Agent": "modelfleet-server", "Accept-Encoding": "identity"})
    too_large = source_too_large(url, max_bytes)
    digest = hashlib.sha256()
    try:
        with opener.open(request, timeout=max(guard.check(), 0.001)) as response:
            length = response.headers.get("Content-Length", "")
            if length.isdigit() and int(length) > max_bytes:
                raise too_large
            total = 0
            while chunk := response.read(CHUNK_BYTES):
                total += len(chunk)
                if total > max_bytes:
                    raise too_large
                digest.update(chunk)
                out.write(chunk)
    except HTTPError as error:
        error.close()
        raise _http_status_error(url, error.code) from None
    except URLError as error:
        if isinstance(error.reason, TimeoutError):
            raise guard.timed_out() from None
        raise fetch_failed(ErrorKind.UNAVAILABLE, url, str(error.reason)) from None
    except TimeoutError:
        raise guard.timed_out() from None
    except (OSError, http.client.HTTPException) as error:
        raise fetch_failed(ErrorKind.UNAVAILABLE, url, f"{type(error).__name__}: {error}") from None
    except ValueError as error:  # http.client.InvalidURL and friends: the URL cannot be requested
        raise fetch_failed(ErrorKind.INVALID_ARGUMENT, url, str(error)) from None
    return digest.hexdigest()


def _http_status_error(url: str, status: int) -> ModelFleetError:
    """404/410 → NOT_FOUND; 408/429/5xx (may pass on retry) → UNAVAILABLE; any other → INVALID_ARGUMENT."""
    if status in (404, 410):
        kind = ErrorKind.NOT_FOUND
    elif status in (408, 429) or status >= 500:
        kind = ErrorKind.UNAVAILABLE
    else:
        kind = ErrorKind.INVALID_ARGUMENT
    why = f"HTTP status {status}"
    if 300 <= status < 400:  # urllib gives up on redirect loops and on more than 10 hops
        why += " (redirect loop or too many redirects)"
    return fetch_failed(kind, url, why, http_status=str(status))
