"""What a client is told when an s3:// source cannot be fetched, and that keys never leak into it or the log."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from modelfleet.protos.contract import Reason

Emulator = StartApp = SecretMount = Any  # conftest.py's types (tests import no conftest)
FETCH_FAILED = Reason.SOURCE_FETCH_FAILED.value


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


async def test_a_missing_object_is_not_found_and_says_which_key(s3: Emulator, start_app: StartApp) -> None:
    s3.bucket("models")

    async with start_app(r"s3://models/.*") as api:
        failure = await api.refused("s3://models/prod/absent.pt")

    assert (failure.code, failure.reason) == (grpc.StatusCode.NOT_FOUND, FETCH_FAILED)
    assert failure.details == (
        "downloading model source 's3://models/prod/absent.pt' failed: no object 'prod/absent.pt' in bucket 'models'"
    )


async def test_a_missing_bucket_is_not_found_and_says_so(s3: Emulator, start_app: StartApp) -> None:
    async with start_app(r"s3://.*") as api:
        failure = await api.refused("s3://no-such-bucket/tiny.pt")

    assert (failure.code, failure.reason) == (grpc.StatusCode.NOT_FOUND, FETCH_FAILED)
    assert failure.details.endswith("failed: the bucket 'no-such-bucket' does not exist")


async def test_torchserve_mode_answers_a_failed_download_as_torchserve_did(s3: Emulator, start_app: StartApp) -> None:
    async with start_app(r"s3://.*", status_mode="torchserve") as api:
        failure = await api.refused("s3://no-such-bucket/tiny.pt")

    # TorchServe's DownloadArchiveException became INVALID_ARGUMENT (status.py's table).
    assert (failure.code, failure.reason) == (grpc.StatusCode.INVALID_ARGUMENT, FETCH_FAILED)


@pytest.mark.parametrize(
    ("which", "code"), [("unknown key id", "InvalidAccessKeyId"), ("wrong secret", "SignatureDoesNotMatch")]
)
async def test_refused_credentials_are_permission_denied_and_never_echoed_or_logged(
    s3: Emulator,
    start_app: StartApp,
    secret: SecretMount,
    torchscript: Callable[..., bytes],
    caplog: pytest.LogCaptureFixture,
    which: str,
    code: str,
) -> None:
    s3.put("models", "auth/tiny.pt", torchscript())
    key = "AKIAMODELFLEETWRONG1" if which == "unknown key id" else s3.access_key
    wrong_secret = "wrong/Secret+Key/0123456789abcdefghijklmn"
    secret.write_keys(key, wrong_secret)
    caplog.set_level(logging.DEBUG)

    async with start_app(r"s3://models/.*") as api:
        failure = await api.refused("s3://models/auth/tiny.pt")

    assert (failure.code, failure.reason) == (grpc.StatusCode.PERMISSION_DENIED, FETCH_FAILED)
    assert f"the object store refused the credentials ({code}" in failure.details
    for value in (key, wrong_secret, s3.secret_key):
        assert value not in failure.details
    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert wrong_secret not in logged and s3.secret_key not in logged


async def test_rotated_keys_are_used_by_the_next_registration(
    s3: Emulator, start_app: StartApp, secret: SecretMount, torchscript: Callable[..., bytes]
) -> None:
    s3.put("models", "rotate/tiny.pt", torchscript())
    new_key, new_secret = s3.new_access_key()

    async with start_app(r"s3://models/.*") as api:
        await api.register("s3://models/rotate/tiny.pt", model_name="before")
        secret.write_keys("AKIAMODELFLEETREVOKED", "revoked")  # kubelet's symlink swap
        refused = await api.refused("s3://models/rotate/tiny.pt", model_name="revoked")
        secret.write_keys(new_key, new_secret)
        await api.register("s3://models/rotate/tiny.pt", model_name="after")

    assert refused.code == grpc.StatusCode.PERMISSION_DENIED


async def test_a_credentials_file_in_the_secret_works_as_well(
    s3: Emulator, start_app: StartApp, secret: SecretMount, torchscript: Callable[..., bytes]
) -> None:
    s3.put("models", "ini/tiny.pt", torchscript())
    secret.write(
        {
            "credentials": (
                f"[other]\naws_access_key_id = nope\naws_secret_access_key = nope\n\n"
                f"[default]\naws_access_key_id = {s3.access_key}\naws_secret_access_key = {s3.secret_key}\n"
            )
        }
    )

    async with start_app(r"s3://models/.*") as api:
        assert "registered" in await api.register("s3://models/ini/tiny.pt")


@pytest.mark.parametrize(
    "files",
    [{}, {"AWS_ACCESS_KEY_ID": "AKIAONLYTHEKEYID"}, {"credentials": "aws_secret_access_key = s3cr3t-value\n[x"}],
)
async def test_an_unusable_secret_is_a_failed_precondition_that_names_no_value(
    s3: Emulator, start_app: StartApp, secret: SecretMount, files: dict[str, str]
) -> None:
    secret.write(files)
    mark = s3.mark()

    async with start_app(r"s3://models/.*") as api:
        failure = await api.refused("s3://models/prod/tiny.pt")

    assert (failure.code, failure.reason) == (grpc.StatusCode.FAILED_PRECONDITION, FETCH_FAILED)
    assert "--storage-credentials-dir" in failure.details
    assert "AKIAONLYTHEKEYID" not in failure.details and "s3cr3t-value" not in failure.details
    assert s3.since(mark) == []


async def test_an_object_over_the_size_limit_is_refused_from_its_head_without_a_get(
    s3: Emulator, start_app: StartApp, tmp_path: Path
) -> None:
    s3.put("models", "huge/blob.bin", b"x" * 4096)
    mark = s3.mark()

    async with start_app(r"s3://models/.*", max_download_bytes=4095) as api:
        failure = await api.refused("s3://models/huge/blob.bin")

    assert (failure.code, failure.reason) == (grpc.StatusCode.INVALID_ARGUMENT, FETCH_FAILED)
    assert "larger than 4095 bytes" in failure.details
    assert [r.method for r in s3.since(mark)] == ["HEAD"]
    assert files_under(tmp_path / "downloads") == []


async def test_an_unreachable_endpoint_is_unavailable(start_app: StartApp) -> None:
    with socket.socket() as closed:  # a loopback port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]

    async with start_app(r"s3://models/.*", storage_endpoint_url=f"http://127.0.0.1:{port}") as api:
        failure = await api.refused("s3://models/prod/tiny.pt")

    assert (failure.code, failure.reason) == (grpc.StatusCode.UNAVAILABLE, FETCH_FAILED)
    assert f"cannot reach the object store at http://127.0.0.1:{port}" in failure.details


async def test_without_a_secret_or_any_aws_credentials_the_message_says_how_to_give_them(
    start_app: StartApp, s3: Emulator
) -> None:
    mark = s3.mark()

    async with start_app(r"s3://models/.*", storage_credentials_dir=None) as api:
        failure = await api.refused("s3://models/prod/tiny.pt")

    assert (failure.code, failure.reason) == (grpc.StatusCode.FAILED_PRECONDITION, FETCH_FAILED)
    assert "no object-store credentials found" in failure.details
    assert s3.since(mark) == []


async def test_botocore_finds_keys_in_the_standard_variables_without_a_secret(
    s3: Emulator, start_app: StartApp, torchscript: Callable[..., bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    s3.put("models", "env/tiny.pt", torchscript())
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_key)

    async with start_app(r"s3://models/.*", storage_credentials_dir=None) as api:
        assert "registered" in await api.register("s3://models/env/tiny.pt")
