"""Refusals TorchServe 0.12 also makes are worded as it words them, with the URL clipped.

TorchServe's ModelArchive.downloadModel / ArchiveUtils.validateURL: "Relative path is not allowed in
url: <url>", "Given URL <url> does not match any allowed URL(s)", and (ApiUtils.handleRegister) "Model
file already exists <file>" when a URL's file name is taken in the model store. The hints ModelFleet
adds go to ErrorInfo metadata, so the message stays TorchServe's.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from modelfleet.server.echo import ECHO_LIMIT
from modelfleet.server.errors import ErrorKind, ModelFleetError, Reason
from modelfleet.server.models.sources import SourceResolver

Refused = Callable[..., Awaitable[ModelFleetError]]


@pytest.fixture
def files(http_server: Any) -> Any:
    http_server.add("tiny.pt", b"remote model")
    return http_server


async def test_dot_dot_is_refused_in_torchserve_words_for_every_kind_of_source(
    model_store: Path, make_resolver: Callable[..., SourceResolver], refused: Refused
) -> None:
    resolver = make_resolver(".*")
    for url in ("../x.pt", f"{model_store.as_uri()}/../x.pt", "http://127.0.0.1:9/a/%2e%2e/x.pt"):
        error = await refused(resolver, url, ErrorKind.INVALID_ARGUMENT, Reason.PATH_ESCAPE)
        assert error.message == f"Relative path is not allowed in url: {url}"
        assert error.metadata["url"] == url
        assert "'..'" in error.metadata["hint"]


async def test_a_url_outside_the_allow_list_is_refused_in_torchserve_words(
    tmp_path: Path, make_resolver: Callable[..., SourceResolver], refused: Refused
) -> None:
    for url in ("http://127.0.0.1:9/x.pt#version=2", (tmp_path / "x.pt").as_uri()):
        error = await refused(make_resolver(), url, ErrorKind.PERMISSION_DENIED, Reason.SOURCE_NOT_ALLOWED)
        assert error.message == f"Given URL {url} does not match any allowed URL(s)"


async def test_echoed_urls_are_clipped_and_control_characters_escaped(
    make_resolver: Callable[..., SourceResolver], refused: Refused
) -> None:
    long_url = "http://127.0.0.1:9/" + "a" * 100_000 + ".pt"
    for url, reason, kind in (
        (long_url, Reason.SOURCE_NOT_ALLOWED, ErrorKind.PERMISSION_DENIED),
        (long_url.replace("/aaa", "/../aaa"), Reason.PATH_ESCAPE, ErrorKind.INVALID_ARGUMENT),
    ):
        error = await refused(make_resolver(), url, kind, reason)
        assert len(error.message) < ECHO_LIMIT + 100
        assert f"({len(url):,} characters)" in error.message
    error = await refused(
        make_resolver(), "http://127.0.0.1:9/x\n.pt", ErrorKind.PERMISSION_DENIED, Reason.SOURCE_NOT_ALLOWED
    )
    assert "\n" not in error.message and "\\n" in error.message


async def test_an_allowed_http_url_whose_file_name_the_store_has_is_refused_before_any_download(
    files: Any, model_store: Path, make_resolver: Callable[..., SourceResolver], refused: Refused
) -> None:
    (model_store / "tiny.pt").write_bytes(b"the store's own model")
    url = files.url("/files/tiny.pt#version=2.0")

    error = await refused(
        make_resolver(re.escape(files.base) + "/.*"), url, ErrorKind.ALREADY_EXISTS, Reason.MODEL_FILE_EXISTS
    )

    assert error.message == "Model file already exists tiny.pt"
    assert error.metadata == {"url": url, "file": "tiny.pt"}
    assert files.state.requests == []
    assert (model_store / "tiny.pt").read_bytes() == b"the store's own model"


async def test_an_allowed_file_url_elsewhere_whose_file_name_the_store_has_is_refused(
    tmp_path: Path, model_store: Path, make_resolver: Callable[..., SourceResolver], refused: Refused
) -> None:
    (model_store / "tiny.pt").write_bytes(b"model")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "tiny.pt").write_bytes(b"other model")
    url = (tmp_path / "elsewhere" / "tiny.pt").as_uri()

    error = await refused(make_resolver("file://.*"), url, ErrorKind.ALREADY_EXISTS, Reason.MODEL_FILE_EXISTS)

    assert error.message == "Model file already exists tiny.pt"


async def test_a_taken_file_name_is_decided_after_the_dot_dot_and_allow_list_checks(
    files: Any, model_store: Path, make_resolver: Callable[..., SourceResolver], refused: Refused
) -> None:
    (model_store / "tiny.pt").write_bytes(b"model")
    resolver = make_resolver()  # nothing but the store allowed

    await refused(resolver, files.url("/files/tiny.pt"), ErrorKind.PERMISSION_DENIED, Reason.SOURCE_NOT_ALLOWED)
    await refused(resolver, files.url("/a/../tiny.pt"), ErrorKind.INVALID_ARGUMENT, Reason.PATH_ESCAPE)
    assert files.state.requests == []


async def test_the_store_files_own_names_and_urls_are_not_taken(
    files: Any, model_store: Path, make_resolver: Callable[..., SourceResolver]
) -> None:
    (model_store / "tiny.pt").write_bytes(b"model")
    (model_store / "sub").mkdir()
    (model_store / "sub" / "tiny.pt").write_bytes(b"model in a folder")
    resolver = make_resolver(re.escape(files.base) + "/.*")

    for url in ("tiny.pt", (model_store / "tiny.pt").as_uri(), (model_store / "sub" / "tiny.pt").as_uri()):
        assert (await resolver.resolve(url)).path.name == "tiny.pt"
    files.add("other.pt", b"remote")
    assert (await resolver.resolve(files.url("/files/other.pt"))).path.read_bytes() == b"remote"
