"""Code shipped inside a model archive or folder never runs, and archive entries cannot escape."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch

from modelfleet.server.errors import ErrorKind, ModelFleetError, Reason


def evil_handler(marker: Path) -> bytes:
    """A TorchServe handler that leaves a marker file when imported or called."""
    return f"""
from pathlib import Path
Path({str(marker)!r}).write_text("imported")

def handle(data, context):
    Path({str(marker)!r}).write_text("handled")
    return data

def initialize(context):
    Path({str(marker)!r}).write_text("initialized")
""".encode()


def marker_archive(models: Any, marker: Path, *, as_folder: bool) -> Path:
    entries = {
        "MAR-INF/MANIFEST.json": models.manifest(
            modelName="evil", serializedFile="tiny.pt", handler="handler.py", modelVersion="1.0"
        ),
        "tiny.pt": models.torchscript().read_bytes(),
        "handler.py": evil_handler(marker),
        "__init__.py": evil_handler(marker),
        "setup.py": evil_handler(marker),
    }
    return models.folder("evil", entries) if as_folder else models.mar("evil.mar", entries)


@pytest.mark.parametrize("as_folder", [False, True], ids=["mar", "folder"])
def test_archive_handler_never_runs_whether_refused_or_overridden(
    models: Any, identify: Any, load: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, as_folder: bool
) -> None:
    marker = tmp_path / "marker"
    source = marker_archive(models, marker, as_folder=as_folder)
    # Even with the archive's own folder as working directory, nothing gets imported from it.
    monkeypatch.chdir(source if as_folder else source.parent)

    with pytest.raises(ModelFleetError) as caught:
        identify(source)
    assert (caught.value.kind, caught.value.reason) == (ErrorKind.INVALID_ARGUMENT, Reason.HANDLER_NOT_ALLOWED)
    assert "'handler.py'" in caught.value.message

    loaded = load(source, handler="default")
    runner = loaded.make_runner("cpu")
    [result] = runner.run_batch([{"data": json.dumps([1.0] * 16).encode()}])
    assert isinstance(result, bytes) and len(json.loads(result)) == 4
    list(runner.stream({"data": json.dumps([1.0] * 16).encode()}))

    assert not marker.exists()


def test_zip_slip_entry_refuses_the_whole_archive(models: Any, identify: Any, tmp_path: Path) -> None:
    mar = models.mar(
        "slip.mar",
        {
            "MAR-INF/MANIFEST.json": models.manifest(modelName="slip", serializedFile="../slip.pt", handler="default"),
            "../slip.pt": models.torchscript().read_bytes(),
        },
    )
    with pytest.raises(ModelFleetError) as caught:
        identify(mar)
    assert (caught.value.kind, caught.value.reason) == (ErrorKind.INVALID_ARGUMENT, Reason.PATH_ESCAPE)
    assert not (models.root.parent / "slip.pt").exists()


@pytest.mark.parametrize("serialized", ["../tiny.pt", "/etc/passwd", "a\\..\\b.pt"])
def test_escaping_serialized_file_name_is_refused(models: Any, identify: Any, serialized: str) -> None:
    mar = models.mar(
        "m.mar",
        {
            "MAR-INF/MANIFEST.json": models.manifest(modelName="m", serializedFile=serialized, handler="default"),
            "tiny.pt": models.torchscript().read_bytes(),
        },
    )
    with pytest.raises(ModelFleetError) as caught:
        identify(mar)
    assert caught.value.reason is Reason.PATH_ESCAPE


def test_folder_serialized_file_symlinked_outside_is_refused(models: Any, load: Any, tmp_path: Path) -> None:
    outside = models.torchscript("outside.pt")
    folder = models.folder(
        "linked",
        {
            "MAR-INF/MANIFEST.json": models.manifest(modelName="linked", serializedFile="tiny.pt", handler="default"),
        },
    )
    os.symlink(outside, folder / "tiny.pt")
    with pytest.raises(ModelFleetError) as caught:
        load(folder)
    assert caught.value.reason is Reason.PATH_ESCAPE


def test_serialized_file_missing_from_the_archive_is_reported(models: Any, load: Any) -> None:
    mar = models.mar(
        "m.mar",
        {
            "MAR-INF/MANIFEST.json": models.manifest(modelName="m", serializedFile="absent.pt", handler="default"),
        },
    )
    with pytest.raises(ModelFleetError) as caught:
        load(mar)
    assert caught.value.reason is Reason.UNSUPPORTED_FORMAT and "absent.pt" in caught.value.message


@pytest.mark.parametrize("raw", [b"{not json", b"[]", b'{"model": {"serializedFile": ["x"]}}', b"\xff\xfe"])
def test_malformed_manifest_is_unsupported(models: Any, identify: Any, raw: bytes) -> None:
    mar = models.mar("m.mar", {"MAR-INF/MANIFEST.json": raw})
    with pytest.raises(ModelFleetError) as caught:
        identify(mar)
    assert caught.value.reason is Reason.UNSUPPORTED_FORMAT


def test_torchscript_that_reads_files_is_refused(models: Any, load: Any, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_bytes(b"\x00" * 16)

    class Reader(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + torch.from_file("secret", size=4)

    with pytest.raises(ModelFleetError) as caught:
        load(models.torchscript("reader.pt", Reader()))
    assert caught.value.reason is Reason.UNSUPPORTED_FORMAT and "from_file" in caught.value.message
