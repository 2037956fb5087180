"""Open a TorchServe model archive (`.mar` zip, `.tar.gz`, or an unpacked model folder) for conversion.

Called by the pipeline. A zip or tgz is unpacked into a private temporary folder (entry names that
would land outside it are refused, even though the user trusts the archive: a typo'd download should
not write over their files); a folder is used where it is. Reads MAR-INF/MANIFEST.json; imports nothing.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import ConvertError

MANIFEST = "MAR-INF/MANIFEST.json"


@dataclass(frozen=True)
class TorchServeArchive:
    """An archive's files in one folder and the manifest fields the conversion keeps or needs."""

    origin: str
    """The source's file or folder name, for messages."""
    root: Path
    """The folder holding the archive's files (MAR-INF/ included)."""
    model_name: str
    model_version: str | None
    handler: str
    """The manifest's handler: a standard name, a `.py` file of the archive, or `module:function`."""
    model_file: str | None
    serialized_file: str | None
    runtime: str
    manifest: dict[str, Any]

    def member(self, name: str) -> Path:
        """`name` inside the archive folder; refused when it would point outside it."""
        parts = PurePosixPath(name).parts
        if not name or name.startswith("/") or ".." in parts or "\\" in name:
            raise ConvertError(f"{self.origin}: {name!r} is not a file name inside the archive")
        path = self.root / name
        if not path.resolve().is_relative_to(self.root.resolve()) or not path.is_file():
            raise ConvertError(f"{self.origin}: {name!r} is not in the archive")
        return path

    def files(self) -> list[str]:
        """Every file of the archive except its manifest folder, as sorted relative POSIX paths."""
        found = [p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file()]
        return sorted(name for name in found if not name.startswith("MAR-INF/") and "__pycache__" not in name)


@contextlib.contextmanager
def opened(source: Path) -> Iterator[TorchServeArchive]:
    """The archive at `source`, unpacked if it is a file; the temporary copy is removed afterwards."""
    if not source.exists():
        raise ConvertError(f"{source}: no such file or folder")
    if source.is_dir():
        yield _read(source, origin=source.name)
        return
    folder = Path(tempfile.mkdtemp(prefix="modelfleet-convert-"))
    try:
        _unpack(source, folder)
        yield _read(folder, origin=source.name)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _unpack(source: Path, folder: Path) -> None:
    if zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as archive:
            for name in archive.namelist():
                _check_entry(name, origin=source.name)
            archive.extractall(folder)
        return
    if tarfile.is_tarfile(source):  # model-archiver --archive-format tgz: one folder named after the model
        with tarfile.open(source) as archive:
            archive.extractall(folder, filter="data")  # "data" refuses links out, absolute paths and devices
        entries = list(folder.iterdir())
        if len(entries) == 1 and entries[0].is_dir() and (entries[0] / MANIFEST).is_file():
            for child in entries[0].iterdir():
                child.rename(folder / child.name)
            entries[0].rmdir()
        return
    raise ConvertError(f"{source.name}: neither a .mar (zip), a .tar.gz archive nor a model folder")


def _check_entry(name: str, *, origin: str) -> None:
    parts = PurePosixPath(name).parts
    if name.startswith("/") or "\\" in name or ".." in parts or (parts and ":" in parts[0]):
        raise ConvertError(f"{origin}: entry {name!r} would be written outside the archive folder; refused")


def _read(root: Path, *, origin: str) -> TorchServeArchive:
    path = root / MANIFEST
    if not path.is_file():
        raise ConvertError(f"{origin}: not a TorchServe model archive (no {MANIFEST})")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ConvertError(f"{origin}: {MANIFEST} is not valid JSON ({exc})") from None
    model = manifest.get("model") if isinstance(manifest, dict) else None
    if not isinstance(model, dict):
        raise ConvertError(f'{origin}: {MANIFEST} has no "model" object')
    name = _text(model, "modelName")
    if name is None:
        raise ConvertError(f"{origin}: {MANIFEST} names no modelName")
    runtime = manifest.get("runtime")
    return TorchServeArchive(
        origin=origin,
        root=root,
        model_name=name,
        model_version=_text(model, "modelVersion"),
        handler=_text(model, "handler") or "",
        model_file=_text(model, "modelFile"),
        serialized_file=_text(model, "serializedFile"),
        runtime=runtime if isinstance(runtime, str) else "python",
        manifest=manifest,
    )


def _text(model: dict[str, Any], key: str) -> str | None:
    value = model.get(key)
    if value is None or value == "" or isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    return str(value)
