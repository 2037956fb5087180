"""`python -m modelfleet.server` flags and MODELFLEET_* variables → Settings (the brief's CLI contract)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from modelfleet.server.cli import FLAGS, parse_settings
from modelfleet.server.settings import Settings

CONTRACT_FLAGS = [
    "inference-address", "management-address", "health-address", "metrics-address", "model-store", "models",
    "desired-state", "enable-model-api", "disable-token-auth", "management-token-file", "inference-token-file",
    "key-file", "allowed-sources", "trusted-handlers", "tls-cert", "tls-key", "tls-client-ca", "status-codes",
    "no-reflection", "max-request-size", "max-response-size", "job-queue-size", "default-workers",
    "max-connection-age", "max-connection-age-grace", "keepalive-time", "drain-delay", "grace", "log-level",
    "download-dir", "max-download-size", "download-timeout", "fixed-batching", "max-new-tokens",
    "worker-limit-per-version", "worker-limit", "batch-size-limit", "batch-delay-limit", "response-timeout-limit",
    "model-limit", "version-limit", "pod-uid", "min-download-rate", "download-rate-grace",
    "max-concurrent-downloads", "max-archive-ratio", "extract-size-factor", "extract-size-allowance",
    "max-archive-entries", "max-image-pixels", "sequence-idle-timeout", "max-sequences",
    "storage-endpoint-url", "storage-region", "storage-addressing-style", "storage-credentials-dir",
]  # fmt: skip


POD_UID = "3f1c2a9e-5b7d-4c1e-9a0b-1234567890ab"


def field(settings: Settings, path: str) -> Any:
    value: Any = settings
    for part in path.split("."):
        value = getattr(value, part)
    return value


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    names = ("state.json", "mgmt.txt", "inf.txt", "cert.pem", "key.pem", "ca.pem")
    for name in names:
        (tmp_path / name).write_text("x\n")
    return {name: str(tmp_path / name) for name in names}


def cases(files: dict[str, str]) -> list[tuple[str, list[str], str, Any]]:
    """(flag, CLI values, settings field, expected value)."""
    return [
        ("inference-address", ["0.0.0.0:9000"], "network.inference_address", "0.0.0.0:9000"),
        ("management-address", ["[::1]:9001"], "network.management_address", "[::1]:9001"),
        ("health-address", ["127.0.0.2:0"], "network.health_address", "127.0.0.2:0"),
        ("metrics-address", ["127.0.0.1:8082"], "network.metrics_address", "127.0.0.1:8082"),
        ("model-store", ["/srv/models"], "sources.model_store", Path("/srv/models")),
        ("models", ["tiny=tiny.pt", "mlp.pt"], "models.startup_models", ("tiny=tiny.pt", "mlp.pt")),
        ("desired-state", [files["state.json"]], "models.desired_state_file", Path(files["state.json"])),
        ("management-token-file", [files["mgmt.txt"]], "auth.management_token_file", Path(files["mgmt.txt"])),
        ("inference-token-file", [files["inf.txt"]], "auth.inference_token_file", Path(files["inf.txt"])),
        ("key-file", ["/run/keys.json"], "auth.key_file", Path("/run/keys.json")),
        ("allowed-sources", [r"file:///models/.*", r"https://h/[a-z]{1,3}\.mar"],
         "sources.allowed_source_patterns", (r"file:///models/.*", r"https://h/[a-z]{1,3}\.mar")),
        ("trusted-handlers", ["acme.handlers", "acme.other"], "models.trusted_handlers",
         ("acme.handlers", "acme.other")),
        ("status-codes", ["conventional"], "status_mode", "conventional"),
        ("max-request-size", ["1000"], "network.max_receive_message_bytes", 1000),
        ("max-response-size", ["2000"], "network.max_send_message_bytes", 2000),
        ("job-queue-size", ["7"], "models.job_queue_size", 7),
        ("default-workers", ["3"], "models.default_workers", 3),
        ("max-connection-age", ["30"], "network.max_connection_age_s", 30.0),
        ("keepalive-time", ["2.5"], "network.keepalive_time_s", 2.5),
        ("drain-delay", ["4"], "shutdown.drain_delay_s", 4.0),
        ("grace", ["0"], "shutdown.grace_s", 0.0),
        ("log-level", ["debug"], "log_level", "DEBUG"),
        ("download-dir", ["/var/cache/models"], "sources.download_dir", Path("/var/cache/models")),
        ("max-download-size", ["1048576"], "sources.max_download_bytes", 1048576),
        ("download-timeout", ["7.5"], "sources.download_timeout_s", 7.5),
        ("min-download-rate", ["1024"], "sources.min_download_rate_bytes_s", 1024),
        ("download-rate-grace", ["2.5"], "sources.download_rate_grace_s", 2.5),
        ("max-concurrent-downloads", ["2"], "sources.max_concurrent_downloads", 2),
        ("max-archive-ratio", ["20"], "sources.max_archive_ratio", 20),
        ("extract-size-factor", ["2"], "sources.extract_size_factor", 2),
        ("extract-size-allowance", ["1048576"], "sources.extract_size_allowance_bytes", 1048576),
        ("max-archive-entries", ["50"], "sources.max_archive_entries", 50),
        ("max-new-tokens", ["12"], "models.max_new_tokens", 12),
        ("worker-limit-per-version", ["5"], "models.worker_limit_per_version", 5),
        ("worker-limit", ["40"], "models.worker_limit", 40),
        ("batch-size-limit", ["64"], "models.batch_size_limit", 64),
        ("batch-delay-limit", ["500"], "models.batch_delay_limit_ms", 500),
        ("response-timeout-limit", ["30"], "models.response_timeout_limit_s", 30),
        ("model-limit", ["9"], "models.model_limit", 9),
        ("version-limit", ["3"], "models.version_limit", 3),
        ("max-image-pixels", ["1000000"], "models.max_image_pixels", 1000000),
        ("sequence-idle-timeout", ["2.5"], "models.sequence_idle_timeout_s", 2.5),
        ("max-sequences", ["8"], "models.max_sequences", 8),
        ("pod-uid", [POD_UID], "network.pod_uid", POD_UID),
    ]  # fmt: skip


SWITCHES = [
    ("enable-model-api", "auth.enable_model_api", True),
    ("disable-token-auth", "auth.enabled", False),
    ("no-reflection", "network.reflection", False),
    ("fixed-batching", "models.adaptive_batching", False),
]


def test_no_flags_and_no_environment_give_the_documented_defaults() -> None:
    assert parse_settings([], {}) == Settings()


def test_every_flag_of_the_contract_exists_with_its_environment_variable() -> None:
    assert sorted(flag.name for flag in FLAGS) == sorted(CONTRACT_FLAGS)
    assert {flag.env for flag in FLAGS} == {"MODELFLEET_" + name.upper().replace("-", "_") for name in CONTRACT_FLAGS}


def test_each_flag_sets_its_setting_from_the_command_line(files: dict[str, str]) -> None:
    for flag, values, path, expected in cases(files):
        settings = parse_settings([f"--{flag}", *values], {})
        assert field(settings, path) == expected, flag
    for flag, path, expected in SWITCHES:
        assert field(parse_settings([f"--{flag}"], {}), path) == expected, flag


def test_each_flag_sets_its_setting_from_the_environment(files: dict[str, str]) -> None:
    for flag, values, path, expected in cases(files):
        env = {"MODELFLEET_" + flag.upper().replace("-", "_"): " ".join(values)}
        assert field(parse_settings([], env), path) == expected, flag
    for flag, path, expected in SWITCHES:
        variable = "MODELFLEET_" + flag.upper().replace("-", "_")
        assert field(parse_settings([], {variable: "true"}), path) == expected, flag
        assert field(parse_settings([], {variable: "0"}), path) == (not expected), flag


def test_tls_flags_set_the_tls_settings_together(files: dict[str, str]) -> None:
    settings = parse_settings(
        ["--tls-cert", files["cert.pem"], "--tls-key", files["key.pem"], "--tls-client-ca", files["ca.pem"]], {}
    )
    assert settings.tls.enabled
    assert settings.tls.client_ca_file == Path(files["ca.pem"])
    aged = parse_settings(["--max-connection-age", "60", "--max-connection-age-grace", "5"], {})
    assert aged.network.max_connection_age_grace_s == 5.0


def test_the_command_line_wins_over_the_environment() -> None:
    env = {
        "MODELFLEET_INFERENCE_ADDRESS": "127.0.0.1:1",
        "MODELFLEET_MODELS": "a=a.pt b=b.pt",
        "MODELFLEET_STATUS_CODES": "conventional",
        "MODELFLEET_JOB_QUEUE_SIZE": "5",
    }
    settings = parse_settings(["--inference-address", "127.0.0.1:2", "--models", "c=c.pt"], env)
    assert settings.network.inference_address == "127.0.0.1:2"
    assert settings.models.startup_models == ("c=c.pt",)
    # Variables of flags not on the command line still apply.
    assert settings.status_mode == "conventional"
    assert settings.models.job_queue_size == 5


def test_repeated_list_flags_accumulate_without_the_environment_list() -> None:
    settings = parse_settings(
        ["--allowed-sources", "file:///a/.*", "--allowed-sources", "file:///b/.*"],
        {"MODELFLEET_ALLOWED_SOURCES": "file:///env/.*"},
    )
    assert settings.sources.allowed_source_patterns == ("file:///a/.*", "file:///b/.*")


def test_an_empty_variable_counts_as_unset() -> None:
    assert parse_settings([], {"MODELFLEET_HEALTH_ADDRESS": "", "MODELFLEET_JOB_QUEUE_SIZE": ""}) == Settings()


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--inference-address", "7070"], {}, "HOST:PORT"),
        (["--management-address", "host:99999"], {}, "HOST:PORT"),
        (["--job-queue-size", "0"], {}, "greater than 0"),
        (["--max-request-size", "lots"], {}, "whole number"),
        (["--grace", "-1"], {}, ">= 0"),
        (["--keepalive-time", "0"], {}, "> 0"),
        (["--status-codes", "http"], {}, "torchserve or conventional"),
        (["--log-level", "loud"], {}, "DEBUG"),
        (["--allowed-sources", "file:///(unclosed"], {}, "invalid regular expression"),
        (["--trusted-handlers", "not a module"], {}, "module name"),
        (["--models", "bad/name=x.pt"], {}, "invalid model name"),
        (["--desired-state", "/nonexistent/state.json"], {}, "no such file"),
        (["--tls-cert", __file__], {}, "--tls-cert and --tls-key go together"),
        (["--max-connection-age-grace", "3"], {}, "needs --max-connection-age"),
        (["--no-such-flag"], {}, "unrecognized arguments"),
        ([], {"MODELFLEET_POD_UID": "uid\nx: y"}, "MODELFLEET_POD_UID: expected a pod UID"),
        ([], {"MODELFLEET_JOB_QUEUE_SIZE": "-3"}, "MODELFLEET_JOB_QUEUE_SIZE: must be greater than 0"),
        ([], {"MODELFLEET_ENABLE_MODEL_API": "maybe"}, "MODELFLEET_ENABLE_MODEL_API: expected true or false"),
        ([], {"MODELFLEET_INFERENCE_ADDRESS": "nohost"}, "MODELFLEET_INFERENCE_ADDRESS: expected HOST:PORT"),
    ],
)
def test_bad_values_end_with_a_usage_error_naming_the_problem(
    argv: list[str], env: dict[str, str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_settings(argv, env)
    assert exited.value.code == 2
    assert message in capsys.readouterr().err


def test_the_module_command_reports_a_bad_variable_with_exit_code_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "modelfleet.server"],
        env={"MODELFLEET_STATUS_CODES": "grpc", "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "MODELFLEET_STATUS_CODES: expected torchserve or conventional" in result.stderr
    assert not (tmp_path / "key_file.json").exists()
