"""http(s) sources fetched from a real loopback server: allow-list, size limit, timeouts, sha256, redirects."""

from __future__ import annotations

import hashlib
import re
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from modelfleet.server.errors import ErrorKind, ModelFleetError, Reason
from modelfleet.server.models.sources import SourceResolver

Refused = Callable[..., Awaitable[ModelFleetError]]
BODY = bytes(range(256)) * 64  # 16 KiB
DIGEST = hashlib.sha256(BODY).hexdigest()


def leftovers(folder: Path) -> list[Path]:
    """Every file under the download folder (temp files included)."""
    return sorted(path for path in folder.rglob("*") if path.is_file()) if folder.exists() else []


@pytest.fixture
def server(http_server: Any) -> Any:
    http_server.add("tiny.pt", BODY)
    return http_server


@pytest.fixture
def allow_server(server: Any, make_resolver: Callable[..., SourceResolver]) -> Callable[..., SourceResolver]:
    """A resolver that allows every URL of the test server."""

    def make(**overrides: object) -> SourceResolver:
        return make_resolver(re.escape(server.base) + "/.*", **overrides)

    return make


async def test_http_urls_are_refused_by_default_and_never_requested(
    server, make_resolver: Callable[..., SourceResolver], refused: Refused
) -> None:
    url = server.url("/files/tiny.pt")

    error = await refused(make_resolver(), url, ErrorKind.PERMISSION_DENIED, Reason.SOURCE_NOT_ALLOWED)

    assert error.message == f"Given URL {url} does not match any allowed URL(s)"  # TorchServe's words
    assert "--allowed-sources" in error.metadata["hint"]
    assert server.state.requests == []


async def test_an_allowed_http_url_is_downloaded_with_its_file_name(
    server, allow_server: Callable[..., SourceResolver], model_store: Path
) -> None:
    url = server.url("/files/tiny.pt") + "#version=2.0"

    source = await allow_server().resolve(url)

    assert source.url == url
    assert source.version_hint == "2.0"
    assert source.path.name == "tiny.pt"
    assert source.path.read_bytes() == BODY
    assert source.path.is_relative_to((model_store / ".downloads").resolve())
    assert leftovers(model_store / ".downloads") == [source.path]


async def test_two_urls_with_the_same_file_name_do_not_clash(
    server, allow_server: Callable[..., SourceResolver], tmp_path: Path
) -> None:
    server.add("other/tiny.pt", b"other model")
    resolver = allow_server(download_dir=tmp_path / "dl")

    first = await resolver.resolve(server.url("/files/tiny.pt"))
    second = await resolver.resolve(server.url("/files/other/tiny.pt"))

    assert first.path != second.path
    assert (first.path.name, second.path.name) == ("tiny.pt", "tiny.pt")
    assert (first.path.read_bytes(), second.path.read_bytes()) == (BODY, b"other model")
    assert first.path.parent.parent == second.path.parent.parent == (tmp_path / "dl").resolve()


@pytest.mark.parametrize("name", ["model.pt2", "archive.mar", "weights.safetensors", "folder.zip"])
async def test_the_url_file_extension_is_kept_for_the_loader(
    server, allow_server: Callable[..., SourceResolver], name: str
) -> None:
    server.add(name, b"x")

    source = await allow_server().resolve(server.url(f"/files/{name}"))

    assert source.path.name == name


async def test_an_unsafe_file_name_is_made_safe(server: Any, allow_server: Callable[..., SourceResolver]) -> None:
    server.add(".my model.pt", b"x")

    source = await allow_server().resolve(server.url("/files/" + quote(".my model.pt")))

    assert source.path.name == "my_model.pt"


async def test_a_pattern_for_one_path_does_not_allow_another(
    server, make_resolver: Callable[..., SourceResolver], refused: Refused
) -> None:
    resolver = make_resolver(re.escape(server.url("/files/")) + r"[a-z]+\.pt")
    server.add("evil.bin", b"x")

    assert (await resolver.resolve(server.url("/files/tiny.pt"))).path.read_bytes() == BODY
    await refused(resolver, server.url("/files/evil.bin"), ErrorKind.PERMISSION_DENIED, Reason.SOURCE_NOT_ALLOWED)


@pytest.mark.parametrize("route", ["files", "chunked"])
async def test_a_body_over_the_size_limit_fails_and_leaves_nothing(
    server, allow_server: Callable[..., SourceResolver], refused: Refused, model_store: Path, route: str
) -> None:
    resolver = allow_server(max_download_bytes=len(BODY) - 1)

    url = server.url(f"/{route}/tiny.pt")

    error = await refused(resolver, url, ErrorKind.INVALID_ARGUMENT, Reason.SOURCE_FETCH_FAILED)

    assert f"larger than {len(BODY) - 1} bytes" in error.message
    assert leftovers(model_store / ".downloads") == []


async def test_a_content_length_over_the_limit_fails_before_the_body_is_read(
    server: Any, allow_server: Callable[..., SourceResolver], refused: Refused
) -> None:
    # The stall route announces the whole body but sends only half: reading it would time out.
    resolver = allow_server(max_download_bytes=len(BODY) - 1, download_timeout_s=30.0)
    started = time.monotonic()

    await refused(resolver, server.url("/stall/tiny.pt"), ErrorKind.INVALID_ARGUMENT, Reason.SOURCE_FETCH_FAILED)

    assert time.monotonic() - started < 10.0


async def test_a_body_at_the_size_limit_is_accepted_with_or_without_content_length(
    server, allow_server: Callable[..., SourceResolver]
) -> None:
    resolver = allow_server(max_download_bytes=len(BODY))

    for route in ("files", "chunked"):
        assert (await resolver.resolve(server.url(f"/{route}/tiny.pt"))).path.read_bytes() == BODY


async def test_a_server_that_stalls_mid_body_fails_within_the_timeout(
    server, allow_server: Callable[..., SourceResolver], refused: Refused, model_store: Path
) -> None:
    resolver = allow_server(download_timeout_s=0.5)
    started = time.monotonic()

    error = await refused(
        resolver, server.url("/stall/tiny.pt"), ErrorKind.DEADLINE_EXCEEDED, Reason.SOURCE_FETCH_FAILED
    )

    assert time.monotonic() - started < 4.0
    assert "timeout" in error.message
    assert leftovers(model_store / ".downloads") == []


@pytest.fixture
def silent_listener() -> Iterator[str]:
    """A socket that completes TCP handshakes (kernel backlog) but never answers: no response headers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


async def test_a_server_that_never_answers_fails_within_the_timeout(
    silent_listener: str, make_resolver: Callable[..., SourceResolver], refused: Refused
) -> None:
    resolver = make_resolver(re.escape(silent_listener) + "/.*", download_timeout_s=0.5)
    started = time.monotonic()

    await refused(resolver, silent_listener + "/m.pt", ErrorKind.DEADLINE_EXCEEDED, Reason.SOURCE_FETCH_FAILED)

    assert time.monotonic() - started < 4.0


async def test_a_refused_connection_is_unavailable(
    make_resolver: Callable[..., SourceResolver], refused: Refused
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused

        url = f"http://127.0.0.1:{port}/m.pt"

        await refused(make_resolver(".*"), url, ErrorKind.UNAVAILABLE, Reason.SOURCE_FETCH_FAILED)


async def test_a_download_with_the_right_sha256_is_kept(server, allow_server: Callable[..., SourceResolver]) -> None:
    source = await allow_server().resolve(server.url(f"/files/tiny.pt#sha256={DIGEST}"))

    assert hashlib.sha256(source.path.read_bytes()).hexdigest() == DIGEST


async def test_a_download_with_another_sha256_is_refused_and_deleted(
    server, allow_server: Callable[..., SourceResolver], refused: Refused, model_store: Path
) -> None:
    wrong = hashlib.sha256(b"something else").hexdigest()

    for route in ("files", "chunked"):
        url = server.url(f"/{route}/tiny.pt#sha256={wrong}")
        error = await refused(allow_server(), url, ErrorKind.INVALID_ARGUMENT, Reason.CHECKSUM_MISMATCH)
        assert DIGEST in error.message and wrong in error.message
    assert leftovers(model_store / ".downloads") == []


async def test_a_pinned_download_already_on_disk_is_not_fetched_again(
    server, allow_server: Callable[..., SourceResolver]
) -> None:
    url = server.url(f"/files/tiny.pt#sha256={DIGEST}")
    first = await allow_server().resolve(url)
    del server.state.files["tiny.pt"]  # a second request would now be a 404

    second = await allow_server().resolve(url)

    assert second.path == first.path
    assert server.state.requests == ["/files/tiny.pt"]


async def test_an_unpinned_url_is_fetched_again_so_a_new_upload_is_seen(
    server, allow_server: Callable[..., SourceResolver]
) -> None:
    first = await allow_server().resolve(server.url("/files/tiny.pt"))
    server.add("tiny.pt", b"new upload")

    second = await allow_server().resolve(server.url("/files/tiny.pt"))

    assert second.path == first.path
    assert second.path.read_bytes() == b"new upload"


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (404, ErrorKind.NOT_FOUND),
        (410, ErrorKind.NOT_FOUND),
        (403, ErrorKind.INVALID_ARGUMENT),
        (400, ErrorKind.INVALID_ARGUMENT),
        (429, ErrorKind.UNAVAILABLE),
        (500, ErrorKind.UNAVAILABLE),
        (503, ErrorKind.UNAVAILABLE),
    ],
)
async def test_an_http_error_status_is_a_fetch_failure_that_names_the_status(
    server,
    allow_server: Callable[..., SourceResolver],
    refused: Refused,
    model_store: Path,
    status: int,
    kind: ErrorKind,
) -> None:
    error = await refused(allow_server(), server.url(f"/status/{status}/m.pt"), kind, Reason.SOURCE_FETCH_FAILED)

    assert str(status) in error.message
    assert error.metadata["http_status"] == str(status)
    assert leftovers(model_store / ".downloads") == []


async def test_a_missing_file_on_the_server_is_a_404_fetch_failure(
    server, allow_server: Callable[..., SourceResolver], refused: Refused
) -> None:
    await refused(allow_server(), server.url("/files/absent.pt"), ErrorKind.NOT_FOUND, Reason.SOURCE_FETCH_FAILED)


async def test_a_redirect_to_an_allowed_url_is_followed(server, allow_server: Callable[..., SourceResolver]) -> None:
    target = server.url("/files/tiny.pt")

    source = await allow_server().resolve(server.url("/redirect/latest.pt?to=" + quote(target, safe="")))

    assert source.path.read_bytes() == BODY
    assert source.path.name == "latest.pt"  # named after the URL the client gave
    assert server.state.requests[-1] == "/files/tiny.pt"


async def test_a_redirect_to_a_refused_url_is_not_followed(
    server: Any, serve: Any, make_resolver: Callable[..., SourceResolver], refused: Refused, model_store: Path
) -> None:
    other = serve()
    other.add("tiny.pt", b"evil")
    resolver = make_resolver(re.escape(server.url("/redirect/")) + ".*")

    for target in (server.url("/files/tiny.pt"), other.url("/files/tiny.pt")):
        url = server.url("/redirect/x.pt?to=" + quote(target, safe=""))
        error = await refused(resolver, url, ErrorKind.PERMISSION_DENIED, Reason.SOURCE_NOT_ALLOWED)
        assert target in error.message and "redirect" in error.message
    assert all(path.startswith("/redirect/") for path in server.state.requests)
    assert other.state.requests == []
    assert leftovers(model_store / ".downloads") == []


@pytest.mark.parametrize(
    ("target", "kind", "reason"),
    [
        ("file:///etc/passwd", ErrorKind.PERMISSION_DENIED, Reason.SOURCE_NOT_ALLOWED),
        ("ftp://127.0.0.1/m.pt", ErrorKind.PERMISSION_DENIED, Reason.SOURCE_NOT_ALLOWED),
        ("/files/%2e%2e/tiny.pt", ErrorKind.INVALID_ARGUMENT, Reason.PATH_ESCAPE),
    ],
)
async def test_a_redirect_to_another_scheme_or_an_escape_is_refused_even_when_everything_is_allowed(
    server,
    make_resolver: Callable[..., SourceResolver],
    refused: Refused,
    target: str,
    kind: ErrorKind,
    reason: Reason,
) -> None:
    await refused(make_resolver(".*"), server.url("/redirect/x.pt?to=" + quote(target, safe="")), kind, reason)


async def test_credentials_in_an_http_url_are_refused(
    make_resolver: Callable[..., SourceResolver], refused: Refused
) -> None:
    url = "http://user:secret@127.0.0.1:9/m.pt"

    await refused(make_resolver(".*"), url, ErrorKind.INVALID_ARGUMENT, Reason.BAD_INPUT)


@pytest.mark.parametrize("url", ["http:///m.pt", "http://127.0.0.1:99999/m.pt", "https:m.pt"])
async def test_a_malformed_http_url_is_bad_input(
    make_resolver: Callable[..., SourceResolver], refused: Refused, url: str
) -> None:
    await refused(make_resolver(".*"), url, ErrorKind.INVALID_ARGUMENT, Reason.BAD_INPUT)


async def test_a_redirect_loop_ends_as_a_fetch_failure(
    server: Any, allow_server: Callable[..., SourceResolver], refused: Refused
) -> None:
    error = await refused(
        allow_server(), server.url("/loop/x.pt"), ErrorKind.INVALID_ARGUMENT, Reason.SOURCE_FETCH_FAILED
    )

    assert "redirect" in error.message
    assert 1 < len(server.state.requests) <= 12  # urllib stops after 10 hops


async def test_an_unwritable_download_folder_is_a_server_side_failure(
    server: Any, allow_server: Callable[..., SourceResolver], refused: Refused, tmp_path: Path
) -> None:
    (tmp_path / "a-file").write_bytes(b"")
    resolver = allow_server(download_dir=tmp_path / "a-file" / "downloads")  # no folder can be made under a file

    error = await refused(resolver, server.url("/files/tiny.pt"), ErrorKind.INTERNAL, Reason.SOURCE_FETCH_FAILED)

    assert "download folder" in error.message
    assert server.state.requests == []
