"""Bare names resolve to files and folders inside the model store, and nothing else."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from modelfleet.server.errors import ErrorKind, ModelFleetError, Reason
from modelfleet.server.models.sources import SourceResolver

Refused = Callable[..., Awaitable[ModelFleetError]]


async def test_a_store_file_resolves_to_its_real_path_and_keeps_the_url_as_given(
    model_store: Path, make_resolver: Callable[..., SourceResolver]
) -> None:
    (model_store / "tiny.pt").write_bytes(b"model")

    source = await make_resolver().resolve("tiny.pt")

    assert source.path == (model_store / "tiny.pt").resolve()
    assert source.url == "tiny.pt"
    assert source.version_hint is None


async def test_a_store_folder_resolves_to_the_folder(
    model_store: Path, make_resolver: Callable[..., SourceResolver]
) -> None:
    (model_store / "mlp" / "MAR-INF").mkdir(parents=True)

    source = await make_resolver().resolve("mlp")

    assert source.path == (model_store / "mlp").resolve()
    assert source.path.is_dir()


async def test_a_sub_path_in_the_store_resolves(
    model_store: Path, make_resolver: Callable[..., SourceResolver]
) -> None:
    (model_store / "team" / "a").mkdir(parents=True)
    (model_store / "team" / "a" / "x.pt").write_bytes(b"model")

    source = await make_resolver().resolve("team/a/x.pt#version=2.0")

    assert source.path == (model_store / "team" / "a" / "x.pt").resolve()
    assert source.url == "team/a/x.pt#version=2.0"
    assert source.version_hint == "2.0"


async def test_a_symlink_to_another_store_entry_stays_allowed(
    model_store: Path, make_resolver: Callable[..., SourceResolver]
) -> None:
    (model_store / "v1").mkdir()
    (model_store / "v1" / "tiny.pt").write_bytes(b"model")
    (model_store / "latest.pt").symlink_to(model_store / "v1" / "tiny.pt")

    source = await make_resolver().resolve("latest.pt")

    assert source.path == (model_store / "v1" / "tiny.pt").resolve()


async def test_a_store_reached_through_a_symlink_still_serves_its_entries(
    tmp_path: Path, model_store: Path, make_resolver: Callable[..., SourceResolver]
) -> None:
    (model_store / "tiny.pt").write_bytes(b"model")
    (tmp_path / "store-link").symlink_to(model_store)

    source = await make_resolver(model_store=tmp_path / "store-link").resolve("tiny.pt")

    assert source.path == (model_store / "tiny.pt").resolve()


async def test_a_missing_store_file_is_source_not_found(
    make_resolver: Callable[..., SourceResolver], refused: Refused
) -> None:
    error = await refused(make_resolver(), "nothere.pt", ErrorKind.NOT_FOUND, Reason.SOURCE_NOT_FOUND)

    assert "nothere.pt" in error.message


async def test_a_missing_model_store_makes_every_name_not_found(
    tmp_path: Path, make_resolver: Callable[..., SourceResolver], refused: Refused
) -> None:
    resolver = make_resolver(model_store=tmp_path / "no-store")

    await refused(resolver, "tiny.pt", ErrorKind.NOT_FOUND, Reason.SOURCE_NOT_FOUND)


async def test_an_absolute_bare_name_is_refused_as_a_path_escape(
    tmp_path: Path, make_resolver: Callable[..., SourceResolver], refused: Refused
) -> None:
    (tmp_path / "outside.pt").write_bytes(b"model")

    error = await refused(make_resolver(), str(tmp_path / "outside.pt"), ErrorKind.INVALID_ARGUMENT, Reason.PATH_ESCAPE)

    assert "file://" in error.message


async def test_the_store_itself_is_not_a_model(make_resolver: Callable[..., SourceResolver], refused: Refused) -> None:
    for name in (".", "./", "./."):
        await refused(make_resolver(), name, ErrorKind.INVALID_ARGUMENT, Reason.BAD_INPUT)


async def test_a_fifo_in_the_store_is_refused_instead_of_read(
    model_store: Path, make_resolver: Callable[..., SourceResolver], refused: Refused
) -> None:
    os.mkfifo(model_store / "pipe.pt")

    await refused(make_resolver(), "pipe.pt", ErrorKind.INVALID_ARGUMENT, Reason.UNSUPPORTED_FORMAT)
