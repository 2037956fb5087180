"""file:// URLs: inside the model store by default, elsewhere only when an --allowed-sources pattern says so."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from modelfleet.server.errors import ErrorKind, ModelFleetError, Reason
from modelfleet.server.models.sources import SourceResolver

Refused = Callable[..., Awaitable[ModelFleetError]]


async def test_a_file_url_inside_the_store_is_allowed_without_patterns(
    model_store: Path, make_resolver: Callable[..., SourceResolver]
) -> None:
    (model_store / "tiny.pt").write_bytes(b"model")
    url = (model_store / "tiny.pt").as_uri() + "#version=1.5"

    source = await make_resolver().resolve(url)

    assert source.path == (model_store / "tiny.pt").resolve()
    assert source.url == url
    assert source.version_hint == "1.5"


async def test_a_file_url_outside_the_store_is_refused_and_names_the_url_and_the_flag(
    tmp_path: Path, make_resolver: Callable[..., SourceResolver], refused: Refused
) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "x.pt").write_bytes(b"model")
    url = (tmp_path / "elsewhere" / "x.pt").as_uri()

    error = await refused(make_resolver(), url, ErrorKind.PERMISSION_DENIED, Reason.SOURCE_NOT_ALLOWED)

    assert error.message == f"Given URL {url} does not match any allowed URL(s)"  # TorchServe's words
    assert "--allowed-sources" in error.metadata["hint"]


async def test_a_file_url_outside_the_store_is_allowed_by_a_matching_pattern(
    tmp_path: Path, make_resolver: Callable[..., SourceResolver], refused: Refused
) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "x.pt").write_bytes(b"model")
    (tmp_path / "other.pt").write_bytes(b"model")
    resolver = make_resolver(re.escape((tmp_path / "elsewhere").as_uri()) + "/.*")

    source = await resolver.resolve((tmp_path / "elsewhere" / "x.pt").as_uri())

    assert source.path == (tmp_path / "elsewhere" / "x.pt").resolve()
    await refused(resolver, (tmp_path / "other.pt").as_uri(), ErrorKind.PERMISSION_DENIED, Reason.SOURCE_NOT_ALLOWED)


async def test_a_pattern_must_match_the_whole_url_not_a_prefix(
    tmp_path: Path, make_resolver: Callable[..., SourceResolver], refused: Refused
) -> None:
    (tmp_path / "x.pt.bak").write_bytes(b"model")
    resolver = make_resolver(re.escape((tmp_path / "x.pt").as_uri()))

    await refused(resolver, (tmp_path / "x.pt.bak").as_uri(), ErrorKind.PERMISSION_DENIED, Reason.SOURCE_NOT_ALLOWED)


async def test_a_pattern_is_matched_without_the_fragment(
    tmp_path: Path, make_resolver: Callable[..., SourceResolver]
) -> None:
    (tmp_path / "x.pt").write_bytes(b"model")
    resolver = make_resolver(re.escape((tmp_path / "x.pt").as_uri()))

    source = await resolver.resolve((tmp_path / "x.pt").as_uri() + "#version=3")

    assert source.version_hint == "3"


async def test_file_localhost_and_percent_encoded_names_are_local_paths(
    model_store: Path, make_resolver: Callable[..., SourceResolver]
) -> None:
    (model_store / "my model.pt").write_bytes(b"model")

    source = await make_resolver().resolve(f"file://localhost{model_store}/my%20model.pt")

    assert source.path == (model_store / "my model.pt").resolve()


async def test_a_file_url_on_another_host_is_unsupported(
    make_resolver: Callable[..., SourceResolver], refused: Refused
) -> None:
    url = "file://fileserver/models/x.pt"

    await refused(make_resolver(".*"), url, ErrorKind.INVALID_ARGUMENT, Reason.UNSUPPORTED_FORMAT)


async def test_a_file_url_with_a_query_cannot_sneak_past_a_suffix_pattern(
    tmp_path: Path, make_resolver: Callable[..., SourceResolver], refused: Refused
) -> None:
    (tmp_path / "secret").write_bytes(b"not a model")
    url = (tmp_path / "secret").as_uri() + "?.pt"

    await refused(make_resolver(r"file://.*\.pt"), url, ErrorKind.INVALID_ARGUMENT, Reason.BAD_INPUT)


async def test_a_relative_file_url_is_refused(make_resolver: Callable[..., SourceResolver], refused: Refused) -> None:
    await refused(make_resolver(".*"), "file:tiny.pt", ErrorKind.INVALID_ARGUMENT, Reason.BAD_INPUT)


async def test_a_missing_file_url_is_source_not_found_only_once_allowed(
    tmp_path: Path, model_store: Path, make_resolver: Callable[..., SourceResolver], refused: Refused
) -> None:
    outside = (tmp_path / "gone.pt").as_uri()

    await refused(make_resolver(), (model_store / "gone.pt").as_uri(), ErrorKind.NOT_FOUND, Reason.SOURCE_NOT_FOUND)
    # Not allowed wins over not found, so the server does not reveal which files exist elsewhere.
    await refused(make_resolver(), outside, ErrorKind.PERMISSION_DENIED, Reason.SOURCE_NOT_ALLOWED)
    await refused(make_resolver(re.escape(outside)), outside, ErrorKind.NOT_FOUND, Reason.SOURCE_NOT_FOUND)


async def test_a_file_under_a_regular_file_is_not_found(
    model_store: Path, make_resolver: Callable[..., SourceResolver], refused: Refused
) -> None:
    (model_store / "tiny.pt").write_bytes(b"model")

    await refused(make_resolver(), "tiny.pt/inner.pt", ErrorKind.NOT_FOUND, Reason.SOURCE_NOT_FOUND)


def test_an_invalid_pattern_fails_at_start(make_resolver: Callable[..., SourceResolver]) -> None:
    with pytest.raises(ValueError, match="--allowed-sources"):
        make_resolver("file:///models/(")
