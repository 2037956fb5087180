"""Read TorchServe model archives (.mar zips) and model folders (MAR-INF/MANIFEST.json) safely.

Called by loading.py. Parses the manifest and copies out ONLY the serialized model file, under a
name this module chooses, into a private folder; entry names that could escape (absolute, `..`,
backslashes) are refused. Zip bombs are refused from the central directory before anything is
inflated (check_zip_limits, also used for TorchScript/.pt2 zips) and sizes are counted again while
copying. Never imports, executes or extracts anything else.
"""

from __future__ import annotations

import json
import shutil
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import ErrorKind, ModelFleetError, Reason
from ..settings import SourceSettings

MANIFEST_PATH = "MAR-INF/MANIFEST.json"
MAX_MANIFEST_BYTES = 1024 * 1024
"""A TorchServe manifest is a few hundred bytes; anything near this is not one."""
_COPY_CHUNK = 1024 * 1024
RATIO_FLOOR_BYTES = 1024 * 1024
"""Members that inflate to at most this are not ratio-checked: they cannot be a bomb on their own
(the total cap still counts them), and small text files (padding, JSON) compress far past 100:1."""


@dataclass(frozen=True)
class ZipLimits:
    """Zip-bomb limits for one archive (SourceSettings' archive fields); see check_zip_limits."""

    max_ratio: float = SourceSettings.max_archive_ratio
    size_factor: float = SourceSettings.extract_size_factor
    allowance_bytes: int = SourceSettings.extract_size_allowance_bytes
    max_entries: int = SourceSettings.max_archive_entries

    @classmethod
    def of(cls, settings: SourceSettings) -> ZipLimits:
        return cls(
            max_ratio=settings.max_archive_ratio,
            size_factor=settings.extract_size_factor,
            allowance_bytes=settings.extract_size_allowance_bytes,
            max_entries=settings.max_archive_entries,
        )

    def max_total(self, archive_bytes: int) -> int:
        """Most bytes an archive of this size may inflate to: factor x its size + the allowance."""
        return int(self.size_factor * archive_bytes) + self.allowance_bytes

    def check(self, zf: zipfile.ZipFile, *, archive_bytes: int, origin: str) -> None:
        check_zip_limits(
            zf,
            archive_bytes=archive_bytes,
            origin=origin,
            max_ratio=self.max_ratio,
            max_total=self.max_total(archive_bytes),
            max_entries=self.max_entries,
        )


@dataclass(frozen=True)
class Manifest:
    """The fields of TorchServe's MANIFEST.json that matter here (model-archiver 0.12's names)."""

    model_name: str | None
    model_version: str | None
    serialized_file: str | None
    handler: str | None
    model_file: str | None
    """Set for eager-mode archives (a model.py whose class the weights need): refused by the loader."""
    runtime: str | None


def unsupported(message: str) -> ModelFleetError:
    return ModelFleetError(ErrorKind.INVALID_ARGUMENT, Reason.UNSUPPORTED_FORMAT, message)


def path_escape(message: str) -> ModelFleetError:
    return ModelFleetError(ErrorKind.INVALID_ARGUMENT, Reason.PATH_ESCAPE, message)


def check_member_name(name: str, *, origin: str) -> str:
    """A relative, forward-slash path that stays inside the archive; anything else is PATH_ESCAPE."""
    parts = PurePosixPath(name).parts
    if (
        not name
        or "\\" in name
        or "\x00" in name
        or name.startswith("/")
        or ":" in (parts[0] if parts else "")
        or any(part == ".." for part in parts)
    ):
        raise path_escape(f"{origin}: entry {name!r} would escape the archive; refused")
    return name


def parse_manifest(raw: bytes, *, origin: str) -> Manifest:
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise unsupported(f"{origin}: {MANIFEST_PATH} is not valid UTF-8 JSON ({exc})") from None
    model = doc.get("model") if isinstance(doc, dict) else None
    if not isinstance(model, dict):
        raise unsupported(f'{origin}: {MANIFEST_PATH} has no "model" object')
    runtime = doc.get("runtime")
    return Manifest(
        model_name=_text(model, "modelName", origin),
        model_version=_text(model, "modelVersion", origin),
        serialized_file=_text(model, "serializedFile", origin),
        handler=_text(model, "handler", origin),
        model_file=_text(model, "modelFile", origin),
        runtime=runtime if isinstance(runtime, str) else None,
    )


def _text(model: dict[str, Any], key: str, origin: str) -> str | None:
    value = model.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise unsupported(f"{origin}: {MANIFEST_PATH} field model.{key} must be a string")
    # model-archiver writes strings; a hand-written manifest may say "modelVersion": 2.0.
    return str(value)


def zip_bomb(message: str, **metadata: str) -> ModelFleetError:
    return ModelFleetError(ErrorKind.INVALID_ARGUMENT, Reason.UNSUPPORTED_FORMAT, message, metadata=metadata)


def check_zip_limits(
    zf: zipfile.ZipFile,
    *,
    archive_bytes: int,
    origin: str,
    max_ratio: float,
    max_total: int,
    max_entries: int = SourceSettings.max_archive_entries,
) -> None:
    """Refuse a zip bomb from its central directory alone, before any member is inflated.

    Checks the number of entries, every member's declared compression ratio (members over
    RATIO_FLOOR_BYTES) and the sum of the declared sizes against max_total. Declared sizes can lie
    downwards, so whoever inflates a member must still count what comes out (extract_member does).
    Raises INVALID_ARGUMENT/UNSUPPORTED_FORMAT naming the member and the limit.
    """
    entries = zf.infolist()
    if len(entries) > max_entries:
        raise zip_bomb(f"{origin}: the archive has {len(entries)} entries, more than the limit of {max_entries}")
    total = 0
    for info in entries:
        size = info.file_size
        if size > RATIO_FLOOR_BYTES:
            ratio = size / max(info.compress_size, 1)
            if ratio > max_ratio:
                raise zip_bomb(
                    f"{origin}: entry {info.filename!r} inflates {info.compress_size} bytes to {size} "
                    f"(compression ratio {ratio:.0f}:1, over the limit of {max_ratio:g}:1); refused as a "
                    "possible zip bomb",
                    member=info.filename,
                )
        total += size
        if total > max_total:
            raise zip_bomb(
                f"{origin}: entries up to {info.filename!r} inflate to {total} bytes, over the limit of "
                f"{max_total} bytes for a {archive_bytes}-byte archive; refused as a possible zip bomb",
                member=info.filename,
            )


def is_mar_zip(path: Path) -> bool:
    """True for a zip holding MAR-INF/MANIFEST.json, whatever the file is called (e.g. a download)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return MANIFEST_PATH in archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


def read_mar_manifest(path: Path) -> Manifest:
    """The manifest of a .mar; every entry name is checked first so a zip-slip archive is refused whole."""
    origin = path.name
    try:
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                check_member_name(name, origin=origin)
            try:
                info = archive.getinfo(MANIFEST_PATH)
            except KeyError:
                raise unsupported(f"{origin}: not a TorchServe model archive (no {MANIFEST_PATH})") from None
            if info.file_size > MAX_MANIFEST_BYTES:
                raise unsupported(f"{origin}: {MANIFEST_PATH} is larger than {MAX_MANIFEST_BYTES} bytes")
            raw = archive.read(info)
    except zipfile.BadZipFile:
        raise unsupported(f"{origin}: not a valid .mar (zip) archive") from None
    except OSError as exc:
        raise unsupported(f"{origin}: cannot read archive ({exc.strerror or exc})") from None
    return parse_manifest(raw, origin=origin)


def read_folder_manifest(folder: Path) -> Manifest:
    """The manifest of an unarchived model folder (TorchServe's no-archive format)."""
    manifest = folder_member(folder, MANIFEST_PATH, what="manifest")
    if manifest.stat().st_size > MAX_MANIFEST_BYTES:
        raise unsupported(f"{folder.name}: {MANIFEST_PATH} is larger than {MAX_MANIFEST_BYTES} bytes")
    return parse_manifest(manifest.read_bytes(), origin=folder.name)


def folder_member(folder: Path, name: str, *, what: str = "serializedFile") -> Path:
    """`name` inside `folder`, after symlinks: a path that resolves outside is PATH_ESCAPE."""
    check_member_name(name, origin=folder.name)
    root = folder.resolve()
    target = (root / name).resolve()
    if not target.is_relative_to(root):
        raise path_escape(f"{folder.name}: {what} {name!r} resolves outside the model folder; refused")
    if not target.is_file():
        raise unsupported(f"{folder.name}: {what} {name!r} not found in the model folder")
    return target


def extract_member(mar: Path, name: str, dest: Path, *, max_bytes: int, limits: ZipLimits | None = None) -> Path:
    """Copy entry `name` of `mar` to the file `dest` (a name the caller chose).

    The central directory is checked against `limits` first (nothing inflated for a bomb); then the
    size is counted while copying, not taken from the zip header, which an archive can fake. The
    copy stops at max_bytes (the server's ceiling) or at the archive's own cap, whichever is lower.
    """
    check_member_name(name, origin=mar.name)
    limits = limits if limits is not None else ZipLimits()
    try:
        archive_bytes = mar.stat().st_size
        with zipfile.ZipFile(mar) as archive:
            limits.check(archive, archive_bytes=archive_bytes, origin=mar.name)
            try:
                info = archive.getinfo(name)
            except KeyError:
                raise unsupported(f"{mar.name}: serializedFile {name!r} is not in the archive") from None
            if info.is_dir():
                raise unsupported(f"{mar.name}: serializedFile {name!r} is a folder")
            if info.file_size > max_bytes:
                raise _too_large(mar.name, name, max_bytes)
            archive_cap = limits.max_total(archive_bytes)
            copied = 0
            with archive.open(info) as source, open(dest, "xb") as sink:
                while chunk := source.read(_COPY_CHUNK):
                    copied += len(chunk)
                    if copied > max_bytes:
                        raise _too_large(mar.name, name, max_bytes)
                    if copied > archive_cap:
                        raise zip_bomb(
                            f"{mar.name}: entry {name!r} inflates past {archive_cap} bytes, the limit for a "
                            f"{archive_bytes}-byte archive, although its header says {info.file_size}; refused",
                            member=name,
                        )
                    sink.write(chunk)
    except (zipfile.BadZipFile, zlib.error) as exc:  # zlib.error: a deflate stream that is not one
        dest.unlink(missing_ok=True)
        raise unsupported(f"{mar.name}: corrupt archive entry {name!r} ({exc})") from None
    except ModelFleetError:
        dest.unlink(missing_ok=True)
        raise
    return dest


def _too_large(origin: str, name: str, max_bytes: int) -> ModelFleetError:
    return ModelFleetError(
        ErrorKind.RESOURCE_EXHAUSTED,
        Reason.LOAD_FAILED,
        f"{origin}: serializedFile {name!r} is larger than the extraction limit of {max_bytes} bytes",
    )


def remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
