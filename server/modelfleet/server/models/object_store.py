"""Fetch an allow-listed s3:// or gs:// model source through the S3 API (botocore), cached by ETag.

Called by sources.SourceResolver after it has parsed the URL (parse_object_url) and checked the
allow-list, so nothing here runs for a refused URL. gs:// is the same code against Google Cloud
Storage's S3 interoperability endpoint (HMAC keys). Each download runs in one of the Downloader's
slots under the same deadline, minimum rate and size limit as http(s): HEAD first (size, ETag;
a cached copy for that ETag is used without a GET), then a GET pinned to that ETag, streamed to a
temp file and renamed into place. Credentials are never logged or put in a message.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import botocore.session
import urllib3.exceptions
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
    ReadTimeoutError,
)
from botocore.exceptions import ConnectionError as EndpointUnreachable

from ..echo import quoted
from ..errors import ErrorKind, ModelFleetError, bad_input
from ..settings import SourceSettings
from . import source_cache
from .download import CHUNK_BYTES, Downloader, checksum_mismatch, fetch_failed, source_too_large
from .download_guard import TransferGuard, TransferLimits
from .storage_credentials import read_credentials

log = logging.getLogger(__name__)

SCHEMES = ("s3", "gs")
GCS_ENDPOINT = "https://storage.googleapis.com"
DEFAULT_REGION = "us-east-1"
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 30.0
MAX_ATTEMPTS = 3
"""botocore's standard retry mode, attempts in all (throttling, 5xx, connection errors); within the deadline."""
PROGRESS_STEP_BYTES = 64 * 1024**2
"""Downloads bigger than this log their progress every 10% (or every step, whichever is larger)."""
_BUCKET = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,221}")
_ERROR_CODE = re.compile(r"[A-Za-z0-9.]{1,64}")
_CREDENTIAL_CODES = {
    "InvalidAccessKeyId": "the access key ID is not known to the store",
    "SignatureDoesNotMatch": "the secret key does not match the access key ID",
    "ExpiredToken": "the session token has expired",
    "InvalidToken": "the session token is not valid",
    "TokenRefreshRequired": "the session token has expired",
}


@dataclass(frozen=True)
class ObjectUrl:
    scheme: str
    bucket: str
    key: str
    """Taken literally (not percent-decoded): S3 keys may hold `%`."""


def parse_object_url(base: str, *, shown: str) -> ObjectUrl:
    """`s3://bucket/key` or `gs://bucket/key` (fragment already removed); malformed → INVALID_ARGUMENT."""
    parts = urlsplit(base)
    scheme = parts.scheme.lower()
    if "@" in parts.netloc:
        raise bad_input(f"model source {quoted(shown)}: credentials in the URL are not supported")
    if not _BUCKET.fullmatch(parts.netloc):
        raise bad_input(f"model source {quoted(shown)}: {scheme}:// URLs need a bucket name: {scheme}://BUCKET/KEY")
    if parts.query or "?" in base:
        raise bad_input(f"model source {quoted(shown)}: an object URL must not have a query")
    key = parts.path[1:]
    if not key or key.endswith("/"):
        raise bad_input(f"model source {quoted(shown)}: the URL must name an object (a file), not a bucket or prefix")
    return ObjectUrl(scheme=scheme, bucket=parts.netloc, key=key)


class ObjectStore:
    """botocore S3 clients (one per endpoint and credential set) and the cached, bounded fetch."""

    def __init__(
        self, settings: SourceSettings, *, download_dir: Path, downloader: Downloader, limits: TransferLimits
    ) -> None:
        self.settings = settings
        self._root = download_dir
        self._downloader = downloader
        self._limits = limits
        self._lock = threading.Lock()
        """Guards the session and the client table: download threads build clients concurrently."""
        self._session: botocore.session.Session | None = None
        self._clients: dict[str | None, tuple[str, Any]] = {}
        """endpoint → (credentials fingerprint, client); a new fingerprint replaces the client."""

    def endpoint_for(self, scheme: str) -> str | None:
        """The endpoint a scheme's requests go to; None = botocore's AWS resolution."""
        if self.settings.storage_endpoint_url:
            return self.settings.storage_endpoint_url
        return GCS_ENDPOINT if scheme == "gs" else None

    async def fetch(self, obj: ObjectUrl, url: str, *, sha256: str | None) -> Path:
        """Download (or find cached) the object of `url` (no fragment); returns its local path."""
        return await self._downloader.run(url, self._limits, lambda guard: self._fetch(obj, url, guard, sha256))

    # ---- clients ----------------------------------------------------------------------------
    def client(self, scheme: str) -> Any:
        """The client for `scheme`, rebuilt when the credentials folder's content changed."""
        folder = self.settings.storage_credentials_dir
        credentials = read_credentials(folder) if folder is not None else None
        fingerprint = credentials.fingerprint if credentials is not None else ""
        endpoint = self.endpoint_for(scheme)
        with self._lock:
            cached = self._clients.get(endpoint)
            if cached is not None and cached[0] == fingerprint:
                return cached[1]
            if self._session is None:
                self._session = botocore.session.Session()
            session = self._session
            region = self.settings.storage_region or session.get_config_variable("region") or DEFAULT_REGION
            config = Config(
                region_name=region,
                signature_version="s3v4",
                s3={"addressing_style": self.settings.storage_addressing_style},
                connect_timeout=min(CONNECT_TIMEOUT_S, self._limits.timeout_s),
                read_timeout=min(READ_TIMEOUT_S, self._limits.timeout_s),
                retries={"mode": "standard", "total_max_attempts": MAX_ATTEMPTS},
                max_pool_connections=self.settings.max_concurrent_downloads,
                user_agent_extra="modelfleet-server",
            )
            keys: dict[str, Any] = {}
            if credentials is not None:
                keys = {
                    "aws_access_key_id": credentials.access_key,
                    "aws_secret_access_key": credentials.secret_key,
                    "aws_session_token": credentials.token,
                }
            client = session.create_client("s3", endpoint_url=endpoint, config=config, **keys)
            if cached is not None:
                log.info("object-store credentials changed; new client for %s", endpoint or "AWS")
            self._clients[endpoint] = (fingerprint, client)
            return client

    # ---- the fetch (a download thread) ------------------------------------------------------
    def _fetch(self, obj: ObjectUrl, url: str, guard: TransferGuard, sha256: str | None) -> Path:
        guard.begin()
        client = self._call(url, guard, lambda: self.client(obj.scheme))
        head = self._call(url, guard, lambda: client.head_object(Bucket=obj.bucket, Key=obj.key), obj=obj)
        etag = str(head.get("ETag") or "")
        size = head.get("ContentLength")
        max_bytes = self.settings.max_download_bytes
        if isinstance(size, int) and size > max_bytes:
            raise source_too_large(url, max_bytes)
        target = source_cache.entry_path(self._root, url, etag)
        if etag and source_cache.lookup(target, url=url, etag=etag, sha256=sha256) is not None:
            log.info("model source %s: using the cached copy for ETag %s (no download)", url, etag)
            return target
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, temp_name = tempfile.mkstemp(dir=target.parent, prefix=".", suffix=".part")
        except OSError as error:
            raise fetch_failed(
                ErrorKind.INTERNAL, url, f"cannot write the download folder {str(target.parent)!r}: {error.strerror}"
            ) from None
        pinned = {"IfMatch": etag} if etag else {}  # the object HEAD described, or 412
        try:
            with os.fdopen(fd, "wb") as out:
                reply = self._call(
                    url, guard, lambda: client.get_object(Bucket=obj.bucket, Key=obj.key, **pinned), obj=obj
                )
                total, actual = self._call(url, guard, lambda: self._stream(url, reply, out, guard, size))
            if sha256 is not None and actual != sha256:
                raise checksum_mismatch(url, expected=sha256, actual=actual)
            guard.check()  # an abandoned download never lands in the cache
            os.replace(temp_name, target)
        except BaseException:
            with suppress(FileNotFoundError):
                os.unlink(temp_name)
            raise
        entry = source_cache.CacheEntry(url=url, etag=etag, size=total, sha256=actual)
        with suppress(OSError):  # without its sidecar the copy is only a cache miss next time
            source_cache.commit(target, entry)
        log.info("downloaded model source %s: %d bytes in %.1fs (ETag %s)", url, total, _elapsed(guard), etag)
        return target

    def _stream(
        self, url: str, reply: dict[str, Any], out: IO[bytes], guard: TransferGuard, size: Any
    ) -> tuple[int, str]:
        """Copy the body to `out` and return (bytes, sha256); every read is bounded by the guard.

        read1 on the raw urllib3 response returns after one socket read, so a server that trickles
        bytes cannot hold a read past the deadline (StreamingBody.read(n) waits for all n bytes).
        """
        body = reply["Body"]
        raw = getattr(body, "_raw_stream", None)
        read: Callable[[int], bytes] = raw.read1 if raw is not None and hasattr(raw, "read1") else body.read
        expected = reply.get("ContentLength", size)
        max_bytes = self.settings.max_download_bytes
        if isinstance(expected, int) and expected > max_bytes:
            raise source_too_large(url, max_bytes)
        step = max(PROGRESS_STEP_BYTES, expected // 10) if isinstance(expected, int) else PROGRESS_STEP_BYTES
        next_report = step
        digest = hashlib.sha256()
        total = 0
        try:
            while True:
                _bound_next_read(raw, max(guard.check(), 0.001))
                chunk = read(CHUNK_BYTES)
                if not chunk:
                    break
                guard.after_read(len(chunk))
                total += len(chunk)
                if total > max_bytes:
                    raise source_too_large(url, max_bytes)
                digest.update(chunk)
                out.write(chunk)
                if total >= next_report and isinstance(expected, int) and expected > PROGRESS_STEP_BYTES:
                    log.info("model source %s: %d of %d bytes (%d%%)", url, total, expected, 100 * total // expected)
                    next_report += step
        finally:
            body.close()
        if isinstance(expected, int) and total != expected:
            raise fetch_failed(ErrorKind.UNAVAILABLE, url, f"the connection ended after {total} of {expected} bytes")
        return total, digest.hexdigest()

    # ---- errors -----------------------------------------------------------------------------
    def _call(self, url: str, guard: TransferGuard, action: Callable[[], Any], *, obj: ObjectUrl | None = None) -> Any:
        """Run one client step; turn botocore's exceptions into ModelFleetErrors without key material."""
        try:
            return action()
        except ModelFleetError:
            raise
        except ClientError as error:
            raise self._client_error(url, error, obj) from None
        except (NoCredentialsError, PartialCredentialsError):
            raise fetch_failed(
                ErrorKind.FAILED_PRECONDITION,
                url,
                "no object-store credentials found (mount a Secret and set --storage-credentials-dir, or "
                "provide AWS_* variables, a web identity or an instance role)",
            ) from None
        except ParamValidationError:
            raise fetch_failed(
                ErrorKind.INVALID_ARGUMENT, url, "the bucket or key is not valid for the S3 API"
            ) from None
        except ReadTimeoutError:
            if guard.remaining() <= 0 or guard.aborted:
                raise guard.timed_out() from None
            raise fetch_failed(ErrorKind.UNAVAILABLE, url, "the object store stopped sending data") from None
        except (TimeoutError, urllib3.exceptions.ReadTimeoutError):  # the guard's per-read socket timeout
            raise guard.timed_out() from None
        except urllib3.exceptions.HTTPError as error:  # the body's raw stream (read1) bypasses botocore's wrapping
            raise fetch_failed(ErrorKind.UNAVAILABLE, url, f"the transfer failed ({type(error).__name__})") from None
        except EndpointUnreachable:
            where = self.endpoint_for(urlsplit(url).scheme) or "AWS S3"
            raise fetch_failed(ErrorKind.UNAVAILABLE, url, f"cannot reach the object store at {where}") from None
        except BotoCoreError as error:
            raise fetch_failed(
                ErrorKind.UNAVAILABLE, url, f"object store client error ({type(error).__name__})"
            ) from None
        except OSError as error:
            raise fetch_failed(ErrorKind.UNAVAILABLE, url, f"{type(error).__name__}: {error.strerror}") from None

    def _client_error(self, url: str, error: ClientError, obj: ObjectUrl | None) -> ModelFleetError:
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        raw_code = str(error.response.get("Error", {}).get("Code") or "")
        code = raw_code if _ERROR_CODE.fullmatch(raw_code) else str(status)
        if obj is not None and status in (403, 404) and code == str(status):
            code = self._diagnose(obj, status) or code  # a HEAD answer has no body, so no code: ask once more
        if status == 404 or code in ("NoSuchKey", "NoSuchBucket", "NotFound"):
            if code == "NoSuchBucket" and obj is not None:
                why = f"the bucket {obj.bucket!r} does not exist"
            elif obj is not None:
                why = f"no object {obj.key!r} in bucket {obj.bucket!r}"
            else:
                why = "not found"
            return fetch_failed(ErrorKind.NOT_FOUND, url, why, code=code)
        if code in _CREDENTIAL_CODES:
            why = f"the object store refused the credentials ({code}: {_CREDENTIAL_CODES[code]})"
            return fetch_failed(ErrorKind.PERMISSION_DENIED, url, why, code=code)
        if status == 403:
            why = f"access denied ({code}): the credentials were refused or may not read this object"
            return fetch_failed(ErrorKind.PERMISSION_DENIED, url, why, code=code)
        if status == 412 or code == "PreconditionFailed":
            return fetch_failed(ErrorKind.UNAVAILABLE, url, "the object changed during the download; try again")
        if status in (301, 307) or code in ("PermanentRedirect", "AuthorizationHeaderMalformed"):
            why = f"the bucket is served from another region or endpoint ({code}); check --storage-region"
            return fetch_failed(ErrorKind.FAILED_PRECONDITION, url, why, code=code)
        kind = ErrorKind.UNAVAILABLE if status in (408, 429) or status >= 500 else ErrorKind.INVALID_ARGUMENT
        return fetch_failed(kind, url, f"the object store answered HTTP {status} ({code})", code=code)

    def _diagnose(self, obj: ObjectUrl, status: int) -> str | None:
        """The error code a body-less HEAD could not carry: 404 → does the bucket exist; 403 → a 1-byte GET."""
        try:
            client = self.client(obj.scheme)
            if status == 404:
                client.head_bucket(Bucket=obj.bucket)
                return "NoSuchKey"
            client.get_object(Bucket=obj.bucket, Key=obj.key, Range="bytes=0-0")["Body"].close()
        except ClientError as error:
            found = str(error.response.get("Error", {}).get("Code") or "")
            if status == 404 and found in ("404", "NoSuchBucket", "NotFound"):
                return "NoSuchBucket"
            return found if _ERROR_CODE.fullmatch(found) and not found.isdigit() else None
        except (BotoCoreError, ModelFleetError, OSError):
            return None
        return None


def _bound_next_read(raw: Any, seconds: float) -> None:
    """Socket timeout for the next read: the guard's time left (deadline or minimum rate).

    The same path botocore's StreamingBody.set_socket_timeout takes, minus its ERROR log when the
    body is already complete (http.client then has dropped the socket, and nothing is left to bound).
    """
    sock = getattr(getattr(getattr(getattr(raw, "_fp", None), "fp", None), "raw", None), "_sock", None)
    if sock is not None:
        sock.settimeout(seconds)


def _elapsed(guard: TransferGuard) -> float:
    return time.monotonic() - guard.started
