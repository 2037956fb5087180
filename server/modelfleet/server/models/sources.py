"""Model sources: turn RegisterModel.url into a local, allow-listed file or folder (ResolvedSource).

Called by the registry before loading. A bare name is a file or folder in the model store (always
allowed); `file://` paths outside the store and every `http(s)://`, `s3://` and `gs://` URL must
full-match one of the `--allowed-sources` regexes (default deny), checked before any network call;
downloads are in download.py (http) and object_store.py (S3 API). Never loads or opens a
model beyond hashing it for a `#sha256=` check. Refusals TorchServe also makes use its words
(ModelArchive.downloadModel, ArchiveUtils.validateURL), with the URL clipped (echo.py).
"""

from __future__ import annotations

import asyncio
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .. import names
from ..echo import clip, quoted
from ..errors import ErrorKind, ModelFleetError, Reason, bad_input
from ..settings import SourceSettings
from .contracts import ResolvedSource
from .download import Downloader, checksum_mismatch, download_target, sha256_of
from .download_guard import TransferLimits
from .object_store import SCHEMES as OBJECT_SCHEMES
from .object_store import ObjectStore, parse_object_url

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
_FRAGMENT_KEYS = frozenset({"version", "sha256"})


@dataclass(frozen=True)
class Fragment:
    """The `#version=<v>&sha256=<hex>` part of a source URL."""

    version: str | None = None
    sha256: str | None = None
    """Lower-case hex."""


def show_url(url: str) -> str:
    """`url` as TorchServe's messages quote it (bare), clipped; repr()-escaped when it has control characters."""
    return clip(url) if url.isprintable() else quoted(url)


def path_escape(url: str, why: str) -> ModelFleetError:
    return ModelFleetError(
        ErrorKind.INVALID_ARGUMENT,
        Reason.PATH_ESCAPE,
        f"model source {quoted(url)} refused: {why}",
        metadata={"url": url},
    )


def relative_path(url: str, where: str) -> ModelFleetError:
    """A `..` component: TorchServe's words; `where` (which kind of source) goes to ErrorInfo only."""
    return ModelFleetError(
        ErrorKind.INVALID_ARGUMENT,
        Reason.PATH_ESCAPE,
        f"Relative path is not allowed in url: {show_url(url)}",
        metadata={"url": url, "hint": f"'..' is not allowed in {where}"},
    )


def not_allowed(url: str) -> ModelFleetError:
    return ModelFleetError(
        ErrorKind.PERMISSION_DENIED,
        Reason.SOURCE_NOT_ALLOWED,
        f"Given URL {show_url(url)} does not match any allowed URL(s)",
        metadata={
            "url": url,
            "hint": "only the model store is allowed unless the URL full-matches an --allowed-sources pattern",
        },
    )


def model_file_exists(url: str, file_name: str) -> ModelFleetError:
    """TorchServe copied every URL's file into the model store, so a taken name failed with this message."""
    return ModelFleetError(
        ErrorKind.ALREADY_EXISTS,
        Reason.MODEL_FILE_EXISTS,
        f"Model file already exists {show_url(file_name)}",
        metadata={"url": url, "file": file_name},
    )


def url_file_name(base: str) -> str:
    """The last component of a URL's path, undecoded, `/` or `\\` separated (TorchServe's getFilenameFromUrl)."""
    return re.split(r"[/\\]", urlsplit(base).path)[-1]


def parse_fragment(url: str) -> tuple[str, Fragment]:
    """Split `url` into (url without fragment, parsed fragment); unknown or repeated keys are BAD_INPUT.

    Strict on purpose: a typo such as `#sha265=` must not silently skip the checksum.
    """
    base, _, raw = url.partition("#")
    values: dict[str, str] = {}
    for item in filter(None, raw.split("&")):
        key, sep, value = item.partition("=")
        if not sep or key not in _FRAGMENT_KEYS or key in values:
            raise bad_input(
                f"model source {quoted(url)}: bad fragment item {quoted(item)}; "
                "expected #version=<v>&sha256=<64 hex digits>"
            )
        values[key] = value
    version = values.get("version")
    if version is not None:
        names.check_version(version)
    sha = values.get("sha256")
    if sha is not None and not _SHA256.match(sha):
        raise bad_input(f"model source {quoted(url)}: sha256 must be 64 hexadecimal digits")
    return base, Fragment(version=version, sha256=sha.lower() if sha else None)


def has_dot_dot(path: str) -> bool:
    """True when any component is `..`, also after (repeated) percent-decoding and with `\\` as separator."""
    seen = path
    for _ in range(4):  # bounded: %252e%252e needs two rounds; more is an attack, still caught below
        if ".." in re.split(r"[/\\]", seen):
            return True
        decoded = unquote(seen)
        if decoded == seen:
            return False
        seen = decoded
    return True  # still decoding after four rounds: refuse rather than guess


def _inside(path: str, root: str) -> bool:
    return path == root or os.path.commonpath([path, root]) == root


class SourceResolver:
    """Resolves source URLs against the model store, the allow-list and the download cache.

    Rules (errors as kind/reason):
    - bare name: relative path in the model store; absolute → INVALID_ARGUMENT/PATH_ESCAPE; the
      part after the first `#` is always the fragment, so `#` cannot appear in file names.
    - `file://` (empty host or localhost, no query): inside the store by default, elsewhere only when
      the URL without fragment full-matches a pattern, else PERMISSION_DENIED/SOURCE_NOT_ALLOWED.
    - `http(s)://`: only when a pattern matches; every redirect hop is checked the same way.
    - `s3://BUCKET/KEY`, `gs://BUCKET/KEY`: only when a pattern matches (object_store.py fetches them).
    - other schemes → INVALID_ARGUMENT/UNSUPPORTED_FORMAT (kept apart from SOURCE_NOT_ALLOWED, which
      a pattern could fix; no pattern makes ftp:// work).
    - `..` anywhere (also %2e%2e, %252e%252e, `\\`) → INVALID_ARGUMENT/PATH_ESCAPE, checked before the
      allow-list so a broad pattern never lets it through.
    - an allowed http(s), s3 or gs URL, or file:// URL outside the store, whose file name the store already
      has → ALREADY_EXISTS/MODEL_FILE_EXISTS (TorchServe's "Model file already exists").
    - symlinks: the real path must be inside the store's real path, or be the very path an allowed
      file:// URL named, or itself full-match a pattern as `file://<realpath>` (the operator allowed
      that location anyway); otherwise PATH_ESCAPE. Not allowed is decided before not found, so
      the server does not reveal which files exist outside allowed locations.
    Contents of a model folder (its own symlinks) are the loader's check (archive.folder_member).
    """

    def __init__(self, settings: SourceSettings) -> None:
        self.settings = settings
        # Compiled once; a bad pattern is a configuration error at start, not a per-request error.
        try:
            self._patterns = [re.compile(pattern) for pattern in settings.allowed_source_patterns]
        except re.error as error:
            raise ValueError(f"invalid --allowed-sources pattern: {error}") from None
        self._store = os.path.abspath(settings.model_store)
        self._download_dir = Path(os.path.abspath(settings.download_dir or Path(self._store) / ".downloads"))
        self.downloader = Downloader(max_concurrent=settings.max_concurrent_downloads)
        """http(s) downloads run here, never on the loop's default executor that store loads use."""
        self._transfer_limits = TransferLimits(
            timeout_s=settings.download_timeout_s,
            min_rate_bytes_s=settings.min_download_rate_bytes_s,
            grace_s=settings.download_rate_grace_s,
        )
        self.object_store = ObjectStore(
            settings, download_dir=self._download_dir, downloader=self.downloader, limits=self._transfer_limits
        )

    def allowed(self, url_without_fragment: str) -> bool:
        return any(pattern.fullmatch(url_without_fragment) for pattern in self._patterns)

    async def resolve(self, url: str) -> ResolvedSource:
        if not url:
            raise ModelFleetError(ErrorKind.INVALID_ARGUMENT, Reason.MISSING_FIELD, "url is required")
        if "\x00" in url or "%00" in url:
            raise bad_input("model source URL must not contain NUL bytes")
        base, fragment = parse_fragment(url)
        match = _SCHEME.match(base)
        scheme = match.group(1).lower() if match else ""
        if scheme in ("http", "https"):
            self.check_http(base, shown=url)
            await asyncio.to_thread(self._check_file_name_free, url, base)
            path = await self.downloader.download(
                base,
                download_target(self._download_dir, base),
                max_bytes=self.settings.max_download_bytes,
                limits=self._transfer_limits,
                sha256=fragment.sha256,
                check_redirect=self._check_redirect,
            )
            path = Path(os.path.realpath(path))
        elif scheme in OBJECT_SCHEMES:
            obj = parse_object_url(base, shown=url)
            if has_dot_dot(obj.key):
                raise relative_path(url, "object keys")
            if not self.allowed(base):
                raise not_allowed(url)
            await asyncio.to_thread(self._check_file_name_free, url, base)
            path = await self.object_store.fetch(obj, base, sha256=fragment.sha256)
        elif scheme == "file":
            local = self._file_path(url, base)
            path = await asyncio.to_thread(
                self._local, url, local, sha256=fragment.sha256, allowed_by_pattern=self.allowed(base)
            )
        elif scheme:
            raise ModelFleetError(
                ErrorKind.INVALID_ARGUMENT,
                Reason.UNSUPPORTED_FORMAT,
                f"model source {quoted(url)}: unsupported scheme {quoted(scheme)}; use a model store name, "
                "a file:// path, an http(s):// URL or an s3:// or gs:// object URL",
                metadata={"url": url},
            )
        else:
            local = self._store_path(url, base)
            path = await asyncio.to_thread(self._local, url, local, sha256=fragment.sha256, allowed_by_pattern=False)
        return ResolvedSource(url=url, path=path, version_hint=fragment.version)

    # ---- http(s) ----------------------------------------------------------------------------
    def check_http(self, base: str, *, shown: str) -> None:
        """Refuse an http(s) URL (fragment already removed) that is malformed, escapes or is not allowed."""
        parts = urlsplit(base)
        try:
            _ = parts.port  # raises ValueError for a bad port
        except ValueError:
            raise bad_input(f"model source {quoted(shown)}: invalid port") from None
        if not parts.hostname:
            raise bad_input(f"model source {quoted(shown)}: an http(s) URL needs a host")
        # Credentials in the URL would be reported back as modelUrl and logged; refuse them.
        if parts.username is not None or parts.password is not None:
            raise bad_input(f"model source {quoted(shown)}: credentials in the URL are not supported")
        if has_dot_dot(parts.path):
            raise relative_path(shown, "URL paths")
        if not self.allowed(base):
            raise not_allowed(shown)

    def _check_redirect(self, new_url: str) -> None:
        """Every redirect hop must pass the same checks as the URL the client gave."""
        base = new_url.partition("#")[0]
        scheme = _SCHEME.match(base)
        try:
            if scheme is None or scheme.group(1).lower() not in ("http", "https"):
                raise not_allowed(new_url)
            self.check_http(base, shown=new_url)
        except ModelFleetError as error:
            metadata = {**error.metadata, "redirect": "true"}
            message = f"redirect refused: {error.message}"
            raise ModelFleetError(error.kind, error.reason, message, metadata=metadata) from None

    def _check_file_name_free(self, url: str, base: str) -> None:
        """Refuse a URL whose file name the model store already has, as TorchServe did.

        TorchServe copied every file:// and http(s):// source into the store under its file name,
        so such a name failed with "Model file already exists"; ModelFleet keeps the refusal so a
        store name never means two models. Checked after the allow-list and before any download.
        """
        name = url_file_name(base)
        if name not in ("", ".", "..") and os.path.exists(os.path.join(self._store, name)):
            raise model_file_exists(url, name)

    # ---- local paths ------------------------------------------------------------------------
    def _store_path(self, url: str, name: str) -> str:
        if has_dot_dot(name):
            raise relative_path(url, "model store names")
        if name.startswith("/"):
            raise path_escape(url, "a model store name must be relative; use file:// for an absolute path")
        joined = os.path.normpath(os.path.join(self._store, name))
        if joined == self._store:
            raise bad_input(f"model source {quoted(url)} names the model store itself, not a model in it")
        return joined

    def _file_path(self, url: str, base: str) -> str:
        parts = urlsplit(base)
        if parts.netloc not in ("", "localhost"):
            raise ModelFleetError(
                ErrorKind.INVALID_ARGUMENT,
                Reason.UNSUPPORTED_FORMAT,
                f"model source {quoted(url)}: file:// URLs must name a local path (file:///path), not host "
                f"{quoted(parts.netloc)}",
                metadata={"url": url},
            )
        # A query would let a pattern such as file://.*\.pt match file:///etc/passwd?.pt.
        if parts.query or "?" in base:
            raise bad_input(f"model source {quoted(url)}: a file:// URL must not have a query")
        if has_dot_dot(parts.path):
            raise relative_path(url, "file:// paths")
        path = unquote(parts.path)
        if not path.startswith("/"):
            raise bad_input(f"model source {quoted(url)}: a file:// URL must hold an absolute path (file:///path)")
        return os.path.normpath(path)

    def _local(self, url: str, path: str, *, sha256: str | None, allowed_by_pattern: bool) -> Path:
        """Check a local path (lexically normalised, no `..`) and return its realpath."""
        store_real = os.path.realpath(self._store)
        inside = _inside(path, self._store) or _inside(path, store_real)
        if not (allowed_by_pattern or inside):
            raise not_allowed(url)
        if not inside:  # a file:// URL elsewhere; the store's own files are never "already there"
            self._check_file_name_free(url, url.partition("#")[0])
        real = os.path.realpath(path)
        # Where the bytes really are must be allowed too: inside the store, the very path the URL
        # named (no symlink involved), or a location a pattern allows in its own right.
        if not (
            _inside(real, store_real) or (allowed_by_pattern and real == path) or self.allowed(Path(real).as_uri())
        ):
            raise path_escape(url, "it resolves (through a symlink) outside the model store and allowed locations")
        try:
            mode = os.stat(real).st_mode
        except FileNotFoundError:
            where = "in the model store" if not _SCHEME.match(url) else "on the server"
            raise ModelFleetError(
                ErrorKind.NOT_FOUND,
                Reason.SOURCE_NOT_FOUND,
                f"model source {quoted(url)} not found {where}",
                metadata={"url": url},
            ) from None
        except OSError as error:  # e.g. a component that is a file, or permission denied
            raise ModelFleetError(
                ErrorKind.NOT_FOUND,
                Reason.SOURCE_NOT_FOUND,
                f"model source {quoted(url)} cannot be read: {error.strerror}",
                metadata={"url": url},
            ) from None
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise ModelFleetError(
                ErrorKind.INVALID_ARGUMENT,
                Reason.UNSUPPORTED_FORMAT,
                f"model source {quoted(url)} is neither a regular file nor a folder",
                metadata={"url": url},
            )
        if sha256 is not None:
            if stat.S_ISDIR(mode):
                raise bad_input(f"model source {quoted(url)}: #sha256= applies to files, not folders")
            actual = sha256_of(Path(real))
            if actual != sha256:
                raise checksum_mismatch(url, expected=sha256, actual=actual)
        return Path(real)
