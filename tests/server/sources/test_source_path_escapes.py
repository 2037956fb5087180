"""`..` in any spelling, and symlinks that lead out of the store, are refused as PATH_ESCAPE."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from modelfleet.server.errors import ErrorKind, ModelFleetError, Reason
from modelfleet.server.models.sources import SourceResolver

Refused = Callable[..., Awaitable[ModelFleetError]]


@pytest.fixture
def secret(tmp_path: Path, model_store: Path) -> Path:
    """A file next to the model store (tmp_path/secret.pt), reachable by ../secret.pt; plus store/sub/."""
    (model_store / "sub").mkdir()
    (model_store / "sub" / "ok.pt").write_bytes(b"model")
    path = tmp_path / "secret.pt"
    path.write_bytes(b"not for you")
    return path


@pytest.mark.parametrize(
    "name",
    [
        "../secret.pt",
        "sub/../../secret.pt",
        "sub/../ok.pt",  # harmless target, still refused: no `..` at all is simpler to trust
        "..",
        "%2e%2e/secret.pt",
        "%2E%2E/secret.pt",
        ".%2e/secret.pt",
        "sub%2f..%2f..%2fsecret.pt",
        "%252e%252e/secret.pt",
        "..\\secret.pt",
        "sub/..",
    ],
)
async def test_dot_dot_in_a_store_name_is_refused(
    secret: Path, make_resolver: Callable[..., SourceResolver], refused: Refused, name: str
) -> None:
    await refused(make_resolver(), name, ErrorKind.INVALID_ARGUMENT, Reason.PATH_ESCAPE)


@pytest.mark.parametrize(
    "tail", ["/../secret.pt", "/%2e%2e/secret.pt", "/sub/%2E%2e/../secret.pt", "%2f..%2fsecret.pt"]
)
async def test_dot_dot_in_a_file_url_is_refused_even_when_every_file_url_is_allowed(
    secret: Path, model_store: Path, make_resolver: Callable[..., SourceResolver], refused: Refused, tail: str
) -> None:
    url = model_store.as_uri() + tail

    await refused(make_resolver("file://.*"), url, ErrorKind.INVALID_ARGUMENT, Reason.PATH_ESCAPE)


@pytest.mark.parametrize("path", ["/files/../secret.pt", "/files/%2e%2e/secret.pt", "/a/%252E%252E/b.pt"])
async def test_dot_dot_in_an_http_url_is_refused_even_when_every_url_is_allowed(
    make_resolver: Callable[..., SourceResolver], refused: Refused, path: str
) -> None:
    # Refused before any connection: nothing listens on port 9 here.
    await refused(make_resolver(".*"), f"http://127.0.0.1:9{path}", ErrorKind.INVALID_ARGUMENT, Reason.PATH_ESCAPE)


async def test_a_file_symlink_out_of_the_store_is_refused(
    secret: Path, model_store: Path, make_resolver: Callable[..., SourceResolver], refused: Refused
) -> None:
    (model_store / "innocent.pt").symlink_to(secret)

    await refused(make_resolver(), "innocent.pt", ErrorKind.INVALID_ARGUMENT, Reason.PATH_ESCAPE)
    await refused(
        make_resolver(), (model_store / "innocent.pt").as_uri(), ErrorKind.INVALID_ARGUMENT, Reason.PATH_ESCAPE
    )


async def test_a_directory_symlink_out_of_the_store_is_refused_for_everything_under_it(
    tmp_path: Path, model_store: Path, make_resolver: Callable[..., SourceResolver], refused: Refused
) -> None:
    (tmp_path / "outside" / "model").mkdir(parents=True)
    (tmp_path / "outside" / "model" / "x.pt").write_bytes(b"model")
    (model_store / "team").symlink_to(tmp_path / "outside", target_is_directory=True)

    for name in ("team", "team/model", "team/model/x.pt", "team/missing.pt"):
        await refused(make_resolver(), name, ErrorKind.INVALID_ARGUMENT, Reason.PATH_ESCAPE)


async def test_a_dangling_symlink_out_of_the_store_is_an_escape_not_a_missing_file(
    tmp_path: Path, model_store: Path, make_resolver: Callable[..., SourceResolver], refused: Refused
) -> None:
    (model_store / "dangling.pt").symlink_to(tmp_path / "does-not-exist.pt")

    await refused(make_resolver(), "dangling.pt", ErrorKind.INVALID_ARGUMENT, Reason.PATH_ESCAPE)


async def test_a_symlink_whose_real_target_a_pattern_allows_is_accepted(
    secret: Path, model_store: Path, make_resolver: Callable[..., SourceResolver]
) -> None:
    (model_store / "shared.pt").symlink_to(secret)

    source = await make_resolver(re.escape(secret.as_uri())).resolve("shared.pt")

    assert source.path == secret.resolve()


async def test_an_allowed_file_url_whose_symlink_leads_elsewhere_is_refused(
    secret: Path, tmp_path: Path, make_resolver: Callable[..., SourceResolver], refused: Refused
) -> None:
    (tmp_path / "allowed").mkdir()
    (tmp_path / "allowed" / "x.pt").symlink_to(secret)
    resolver = make_resolver(re.escape((tmp_path / "allowed").as_uri()) + "/.*")

    await refused(resolver, (tmp_path / "allowed" / "x.pt").as_uri(), ErrorKind.INVALID_ARGUMENT, Reason.PATH_ESCAPE)


async def test_a_file_url_elsewhere_that_links_into_the_store_is_still_not_allowed(
    tmp_path: Path, model_store: Path, make_resolver: Callable[..., SourceResolver], refused: Refused
) -> None:
    (model_store / "tiny.pt").write_bytes(b"model")
    (tmp_path / "link.pt").symlink_to(model_store / "tiny.pt")

    url = (tmp_path / "link.pt").as_uri()

    await refused(make_resolver(), url, ErrorKind.PERMISSION_DENIED, Reason.SOURCE_NOT_ALLOWED)
