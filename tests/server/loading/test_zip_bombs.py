"""Zip bombs in .mar archives are refused from the central directory, before anything is inflated,
and a member whose header lies about its size is cut off while it is copied."""

from __future__ import annotations

import json
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from modelfleet.server.errors import ErrorKind, ModelFleetError, Reason
from modelfleet.server.models.archive import ZipLimits, check_zip_limits
from modelfleet.server.models.loading import ModelLoader
from modelfleet.server.settings import ModelSettings, SourceSettings

MIB = 1024 * 1024


@dataclass(frozen=True)
class Member:
    name: str
    data: bytes
    """What is stored: raw deflate data when deflated, else the content itself."""
    size: int
    """The uncompressed size written into both headers (a liar writes less than the truth)."""
    crc: int
    deflated: bool = True


def zeros_deflated(mib: int) -> tuple[bytes, int]:
    """Raw deflate data inflating to `mib` MiB of zeros, and its CRC, built without inflating anything.

    Each full-flush segment is self-contained, so one compressed MiB can simply be repeated.
    """
    chunk = bytes(MIB)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    segment = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(mib):
        crc = zlib.crc32(chunk, crc)
    return segment * mib + compressor.flush(zlib.Z_FINISH), crc


def stored(name: str, data: bytes) -> Member:
    return Member(name, data, len(data), zlib.crc32(data), deflated=False)


def write_zip(path: Path, members: list[Member]) -> Path:
    """A plain (non-zip64) zip written by hand, so headers can say what a hostile tool would."""
    body, directory = b"", b""
    for member in members:
        name = member.name.encode()
        method = zipfile.ZIP_DEFLATED if member.deflated else zipfile.ZIP_STORED
        fields = (20, 0, method, 0, 33, member.crc, len(member.data), member.size, len(name))
        directory += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, *fields, 0, 0, 0, 0, 0, len(body)) + name
        body += struct.pack("<IHHHHHIIIHH", 0x04034B50, *fields, 0) + name + member.data
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(directory), len(body), 0)
    path.write_bytes(body + directory + end)
    return path


@dataclass
class Inflation:
    """What the code under test opened and read out of archives."""

    opened: list[str]
    read_bytes: int = 0


@pytest.fixture
def inflation(monkeypatch: pytest.MonkeyPatch) -> Iterator[Inflation]:
    seen = Inflation(opened=[])
    real_open, real_read = zipfile.ZipFile.open, zipfile.ZipExtFile.read

    def spy_open(self: zipfile.ZipFile, name: Any, *args: Any, **kwargs: Any) -> Any:
        seen.opened.append(name.filename if isinstance(name, zipfile.ZipInfo) else name)
        return real_open(self, name, *args, **kwargs)

    def spy_read(self: zipfile.ZipExtFile, n: int = -1) -> bytes:
        data = real_read(self, n)
        if self.name.endswith(".pt"):
            seen.read_bytes += len(data)
        return data

    monkeypatch.setattr(zipfile.ZipFile, "open", spy_open)
    monkeypatch.setattr(zipfile.ZipExtFile, "read", spy_read)
    yield seen


@pytest.fixture(scope="module")
def gib_bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ~1 MiB .mar whose model.pt inflates to 1 GiB (ratio about 1,000:1)."""
    data, crc = zeros_deflated(1024)
    path = tmp_path_factory.mktemp("bomb") / "bomb.mar"
    return write_zip(path, [
        stored("MAR-INF/MANIFEST.json", json.dumps({"model": {"modelName": "bomb", "serializedFile": "model.pt"}})
               .encode()),
        Member("model.pt", data, 1024 * MIB, crc),
    ])  # fmt: skip


def refused(load: Any, mar: Path, loader: ModelLoader) -> ModelFleetError:
    with pytest.raises(ModelFleetError) as caught:
        load(mar, loader_=loader)
    return caught.value


def test_a_one_mib_mar_inflating_to_one_gib_is_refused_before_its_model_is_inflated(
    gib_bomb: Path, load: Any, inflation: Inflation, tmp_path: Path
) -> None:
    assert gib_bomb.stat().st_size < 1.1 * MIB
    work = tmp_path / "work"
    work.mkdir()

    error = refused(load, gib_bomb, ModelLoader(ModelSettings(), work_dir=work))

    assert (error.kind, error.reason) == (ErrorKind.INVALID_ARGUMENT, Reason.UNSUPPORTED_FORMAT)
    assert "'model.pt'" in error.message and "100:1" in error.message and "ratio" in error.message
    assert "model.pt" not in inflation.opened and inflation.read_bytes == 0
    assert list(work.iterdir()) == []


def test_without_a_ratio_limit_the_size_cap_still_refuses_the_bomb_before_inflating(
    gib_bomb: Path, load: Any, inflation: Inflation
) -> None:
    limits = ZipLimits(max_ratio=10**9)

    error = refused(load, gib_bomb, ModelLoader(ModelSettings(), zip_limits=limits))

    cap = 4 * gib_bomb.stat().st_size + 64 * MIB
    assert (error.kind, error.reason) == (ErrorKind.INVALID_ARGUMENT, Reason.UNSUPPORTED_FORMAT)
    assert f"over the limit of {cap} bytes" in error.message and "'model.pt'" in error.message
    assert inflation.read_bytes == 0


def test_a_member_whose_header_understates_its_size_is_cut_off_at_the_declared_size(
    models: Any, load: Any, inflation: Inflation, tmp_path: Path
) -> None:
    data, crc = zeros_deflated(64)  # really 64 MiB; the headers say 1 MiB (no ratio check at that size)
    mar = write_zip(tmp_path / "liar.mar", [
        stored("MAR-INF/MANIFEST.json", models.manifest(modelName="liar", serializedFile="model.pt", handler="")),
        Member("model.pt", data, MIB, crc),
    ])  # fmt: skip

    error = refused(load, mar, ModelLoader(ModelSettings()))

    assert (error.kind, error.reason) == (ErrorKind.INVALID_ARGUMENT, Reason.UNSUPPORTED_FORMAT)
    assert "model.pt" in error.message
    assert inflation.read_bytes <= MIB  # never more than the header admitted, whatever the stream holds


def test_the_running_total_enforces_the_archive_cap_even_past_the_central_directory_check(
    models: Any, load: Any, inflation: Inflation, tmp_path: Path
) -> None:
    data, crc = zeros_deflated(8)
    mar = write_zip(tmp_path / "big.mar", [
        stored("MAR-INF/MANIFEST.json", models.manifest(modelName="big", serializedFile="model.pt", handler="")),
        Member("model.pt", data, 8 * MIB, crc),
    ])  # fmt: skip
    limits = ZipLimits(max_ratio=10**9, size_factor=1.0, allowance_bytes=3 * MIB)
    # The central-directory check passes only if it is told less than the truth: make it so.
    real_check = ZipLimits.check

    def lenient(self: ZipLimits, zf: zipfile.ZipFile, *, archive_bytes: int, origin: str) -> None:
        real_check(ZipLimits(max_ratio=10**9, allowance_bytes=64 * MIB), zf, archive_bytes=archive_bytes, origin=origin)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ZipLimits, "check", lenient)
        error = refused(load, mar, ModelLoader(ModelSettings(), zip_limits=limits))

    cap = mar.stat().st_size + 3 * MIB
    assert (error.kind, error.reason) == (ErrorKind.INVALID_ARGUMENT, Reason.UNSUPPORTED_FORMAT)
    assert f"inflates past {cap} bytes" in error.message
    assert inflation.read_bytes <= cap + MIB  # one copy chunk past the cap at most


def test_the_ratio_limit_applies_to_members_over_one_mib(tmp_path: Path) -> None:
    data, crc = zeros_deflated(2)
    path = write_zip(tmp_path / "z.zip", [Member("weights.bin", data, 2 * MIB, crc)])
    ratio = 2 * MIB / len(data)

    with zipfile.ZipFile(path) as zf:
        with pytest.raises(ModelFleetError) as caught:
            check_zip_limits(zf, archive_bytes=path.stat().st_size, origin="z.zip", max_ratio=100, max_total=10**10)
        check_zip_limits(zf, archive_bytes=path.stat().st_size, origin="z.zip", max_ratio=ratio + 1, max_total=10**10)

    assert (caught.value.kind, caught.value.reason) == (ErrorKind.INVALID_ARGUMENT, Reason.UNSUPPORTED_FORMAT)
    assert f"ratio {ratio:.0f}:1" in caught.value.message and "'weights.bin'" in caught.value.message


def test_small_members_that_compress_well_are_not_refused(tmp_path: Path) -> None:
    padding = b" " * (512 * 1024)  # about 500:1, but it cannot inflate to much on its own
    path = tmp_path / "padded.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("notes.txt", padding)

    with zipfile.ZipFile(path) as zf:
        ZipLimits().check(zf, archive_bytes=path.stat().st_size, origin="padded.zip")


def test_an_archive_listing_too_many_entries_is_refused(tmp_path: Path) -> None:
    path = write_zip(tmp_path / "many.zip", [stored(f"f{i}", b"") for i in range(11)])

    with zipfile.ZipFile(path) as zf, pytest.raises(ModelFleetError) as caught:
        ZipLimits(max_entries=10).check(zf, archive_bytes=path.stat().st_size, origin="many.zip")

    assert "11 entries" in caught.value.message and "limit of 10" in caught.value.message


def test_legitimate_archives_still_load_under_the_default_limits(models: Any, load: Any) -> None:
    torch.manual_seed(0)
    big = torch.nn.Sequential(torch.nn.Linear(16, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 4))
    mar = models.mar("real.mar", {  # deflated, as torch-model-archiver writes it
        "MAR-INF/MANIFEST.json": models.manifest(modelName="real", serializedFile="real.pt", handler=""),
        "real.pt": models.torchscript("real.pt", big).read_bytes(),
        "config/notes.txt": b" " * 100_000,
    })  # fmt: skip
    loader = ModelLoader(ModelSettings(), zip_limits=ZipLimits.of(SourceSettings()))

    loaded = load(mar, loader_=loader)

    assert (loaded.name, loaded.load_info.layout) == ("real", "mar")
