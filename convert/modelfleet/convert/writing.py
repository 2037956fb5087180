"""Write the converted archive: a `.mar` zip, or a model folder (TorchServe's no-archive layout).

Called by the pipeline once a method has passed. The manifest keeps the source's model name, version
and (standard) handler and names no modelFile, so the server sees a TorchScript/torch.export archive.
Written beside the target under a temporary name and renamed into place, so a failed run leaves no
half-written archive; an existing target is replaced only when asked.
"""

from __future__ import annotations

import datetime
import json
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConvertError

MANIFEST = "MAR-INF/MANIFEST.json"
CONVERTER = "modelfleet-convert 0.1.0"


@dataclass(frozen=True)
class Member:
    """One file of the output: its name inside the archive and where its bytes come from."""

    name: str
    source: Path | None = None
    data: bytes | None = None

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        assert self.source is not None
        return self.source.read_bytes()


def manifest(
    *, model_name: str, model_version: str | None, serialized_file: str, handler: str, converted_from: dict[str, Any]
) -> dict[str, Any]:
    model: dict[str, Any] = {"modelName": model_name, "serializedFile": serialized_file, "handler": handler}
    if model_version is not None:
        model["modelVersion"] = model_version
    return {
        "createdOn": datetime.datetime.now().strftime("%d/%m/%Y %H:%M:%S"),  # model-archiver's format
        "runtime": "python",
        "model": model,
        "archiverVersion": CONVERTER,
        "convertedFrom": converted_from,
    }


MODEL_SUFFIXES = (".pt", ".pt2", ".safetensors")


def check_target(output: Path, *, force: bool) -> None:
    """Refuse before any work is done when the output exists and --force was not given."""
    if output.exists() and not force:
        raise ConvertError(f"{output}: already exists; pass --force to replace it")


def write(output: Path, members: list[Member], *, manifest_doc: dict[str, Any], force: bool) -> None:
    check_target(output, force=force)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = output.with_name(f".{output.name}.partial")
    _remove(staging)
    everything = [*members, Member(MANIFEST, data=json.dumps(manifest_doc, indent=4).encode())]
    try:
        if output.suffix == ".mar":
            with zipfile.ZipFile(staging, "w", compression=zipfile.ZIP_DEFLATED) as archive:
                for member in everything:
                    # Model files are stored, not deflated: weights barely compress, and the zeros of an
                    # exported program's example input would look like a zip bomb (over 100:1) to the server.
                    stored = member.name.endswith(MODEL_SUFFIXES)
                    archive.writestr(
                        member.name, member.read(), compress_type=zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
                    )
        else:
            for member in everything:
                target = staging / member.name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(member.read())
        _remove(output)
        staging.rename(output)
    finally:
        _remove(staging)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
