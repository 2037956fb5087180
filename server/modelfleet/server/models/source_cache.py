"""The object-store download cache: one completed file per (URL, ETag), found again after a restart.

object_store.py asks it where an object lives (`<download dir>/<sha256(url)[:32]>/<sha256(etag)[:16]>/
<basename>`) and whether a completed copy is there; a copy counts only with its sidecar
(`.<basename>.source.json`: url, etag, size, sha256), written atomically after the file was renamed
into place, so a crash between the two leaves a miss, never a half file. When a new ETag lands,
older ETags of the same URL are removed. Does no network I/O.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from contextlib import suppress
from dataclasses import asdict, dataclass
from pathlib import Path

from .download import download_target, sha256_of

log = logging.getLogger(__name__)

MAX_SIDECAR_BYTES = 64 * 1024


@dataclass(frozen=True)
class CacheEntry:
    url: str
    etag: str
    size: int
    sha256: str


def entry_path(root: Path, url: str, etag: str) -> Path:
    """Where the object `url` at version `etag` is (or will be) stored."""
    by_url = download_target(root, url)
    return by_url.parent / hashlib.sha256(etag.encode()).hexdigest()[:16] / by_url.name


def sidecar_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.source.json")


def lookup(path: Path, *, url: str, etag: str, sha256: str | None) -> CacheEntry | None:
    """The completed entry at `path` for exactly this URL and ETag, else None.

    With a `#sha256=` the file itself is hashed (the sidecar could be stale or the volume
    tampered with); without one, the sidecar and the file size must agree.
    """
    try:
        with sidecar_path(path).open("rb") as handle:
            raw = handle.read(MAX_SIDECAR_BYTES + 1)
        if len(raw) > MAX_SIDECAR_BYTES:
            return None
        data = json.loads(raw)
        entry = CacheEntry(url=data["url"], etag=data["etag"], size=int(data["size"]), sha256=data["sha256"])
        size = path.stat().st_size
    except (OSError, ValueError, TypeError, KeyError):
        return None
    if (entry.url, entry.etag, entry.size) != (url, etag, size):
        return None
    if sha256 is not None:
        try:
            if sha256_of(path) != sha256:
                return None
        except OSError:
            return None
    return entry


def commit(path: Path, entry: CacheEntry) -> None:
    """Write the sidecar atomically (after `path` itself is in place), then drop older ETags of the URL."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".part")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(asdict(entry), handle)
        os.replace(temp, sidecar_path(path))
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(temp)
        raise
    evict_others(path)


def evict_others(path: Path) -> None:
    """Remove every other ETag folder of the same URL: the cache keeps one version per URL."""
    keep = path.parent
    try:
        siblings = [child for child in keep.parent.iterdir() if child != keep and child.is_dir()]
    except OSError:
        return
    for folder in siblings:
        log.info("removing the cached copy %s (a newer ETag of the same URL landed)", folder.name)
        shutil.rmtree(folder, ignore_errors=True)
