"""Command line and environment → Settings for `python -m modelfleet.server` / `modelfleet-server`.

Every flag can also come from `MODELFLEET_<FLAG_IN_UPPER_SNAKE>` (e.g. MODELFLEET_INFERENCE_ADDRESS);
a flag on the command line wins over its variable. List variables (MODELFLEET_MODELS,
MODELFLEET_ALLOWED_SOURCES, MODELFLEET_TRUSTED_HANDLERS) hold whitespace-separated items; switches
take true/false/1/0/yes/no/on/off; an empty variable counts as unset. Bad values end with
argparse's usage error (exit 2) naming the flag or variable. Called only from __main__.py; reads
the environment it is given, never os.environ.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from modelfleet.server.errors import ModelFleetError
from modelfleet.server.models.desired_state import parse_startup_models
from modelfleet.server.settings import (
    DEFAULT_MAX_MESSAGE_BYTES,
    AuthSettings,
    ModelSettings,
    NetworkSettings,
    Settings,
    ShutdownSettings,
    SourceSettings,
    TlsSettings,
)

ENV_PREFIX = "MODELFLEET_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})
_MODULE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")
_POD_UID = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,127}")
_REGION = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")


# ---- value parsers (raise ValueError/argparse.ArgumentTypeError with a readable message) ----------
def address(text: str) -> str:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT (port 0-65535), got {text!r}")
    if host.startswith("[") != host.endswith("]"):
        raise argparse.ArgumentTypeError(f"unbalanced brackets in IPv6 host of {text!r}")
    return text


def existing_file(text: str) -> Path:
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no such file: {text}")
    return path


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {value}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value < float("inf"):  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be a finite number greater than 0, got {text!r}")
    return value


def _seconds(text: str, *, allow_zero: bool) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")) or value < 0 or (value == 0 and not allow_zero):
        raise argparse.ArgumentTypeError(f"must be {'>= 0' if allow_zero else '> 0'} seconds, got {text!r}")
    return value


def seconds(text: str) -> float:
    return _seconds(text, allow_zero=True)


def positive_seconds(text: str) -> float:
    return _seconds(text, allow_zero=False)


def regex(text: str) -> str:
    try:
        re.compile(text)
    except re.error as exc:
        raise argparse.ArgumentTypeError(f"invalid regular expression {text!r}: {exc}") from None
    return text


def module_name(text: str) -> str:
    if not _MODULE.fullmatch(text):
        raise argparse.ArgumentTypeError(f"not a Python module name: {text!r}")
    return text


def model_entry(text: str) -> str:
    try:
        parse_startup_models([text])
    except ModelFleetError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None
    return text


def pod_uid(text: str) -> str:
    """A Kubernetes UID (a UUID); limited to what a gRPC metadata value may carry as plain ASCII."""
    if not _POD_UID.fullmatch(text):
        raise argparse.ArgumentTypeError(f"expected a pod UID (letters, digits, '-', at most 128), got {text!r}")
    return text


def endpoint_url(text: str) -> str:
    """An http(s) URL with a host and nothing after the authority but an optional path (no query, no user)."""
    parts = urlsplit(text)
    try:
        _ = parts.port
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port in {text!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise argparse.ArgumentTypeError(f"expected an http(s)://HOST[:PORT] URL, got {text!r}")
    if parts.username is not None or parts.password is not None:
        raise argparse.ArgumentTypeError("credentials do not belong in the endpoint URL; use --storage-credentials-dir")
    return text


def region(text: str) -> str:
    if not _REGION.fullmatch(text):
        raise argparse.ArgumentTypeError(f"expected a region name such as us-east-1, got {text!r}")
    return text


def addressing_style(text: str) -> str:
    if text not in ("auto", "virtual", "path"):
        raise argparse.ArgumentTypeError(f"expected auto, virtual or path, got {text!r}")
    return text


def existing_dir(text: str) -> Path:
    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"no such folder: {text}")
    return path


def log_level(text: str) -> str:
    level = text.upper()
    if level not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(LOG_LEVELS)}, got {text!r}")
    return level


def status_codes(text: str) -> str:
    if text not in ("torchserve", "conventional"):
        raise argparse.ArgumentTypeError(f"expected torchserve or conventional, got {text!r}")
    return text


# ---- the flag table ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Flag:
    name: str
    """Long option without dashes, e.g. "inference-address"."""
    help: str
    parse: Callable[[str], Any] | None = None
    """Value parser; None for a switch."""
    default: Any = None
    many: bool = False
    """Takes several values: `--models a=x b=y` or repeated `--allowed-sources R`."""
    metavar: str | None = None

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.dest.upper()


_NET = NetworkSettings()
_SOURCES = SourceSettings()
_MODELS = ModelSettings()
FLAGS: tuple[Flag, ...] = (
    Flag("inference-address", "inference API HOST:PORT", address, _NET.inference_address, metavar="HOST:PORT"),
    Flag("management-address", "management API HOST:PORT", address, _NET.management_address, metavar="HOST:PORT"),
    Flag("health-address", "plaintext grpc.health.v1-only HOST:PORT (kubelet probes with TLS on); default off",
         address, metavar="HOST:PORT"),
    Flag("metrics-address", "Prometheus /metrics HOST:PORT; default off", address, metavar="HOST:PORT"),
    Flag("model-store", "folder of models registrable by bare name", Path, SourceSettings().model_store,
         metavar="DIR"),
    Flag("models", "NAME=URL (or URL) models to load at start, TorchServe style", model_entry, (), many=True,
         metavar="NAME=URL"),
    Flag("desired-state", "JSON desired-state file (the operator's ConfigMap) loaded at start", existing_file,
         metavar="FILE"),
    Flag("enable-model-api", "allow RegisterModel/UnregisterModel"),
    Flag("disable-token-auth", "serve both APIs without tokens"),
    Flag("management-token-file", "management tokens, one per line; re-read on change", existing_file,
         metavar="FILE"),
    Flag("inference-token-file", "inference tokens, one per line; re-read on change", existing_file,
         metavar="FILE"),
    Flag("key-file", "where generated tokens are written (0600)", Path, AuthSettings().key_file, metavar="FILE"),
    Flag("allowed-sources", "full-match regex for allowed file://, http(s)://, s3:// and gs:// URLs; repeatable",
         regex, (), many=True, metavar="REGEX"),
    Flag("trusted-handlers", "importable handler module installed in the image; repeatable", module_name, (),
         many=True, metavar="MODULE"),
    Flag("tls-cert", "PEM certificate chain (TLS on both API ports)", existing_file, metavar="FILE"),
    Flag("tls-key", "PEM private key of --tls-cert", existing_file, metavar="FILE"),
    Flag("tls-client-ca", "PEM CA bundle; clients must present a certificate it signed (mTLS)", existing_file,
         metavar="FILE"),
    Flag("status-codes", "torchserve (TorchServe 0.12's codes, quirks included) or conventional", status_codes,
         "torchserve", metavar="MODE"),
    Flag("no-reflection", "do not serve gRPC server reflection"),
    Flag("max-request-size", "largest request message in bytes", positive_int, DEFAULT_MAX_MESSAGE_BYTES,
         metavar="BYTES"),
    Flag("max-response-size", "largest response message in bytes", positive_int, DEFAULT_MAX_MESSAGE_BYTES,
         metavar="BYTES"),
    Flag("job-queue-size", "requests a model version may queue", positive_int, ModelSettings().job_queue_size,
         metavar="N"),
    Flag("default-workers", "workers per model when a request says 0 (default: GPUs, else usable CPUs)",
         positive_int, metavar="N"),
    Flag("max-connection-age", "seconds before a connection gets GOAWAY (spreads clients over pods)",
         positive_seconds, metavar="S"),
    Flag("max-connection-age-grace", "seconds an aged connection may finish its calls", seconds, metavar="S"),
    Flag("keepalive-time", "seconds between keepalive pings on idle connections", positive_seconds,
         _NET.keepalive_time_s, metavar="S"),
    Flag("drain-delay", "seconds health is NOT_SERVING before listeners close on SIGTERM", seconds,
         ShutdownSettings().drain_delay_s, metavar="S"),
    Flag("grace", "seconds in-flight calls may take to finish on SIGTERM", seconds, ShutdownSettings().grace_s,
         metavar="S"),
    Flag("download-dir", "writable folder for http(s) model downloads (default <model-store>/.downloads)", Path,
         metavar="DIR"),
    Flag("max-download-size", "largest http(s) model download in bytes", positive_int,
         SourceSettings().max_download_bytes, metavar="BYTES"),
    Flag("download-timeout", "seconds a whole http(s) model download may take (waiting for a slot, connect, "
         "redirects, body)", positive_seconds, _SOURCES.download_timeout_s, metavar="S"),
    Flag("min-download-rate", "bytes/s an http(s) download must average after --download-rate-grace; 0 = none",
         non_negative_int, _SOURCES.min_download_rate_bytes_s, metavar="BYTES"),
    Flag("download-rate-grace", "seconds from a download's start before --min-download-rate applies",
         positive_seconds, _SOURCES.download_rate_grace_s, metavar="S"),
    Flag("max-concurrent-downloads", "http(s) downloads running at once; more wait for a slot within their "
         "--download-timeout", positive_int, _SOURCES.max_concurrent_downloads, metavar="N"),
    Flag("storage-endpoint-url", "S3 API endpoint for s3:// and gs:// sources (MinIO, Ceph, GCS interoperability); "
         "default AWS for s3://, https://storage.googleapis.com for gs://", endpoint_url, metavar="URL"),
    Flag("storage-region", "region object-store requests are signed for (default: botocore's resolution, else "
         "us-east-1)", region, metavar="REGION"),
    Flag("storage-addressing-style", "auto, virtual (bucket in the host name) or path (bucket in the path)",
         addressing_style, _SOURCES.storage_addressing_style, metavar="STYLE"),
    Flag("storage-credentials-dir", "mounted Secret: a `credentials` file (profile default) or AWS_ACCESS_KEY_ID + "
         "AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN) files, re-read on change; default botocore's chain",
         existing_dir, metavar="DIR"),
    Flag("max-archive-ratio", "largest compression ratio of a zip member (.mar, .pt, .pt2) over 1 MiB",
         positive_number, _SOURCES.max_archive_ratio, metavar="RATIO"),
    Flag("extract-size-factor", "a zip may inflate to this many times its size plus --extract-size-allowance",
         positive_number, _SOURCES.extract_size_factor, metavar="X"),
    Flag("extract-size-allowance", "bytes a zip may inflate to beyond --extract-size-factor x its size",
         non_negative_int, _SOURCES.extract_size_allowance_bytes, metavar="BYTES"),
    Flag("max-archive-entries", "most entries a zip (.mar, .pt, .pt2) may list", positive_int,
         _SOURCES.max_archive_entries, metavar="N"),
    Flag("fixed-batching", "wait out max_batch_delay for a full batch (TorchServe's way) instead of "
         "dispatching at once when a worker is idle"),
    Flag("max-new-tokens", "most tokens the built-in generation handler produces per request", positive_int,
         ModelSettings().max_new_tokens, metavar="N"),
    Flag("worker-limit-per-version", "most workers one model version may have (default: 4 x GPUs, else 4 x "
         "usable CPUs)", positive_int, metavar="N"),
    Flag("worker-limit", "most worker threads of all model versions together", positive_int, _MODELS.worker_limit,
         metavar="N"),
    Flag("batch-size-limit", "largest batch_size a model may ask for", positive_int, _MODELS.batch_size_limit,
         metavar="N"),
    Flag("batch-delay-limit", "largest max_batch_delay in ms a model may ask for", positive_int,
         _MODELS.batch_delay_limit_ms, metavar="MS"),
    Flag("response-timeout-limit", "largest response_timeout in seconds a model may ask for", positive_int,
         _MODELS.response_timeout_limit_s, metavar="S"),
    Flag("model-limit", "most models the server holds (loading ones included)", positive_int, _MODELS.model_limit,
         metavar="N"),
    Flag("version-limit", "most versions one model holds (loading ones included)", positive_int,
         _MODELS.version_limit, metavar="N"),
    Flag("max-image-pixels", "most pixels (width x height) an image may have for the standard vision handlers",
         positive_int, _MODELS.max_image_pixels, metavar="N"),
    Flag("sequence-idle-timeout", "seconds a StreamPredictions2 sequence of a stateful handler may idle before "
         "its state is released", positive_seconds, _MODELS.sequence_idle_timeout_s, metavar="S"),
    Flag("max-sequences", "most open sequences of a stateful handler per model version", positive_int,
         _MODELS.max_sequences, metavar="N"),
    Flag("pod-uid", "this pod's UID (downward API metadata.uid), answered on health Check so the operator can "
         "verify the pod before it sends its token; default none", pod_uid, metavar="UID"),
    Flag("log-level", f"one of {', '.join(LOG_LEVELS)}", log_level, "INFO", metavar="LEVEL"),
)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelfleet-server",
        description="TorchServe-compatible gRPC model server. Every flag may also be set with "
        "MODELFLEET_<FLAG_IN_UPPER_SNAKE>; the command line wins.",
    )
    for flag in FLAGS:
        # SUPPRESS: an absent flag leaves no attribute, so the environment can fill it afterwards.
        common: dict[str, Any] = {"dest": flag.dest, "default": argparse.SUPPRESS}
        help_text = f"{flag.help} [env {flag.env}]"
        if flag.parse is None:
            parser.add_argument(f"--{flag.name}", action="store_true", help=help_text, **common)
        elif flag.many:
            parser.add_argument(
                f"--{flag.name}", type=flag.parse, nargs="+", action="extend", metavar=flag.metavar,
                help=help_text, **common,
            )  # fmt: skip
        else:
            parser.add_argument(f"--{flag.name}", type=flag.parse, metavar=flag.metavar, help=help_text, **common)
    return parser


def _from_env(parser: argparse.ArgumentParser, flag: Flag, raw: str) -> Any:
    if flag.parse is None:
        lowered = raw.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        parser.error(f"{flag.env}: expected true or false, got {raw!r}")
    parse = flag.parse
    try:
        if flag.many:
            return [parse(item) for item in raw.split()]
        return parse(raw)
    except (argparse.ArgumentTypeError, ValueError) as exc:
        parser.error(f"{flag.env}: {exc}")


def parse_settings(argv: Sequence[str] | None, environ: Mapping[str, str]) -> Settings:
    """Settings from the command line, then the environment, then the defaults; exits 2 on bad values."""
    parser = build_parser()
    given = vars(parser.parse_args(argv))
    values: dict[str, Any] = {}
    for flag in FLAGS:
        if flag.dest in given:
            values[flag.dest] = given[flag.dest]
        elif environ.get(flag.env, "") != "" or (flag.parse is None and flag.env in environ):
            values[flag.dest] = _from_env(parser, flag, environ[flag.env])
        else:
            values[flag.dest] = False if flag.parse is None else flag.default
    return _settings(parser, values)


def _settings(parser: argparse.ArgumentParser, v: Mapping[str, Any]) -> Settings:
    if (v["tls_cert"] is None) != (v["tls_key"] is None):
        parser.error("--tls-cert and --tls-key go together")
    if v["tls_client_ca"] is not None and v["tls_cert"] is None:
        parser.error("--tls-client-ca needs --tls-cert and --tls-key")
    if v["max_connection_age_grace"] is not None and v["max_connection_age"] is None:
        parser.error("--max-connection-age-grace needs --max-connection-age")
    per_version = v["worker_limit_per_version"]
    if v["default_workers"] is not None and per_version is not None and v["default_workers"] > per_version:
        parser.error("--default-workers cannot be more than --worker-limit-per-version")
    return Settings(
        network=NetworkSettings(
            inference_address=v["inference_address"],
            management_address=v["management_address"],
            health_address=v["health_address"],
            metrics_address=v["metrics_address"],
            max_receive_message_bytes=v["max_request_size"],
            max_send_message_bytes=v["max_response_size"],
            max_connection_age_s=v["max_connection_age"],
            max_connection_age_grace_s=v["max_connection_age_grace"],
            keepalive_time_s=v["keepalive_time"],
            reflection=not v["no_reflection"],
            pod_uid=v["pod_uid"],
        ),
        tls=TlsSettings(cert_file=v["tls_cert"], key_file=v["tls_key"], client_ca_file=v["tls_client_ca"]),
        auth=AuthSettings(
            enabled=not v["disable_token_auth"],
            management_token_file=v["management_token_file"],
            inference_token_file=v["inference_token_file"],
            key_file=v["key_file"],
            enable_model_api=v["enable_model_api"],
        ),
        sources=SourceSettings(
            model_store=v["model_store"],
            allowed_source_patterns=tuple(v["allowed_sources"]),
            download_dir=v["download_dir"],
            max_download_bytes=v["max_download_size"],
            download_timeout_s=v["download_timeout"],
            min_download_rate_bytes_s=v["min_download_rate"],
            download_rate_grace_s=v["download_rate_grace"],
            max_concurrent_downloads=v["max_concurrent_downloads"],
            max_archive_ratio=v["max_archive_ratio"],
            extract_size_factor=v["extract_size_factor"],
            extract_size_allowance_bytes=v["extract_size_allowance"],
            max_archive_entries=v["max_archive_entries"],
            storage_endpoint_url=v["storage_endpoint_url"],
            storage_region=v["storage_region"],
            storage_addressing_style=v["storage_addressing_style"],
            storage_credentials_dir=v["storage_credentials_dir"],
        ),
        models=ModelSettings(
            default_workers=v["default_workers"],
            job_queue_size=v["job_queue_size"],
            trusted_handlers=tuple(v["trusted_handlers"]),
            desired_state_file=v["desired_state"],
            startup_models=tuple(v["models"]),
            adaptive_batching=not v["fixed_batching"],
            max_new_tokens=v["max_new_tokens"],
            worker_limit_per_version=per_version,
            worker_limit=v["worker_limit"],
            batch_size_limit=v["batch_size_limit"],
            batch_delay_limit_ms=v["batch_delay_limit"],
            response_timeout_limit_s=v["response_timeout_limit"],
            model_limit=v["model_limit"],
            version_limit=v["version_limit"],
            max_image_pixels=v["max_image_pixels"],
            sequence_idle_timeout_s=v["sequence_idle_timeout"],
            max_sequences=v["max_sequences"],
        ),
        shutdown=ShutdownSettings(drain_delay_s=v["drain_delay"], grace_s=v["grace"]),
        status_mode=v["status_codes"],
        log_level=v["log_level"],
    )
