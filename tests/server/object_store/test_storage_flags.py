"""The object-store flags and their MODELFLEET_* variables reach SourceSettings; bad values exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelfleet.server.cli import parse_settings


def test_the_storage_flags_fill_the_source_settings(tmp_path: Path) -> None:
    settings = parse_settings(
        [
            "--storage-endpoint-url", "http://minio.minio.svc:9000",
            "--storage-region", "eu-west-1",
            "--storage-addressing-style", "path",
            "--storage-credentials-dir", str(tmp_path),
        ],
        {},
    ).sources  # fmt: skip

    assert settings.storage_endpoint_url == "http://minio.minio.svc:9000"
    assert settings.storage_region == "eu-west-1"
    assert settings.storage_addressing_style == "path"
    assert settings.storage_credentials_dir == tmp_path


def test_the_defaults_leave_endpoint_region_and_credentials_to_botocore() -> None:
    settings = parse_settings([], {}).sources

    assert (settings.storage_endpoint_url, settings.storage_region, settings.storage_credentials_dir) == (
        None,
        None,
        None,
    )
    assert settings.storage_addressing_style == "auto"


def test_the_environment_sets_them_too(tmp_path: Path) -> None:
    environ = {"MODELFLEET_STORAGE_ENDPOINT_URL": "https://storage.googleapis.com",
               "MODELFLEET_STORAGE_CREDENTIALS_DIR": str(tmp_path)}  # fmt: skip

    settings = parse_settings([], environ).sources

    assert settings.storage_endpoint_url == "https://storage.googleapis.com"
    assert settings.storage_credentials_dir == tmp_path


@pytest.mark.parametrize(
    "argv",
    [
        ["--storage-endpoint-url", "minio:9000"],
        ["--storage-endpoint-url", "http://key:secret@minio:9000"],
        ["--storage-endpoint-url", "http://minio:9000/?x=1"],
        ["--storage-addressing-style", "dns"],
        ["--storage-region", "EU West"],
        ["--storage-credentials-dir", "/nonexistent/secret"],
    ],
)
def test_bad_values_end_with_a_usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_settings(argv, {})

    assert exited.value.code == 2
    assert "secret@" not in capsys.readouterr().err
