"""A model archive's or folder's extra files (e.g. index_to_name.json), read for its handler at load.

Called by loading.py, which hands a ModelFiles to the handler through ModelContext.files. Reads
bytes only: nothing is imported, unpickled or extracted to disk; member names are checked like the
serialized file's (no `..`, no absolute paths, no symlinks out of a folder) and sizes are capped.
"""

from __future__ import annotations

import zipfile
from pathlib import Path, PurePosixPath

from ..errors import ErrorKind, ModelFleetError, Reason
from . import archive

MAX_FILE_BYTES = 64 * 1024**2
"""Largest extra file a handler may read: labels and vocabularies, not weights."""


def _missing(origin: str, name: str) -> ModelFleetError:
    return ModelFleetError(
        ErrorKind.INVALID_ARGUMENT,
        Reason.UNSUPPORTED_FORMAT,
        f"{origin}: the handler needs {name!r}, which the model archive does not carry",
        metadata={"file": name},
    )


def _too_big(origin: str, name: str) -> ModelFleetError:
    return archive.unsupported(f"{origin}: {name!r} is larger than {MAX_FILE_BYTES:,} bytes")


class NoFiles:
    """A bare .pt/.pt2/.safetensors file carries no extra files."""

    def __init__(self, origin: str) -> None:
        self._origin = origin

    def names(self) -> list[str]:
        return []

    def read(self, name: str) -> bytes:
        raise _missing(self._origin, name)


class MarFiles:
    """Members of a .mar (zip); every read reopens the archive (reads happen only at load)."""

    def __init__(self, path: Path, *, skip: str) -> None:
        self._path = path
        self._skip = skip

    def names(self) -> list[str]:
        with zipfile.ZipFile(self._path) as mar:
            return sorted(
                n for n in mar.namelist() if not n.endswith("/") and not n.startswith("MAR-INF/") and n != self._skip
            )

    def read(self, name: str) -> bytes:
        origin = self._path.name
        name = archive.check_member_name(name, origin=origin)
        with zipfile.ZipFile(self._path) as mar:
            try:
                info = mar.getinfo(name)
            except KeyError:
                raise _missing(origin, name) from None
            if info.file_size > MAX_FILE_BYTES:
                raise _too_big(origin, name)
            with mar.open(info) as member:
                data = member.read(MAX_FILE_BYTES + 1)  # the header's size can lie: count what inflates
        if len(data) > MAX_FILE_BYTES:
            raise _too_big(origin, name)
        return data


class FolderFiles:
    """Files of an unarchived model folder (TorchServe's no-archive format)."""

    def __init__(self, folder: Path, *, skip: str) -> None:
        self._folder = folder
        self._skip = skip

    def names(self) -> list[str]:
        root = self._folder
        found = []
        for path in root.rglob("*"):
            relative = PurePosixPath(path.relative_to(root).as_posix())
            if path.is_file() and relative.parts[0] != "MAR-INF" and str(relative) != self._skip:
                found.append(str(relative))
        return sorted(found)

    def read(self, name: str) -> bytes:
        try:
            path = archive.folder_member(self._folder, name, what="file")
        except ModelFleetError as exc:
            if exc.reason is Reason.UNSUPPORTED_FORMAT:
                raise _missing(self._folder.name, name) from None
            raise
        if path.stat().st_size > MAX_FILE_BYTES:
            raise _too_big(self._folder.name, name)
        return path.read_bytes()
