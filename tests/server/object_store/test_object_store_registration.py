"""s3:// and gs:// models registered over the real management API, fetched from a real S3 API on loopback."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from modelfleet.protos.contract import Reason
from modelfleet.server.models import object_store

Emulator = StartApp = Any  # conftest.py's Emulator and start_app (tests import no conftest)


async def test_an_allowed_s3_torchscript_model_is_registered_and_serves_predictions(
    s3: Emulator, start_app: StartApp, torchscript: Callable[..., bytes]
) -> None:
    s3.put("models", "prod/tiny.pt", torchscript(seed=1))

    async with start_app(r"s3://models/prod/.*") as api:
        reply = await api.register("s3://models/prod/tiny.pt")
        prediction = await api.predict("tiny")

    assert reply == 'Model "tiny" Version: 1.0 registered with 1 initial workers'
    assert len(prediction) == 4


async def test_a_bucket_no_pattern_allows_is_refused_before_any_request(
    s3: Emulator, start_app: StartApp, torchscript: Callable[..., bytes]
) -> None:
    s3.put("private", "prod/tiny.pt", torchscript())
    mark = s3.mark()

    async with start_app(r"s3://models/prod/.*") as api:
        failure = await api.refused("s3://private/prod/tiny.pt")

    assert (failure.code, failure.reason) == (grpc.StatusCode.PERMISSION_DENIED, Reason.SOURCE_NOT_ALLOWED.value)
    assert failure.details == "Given URL s3://private/prod/tiny.pt does not match any allowed URL(s)"
    assert s3.since(mark) == []


async def test_object_urls_are_denied_by_default(s3: Emulator, start_app: StartApp) -> None:
    mark = s3.mark()

    async with start_app() as api:
        failure = await api.refused("s3://models/prod/tiny.pt")

    assert (failure.code, failure.reason) == (grpc.StatusCode.PERMISSION_DENIED, Reason.SOURCE_NOT_ALLOWED.value)
    assert s3.since(mark) == []


@pytest.mark.parametrize(
    "url",
    ["s3://models/prod/../secret/tiny.pt", "s3://models/prod/%2e%2e/tiny.pt", "s3:///tiny.pt", "s3://models/",
     "s3://models/prod/tiny.pt?versionId=1", "s3://user:pw@models/prod/tiny.pt"],
)  # fmt: skip
async def test_malformed_or_escaping_object_urls_are_bad_input_and_never_requested(
    s3: Emulator, start_app: StartApp, url: str
) -> None:
    mark = s3.mark()

    async with start_app(r"s3://.*") as api:
        failure = await api.refused(url)

    assert failure.code == grpc.StatusCode.INVALID_ARGUMENT
    assert failure.reason in (Reason.BAD_INPUT.value, Reason.PATH_ESCAPE.value)
    assert s3.since(mark) == []


async def test_a_restarted_server_uses_its_cached_copy_without_a_get(
    s3: Emulator, start_app: StartApp, torchscript: Callable[..., bytes], tmp_path: Path
) -> None:
    s3.put("models", "cache/tiny.pt", torchscript())
    async with start_app(r"s3://models/.*") as api:
        await api.register("s3://models/cache/tiny.pt")
    mark = s3.mark()

    async with start_app(r"s3://models/.*") as restarted:  # same download folder, a new process state
        await restarted.register("s3://models/cache/tiny.pt")

    assert [r.method for r in s3.since(mark)] == ["HEAD"]
    (sidecar,) = (tmp_path / "downloads").rglob(".tiny.pt.source.json")
    assert sidecar.read_text().count('"etag"') == 1


async def test_a_changed_etag_downloads_again_and_replaces_the_old_copy(
    s3: Emulator, start_app: StartApp, torchscript: Callable[..., bytes], tmp_path: Path
) -> None:
    s3.put("models", "changing/tiny.pt", torchscript(seed=1))
    async with start_app(r"s3://models/.*") as api:
        await api.register("s3://models/changing/tiny.pt#version=1")
        first = await api.predict("tiny")
    new_body = torchscript(seed=2)
    s3.put("models", "changing/tiny.pt", new_body)
    mark = s3.mark()

    async with start_app(r"s3://models/.*") as api:
        await api.register("s3://models/changing/tiny.pt#version=2")
        second = await api.predict("tiny")

    assert len(s3.object_gets(mark, "changing/tiny.pt")) == 1
    assert first != second
    (copy,) = (tmp_path / "downloads").rglob("tiny.pt")  # the old ETag's copy was evicted
    assert copy.read_bytes() == new_body


async def test_a_matching_sha256_fragment_is_accepted_and_a_wrong_one_refused_with_nothing_kept(
    s3: Emulator, start_app: StartApp, torchscript: Callable[..., bytes], tmp_path: Path
) -> None:
    body = torchscript()
    digest = hashlib.sha256(body).hexdigest()
    s3.put("models", "pinned/tiny.pt", body)

    async with start_app(r"s3://models/.*") as api:
        failure = await api.refused("s3://models/pinned/tiny.pt#sha256=" + "0" * 64)
        leftovers = sorted(p.name for p in (tmp_path / "downloads").rglob("*") if p.is_file())
        await api.register(f"s3://models/pinned/tiny.pt#sha256={digest}")

    assert (failure.code, failure.reason) == (grpc.StatusCode.INVALID_ARGUMENT, Reason.CHECKSUM_MISMATCH.value)
    assert digest in failure.details
    assert leftovers == []


async def test_gs_urls_use_the_same_s3_api_through_the_endpoint_override(
    s3: Emulator, start_app: StartApp, torchscript: Callable[..., bytes]
) -> None:
    s3.put("gcs-models", "prod/tiny.pt", torchscript())
    mark = s3.mark()

    async with start_app(r"gs://gcs-models/.*") as api:
        await api.register("gs://gcs-models/prod/tiny.pt", model_name="from-gcs")
        assert len(await api.predict("from-gcs")) == 4

    assert len(s3.object_gets(mark, "gcs-models/prod/tiny.pt")) == 1


async def test_without_an_endpoint_gs_goes_to_google_and_s3_to_aws(start_app: StartApp) -> None:
    async with start_app(storage_endpoint_url=None) as api:
        store = api.app.registry.resolver.object_store
        gs_client, s3_client = store.client("gs"), store.client("s3")

    assert gs_client.meta.endpoint_url == "https://storage.googleapis.com"
    assert s3_client.meta.endpoint_url == "https://s3.us-east-1.amazonaws.com"  # the default region
    assert s3_client.meta.region_name == "us-east-1"


@pytest.mark.parametrize(("style", "host", "path"), [("path", "127.0.0.1", "/models/style/tiny.pt"),
                                                      ("virtual", "models.localhost", "/style/tiny.pt")])  # fmt: skip
async def test_path_and_virtual_host_addressing_reach_the_bucket_as_configured(
    s3: Emulator,
    start_app: StartApp,
    torchscript: Callable[..., bytes],
    monkeypatch: pytest.MonkeyPatch,
    style: str,
    host: str,
    path: str,
) -> None:
    s3.put("models", "style/tiny.pt", torchscript())
    endpoint = s3.endpoint
    if style == "virtual":
        # models.localhost has no DNS here: the emulator also serves as the HTTP proxy, so the request
        # still carries the virtual host name (botocore honours HTTP_PROXY, as in a cluster with one).
        monkeypatch.setenv("HTTP_PROXY", s3.endpoint)
        endpoint = f"http://localhost:{s3.port}"
    mark = s3.mark()

    async with start_app(r"s3://models/.*", storage_endpoint_url=endpoint, storage_addressing_style=style) as api:
        await api.register("s3://models/style/tiny.pt", model_name=f"tiny-{style}")

    requests = [(r.method, r.host, r.path) for r in s3.since(mark)]
    assert requests == [("HEAD", f"{host}:{s3.port}", path), ("GET", f"{host}:{s3.port}", path)]


async def test_large_downloads_report_progress_and_the_end_in_the_log(
    s3: Emulator, start_app: StartApp, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    size = 3 * 1024 * 1024
    s3.put("models", "big/blob.bin", b"\0" * size)
    monkeypatch.setattr(object_store, "PROGRESS_STEP_BYTES", 1024 * 1024)  # "large" from 1 MiB, not 64 MiB
    caplog.set_level(logging.INFO, logger=object_store.__name__)

    async with start_app(r"s3://models/.*") as api:
        source = await api.app.registry.resolver.resolve("s3://models/big/blob.bin")

    assert source.path.stat().st_size == size
    messages = [r.getMessage() for r in caplog.records]
    progress = [m for m in messages if f"of {size} bytes" in m]
    done = [m for m in messages if "downloaded model source" in m]
    assert len(progress) >= 2 and progress[-1].endswith("(100%)")
    assert len(done) == 1 and f"{size} bytes in" in done[0]
