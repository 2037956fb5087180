"""`#version=`/`#sha256=` fragments, local checksums, and URLs the server does not fetch."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from modelfleet.server.errors import ErrorKind, ModelFleetError, Reason
from modelfleet.server.models.sources import Fragment, SourceResolver, parse_fragment

Refused = Callable[..., Awaitable[ModelFleetError]]
DIGEST = hashlib.sha256(b"model").hexdigest()


@pytest.mark.parametrize(
    ("url", "base", "fragment"),
    [
        ("tiny.pt", "tiny.pt", Fragment()),
        ("tiny.pt#", "tiny.pt", Fragment()),
        ("tiny.pt#version=1.0", "tiny.pt", Fragment(version="1.0")),
        (f"tiny.pt#sha256={DIGEST}", "tiny.pt", Fragment(sha256=DIGEST)),
        (f"tiny.pt#sha256={DIGEST.upper()}&version=2.0+cu121", "tiny.pt", Fragment("2.0+cu121", DIGEST)),
        (f"http://h/m.mar#version=v3&sha256={DIGEST}", "http://h/m.mar", Fragment("v3", DIGEST)),
    ],
)
def test_fragments_give_a_version_and_a_lower_case_sha256(url: str, base: str, fragment: Fragment) -> None:
    assert parse_fragment(url) == (base, fragment)


@pytest.mark.parametrize(
    ("fragment", "reason"),
    [
        ("sha265=" + DIGEST, Reason.BAD_INPUT),  # a typo must not skip the check
        ("version=1&version=2", Reason.BAD_INPUT),
        ("version", Reason.BAD_INPUT),
        ("sha256=abc", Reason.BAD_INPUT),
        ("sha256=" + "g" * 64, Reason.BAD_INPUT),
        ("version=all", Reason.INVALID_NAME),
        ("version=", Reason.INVALID_NAME),
        ("version=1/2", Reason.INVALID_NAME),
        ("version=" + "1" * 64, Reason.INVALID_NAME),
    ],
)
async def test_a_bad_fragment_is_invalid_argument(
    model_store: Path, make_resolver: Callable[..., SourceResolver], refused: Refused, fragment: str, reason: Reason
) -> None:
    (model_store / "tiny.pt").write_bytes(b"model")

    await refused(make_resolver(), f"tiny.pt#{fragment}", ErrorKind.INVALID_ARGUMENT, reason)


async def test_a_local_file_with_the_right_sha256_resolves(
    model_store: Path, make_resolver: Callable[..., SourceResolver]
) -> None:
    (model_store / "tiny.pt").write_bytes(b"model")

    source = await make_resolver().resolve(f"tiny.pt#sha256={DIGEST}&version=1.0")

    assert source.path == (model_store / "tiny.pt").resolve()
    assert source.version_hint == "1.0"


async def test_a_local_file_with_another_sha256_is_a_checksum_mismatch(
    model_store: Path, make_resolver: Callable[..., SourceResolver], refused: Refused
) -> None:
    (model_store / "tiny.pt").write_bytes(b"tampered")

    url = f"tiny.pt#sha256={DIGEST}"

    error = await refused(make_resolver(), url, ErrorKind.INVALID_ARGUMENT, Reason.CHECKSUM_MISMATCH)

    assert DIGEST in error.message
    assert hashlib.sha256(b"tampered").hexdigest() in error.message
    assert (model_store / "tiny.pt").read_bytes() == b"tampered"  # a user's own file is reported, never deleted


async def test_a_sha256_on_a_folder_is_refused(
    model_store: Path, make_resolver: Callable[..., SourceResolver], refused: Refused
) -> None:
    (model_store / "mlp").mkdir()

    await refused(make_resolver(), f"mlp#sha256={DIGEST}", ErrorKind.INVALID_ARGUMENT, Reason.BAD_INPUT)


# s3:// and gs:// are object-store sources now (tests/server/object_store/).
@pytest.mark.parametrize("url", ["ftp://host/model.mar", "FTP://host/m.pt", "data:,abc", "c:/m.pt"])
async def test_a_scheme_other_than_file_http_and_object_stores_is_unsupported_even_when_every_url_is_allowed(
    make_resolver: Callable[..., SourceResolver], refused: Refused, url: str
) -> None:
    error = await refused(make_resolver(".*"), url, ErrorKind.INVALID_ARGUMENT, Reason.UNSUPPORTED_FORMAT)

    assert url in error.message


async def test_an_empty_url_is_a_missing_field(make_resolver: Callable[..., SourceResolver], refused: Refused) -> None:
    await refused(make_resolver(), "", ErrorKind.INVALID_ARGUMENT, Reason.MISSING_FIELD)


@pytest.mark.parametrize("url", ["tiny\x00.pt", "tiny%00.pt", "file:///tmp/x%00.pt"])
async def test_nul_bytes_are_bad_input(
    make_resolver: Callable[..., SourceResolver], refused: Refused, url: str
) -> None:
    await refused(make_resolver(".*"), url, ErrorKind.INVALID_ARGUMENT, Reason.BAD_INPUT)
