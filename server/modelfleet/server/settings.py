"""Server settings: frozen dataclasses grouped by concern, every field typed, defaulted and documented.

Built once from CLI flags and environment in __main__.py and passed down explicitly; nothing
reads the environment at import time. Defaults are secure: loopback binds, token auth on, the
model API off, model sources limited to the model store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

StatusMode = Literal["torchserve", "conventional"]
AddressingStyle = Literal["auto", "virtual", "path"]

DEFAULT_MAX_MESSAGE_BYTES = 6_553_500
"""TorchServe's max_request_size; also its gRPC message limit."""


@dataclass(frozen=True)
class NetworkSettings:
    inference_address: str = "127.0.0.1:7070"
    """host:port of the inference service (TorchServe's default port); loopback unless told otherwise."""
    management_address: str = "127.0.0.1:7071"
    """host:port of the management service; a separate port so a Service can expose inference only."""
    health_address: str | None = None
    """Plaintext host:port serving only grpc.health.v1 (for kubelet probes when TLS is on); None = off."""
    metrics_address: str | None = None
    """host:port of the Prometheus /metrics endpoint; None = off."""
    max_receive_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    """Largest request message accepted; bigger ones fail with RESOURCE_EXHAUSTED."""
    max_send_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    """Largest response message sent; bigger ones fail with RESOURCE_EXHAUSTED."""
    max_connection_age_s: float | None = None
    """Close connections after this many seconds so clients re-resolve and spread over pods; None = never."""
    max_connection_age_grace_s: float | None = None
    """Seconds an aged connection may finish in-flight calls before it is closed."""
    keepalive_time_s: float | None = 60.0
    """Seconds between server keepalive pings on idle connections; None = grpc default."""
    keepalive_timeout_s: float = 20.0
    """Seconds to wait for a keepalive ack before closing the connection."""
    reflection: bool = True
    """Serve grpc.reflection v1 and v1alpha so grpcurl works without .proto files."""
    pod_uid: str | None = None
    """This pod's Kubernetes UID (downward API), sent on health Check so the operator knows whom it reached."""


@dataclass(frozen=True)
class TlsSettings:
    cert_file: Path | None = None
    """PEM certificate chain; with key_file, both API ports use TLS."""
    key_file: Path | None = None
    """PEM private key for cert_file."""
    client_ca_file: Path | None = None
    """PEM CA bundle; when set, clients must present a certificate it signed (mTLS)."""

    @property
    def enabled(self) -> bool:
        return self.cert_file is not None and self.key_file is not None


@dataclass(frozen=True)
class AuthSettings:
    enabled: bool = True
    """Require `authorization: Bearer <token>` on both APIs (health and reflection never need one)."""
    management_token_file: Path | None = None
    """File with one or more management tokens, one per line; re-read when it changes."""
    inference_token_file: Path | None = None
    """File with one or more inference tokens, one per line; re-read when it changes."""
    key_file: Path = Path("key_file.json")
    """Where generated tokens are written (mode 0600) when no token file is given."""
    reload_interval_s: float = 1.0
    """How often token files are checked for rotation."""
    enable_model_api: bool = False
    """Allow RegisterModel/UnregisterModel (TorchServe's enable_model_api; off by default)."""


@dataclass(frozen=True)
class SourceSettings:
    model_store: Path = Path("model_store")
    """Folder whose files and subfolders may be registered by bare name; always allowed."""
    allowed_source_patterns: tuple[str, ...] = ()
    """Regexes (full match) for file://, http(s)://, s3:// and gs:// URLs allowed besides the model store;
    empty = deny."""
    download_dir: Path | None = None
    """Where http(s), s3:// and gs:// sources are saved (and object-store downloads cached by ETag);
    None = <model_store>/.downloads."""
    max_download_bytes: int = 2 * 1024**3
    """Largest download (http(s), s3://, gs://) accepted, in bytes."""
    download_timeout_s: float = 60.0
    """Seconds the WHOLE download may take (waiting for a slot, connect, redirects, body); all schemes."""
    min_download_rate_bytes_s: int = 64 * 1024
    """Bytes/s a download must average once the grace period is over, else it is refused; 0 = no minimum."""
    download_rate_grace_s: float = 10.0
    """Seconds from a download's start before min_download_rate_bytes_s applies (slow starts, TLS)."""
    max_concurrent_downloads: int = 4
    """Downloads (all schemes) running at once, on their own threads; more wait for a slot within their deadline."""
    max_archive_ratio: float = 100.0
    """Largest compression ratio (inflated/compressed) of a zip member (.mar, .pt, .pt2) over 1 MiB."""
    extract_size_factor: float = 4.0
    """A zip may inflate to at most this many times its own size, plus extract_size_allowance_bytes."""
    extract_size_allowance_bytes: int = 64 * 1024**2
    """Bytes added to extract_size_factor x the archive size, so small archives are not held to tiny caps."""
    max_archive_entries: int = 10_000
    """Most entries a zip (.mar, .pt, .pt2) may list; a huge central directory is itself a bomb."""
    storage_endpoint_url: str | None = None
    """S3 API endpoint for s3:// and gs:// URLs (MinIO, Ceph, GCS interoperability); None = AWS for s3://
    (botocore's resolution), https://storage.googleapis.com for gs://."""
    storage_region: str | None = None
    """Region requests are signed for; None = botocore's resolution (AWS_REGION, config file), else us-east-1."""
    storage_addressing_style: AddressingStyle = "auto"
    """Bucket in the host name (virtual), in the path (path), or botocore's choice (auto)."""
    storage_credentials_dir: Path | None = None
    """Mounted Secret with `credentials` (INI, profile default) or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY
    (+ AWS_SESSION_TOKEN) files, re-read before each download; None = botocore's default chain."""


@dataclass(frozen=True)
class ModelSettings:
    default_workers: int | None = None
    """Workers per model when a request says 0; None = number of GPUs, else usable CPUs."""
    job_queue_size: int = 100
    """Requests a model version may queue before new ones are refused at once (TorchServe's default)."""
    default_batch_size: int = 1
    default_max_batch_delay_ms: int = 100
    default_response_timeout_s: int = 120
    default_startup_timeout_s: int = 120
    trusted_handlers: tuple[str, ...] = ()
    """Importable module names of handler code installed in the image; the only custom code that runs."""
    adaptive_batching: bool = True
    """Dispatch at once when a worker is idle instead of waiting out max_batch_delay."""
    desired_state_file: Path | None = None
    """JSON file (e.g. a mounted ConfigMap) listing models to load at start."""
    startup_models: tuple[str, ...] = ()
    """`name=url` entries (TorchServe's --models) loaded at start."""
    max_new_tokens: int = 64
    """Most tokens the built-in `generation` handler produces per request (a request may ask fewer)."""
    devices: tuple[str, ...] | None = None
    """Devices workers are placed on, round-robin; None = every visible CUDA device, else cpu."""
    worker_limit_per_version: int | None = None
    """Most workers (threads) one model version may have; None = 4 x the default worker count (GPUs, else CPUs)."""
    worker_limit: int = 256
    """Most worker threads of all versions together: each is an OS thread, and 2^31-1 of them took the pod down."""
    batch_size_limit: int = 1024
    """Largest batch_size a model may ask for; bigger batches only grow memory and latency."""
    batch_delay_limit_ms: int = 60_000
    """Largest max_batch_delay (ms) a model may ask for; a request should never wait longer for batch-mates."""
    response_timeout_limit_s: int = 3600
    """Largest response_timeout (s) a model may ask for; beyond it a stuck worker is never replaced in practice."""
    model_limit: int = 128
    """Most models one server holds (registered or loading); above ListModels' page of 100, below worker_limit."""
    version_limit: int = 16
    """Most versions one model holds (registered or loading): room for rollouts and canaries, not thousands."""
    sequence_idle_timeout_s: float = 60.0
    """Seconds a stateful handler's StreamPredictions2 sequence may stay idle before its state is released."""
    max_sequences: int = 64
    """Most open sequences (with state) per model version; one more is refused: state is memory a client holds."""
    max_image_pixels: int = 50_000_000
    """Most pixels (width x height) an image may have for the standard vision handlers, checked from its
    header before it is decoded: decompression bombs and huge images are refused (TorchServe has no limit)."""


@dataclass(frozen=True)
class ShutdownSettings:
    drain_delay_s: float = 0.0
    """Seconds health reports NOT_SERVING before listeners close, so load balancers stop routing first."""
    grace_s: float = 30.0
    """Seconds in-flight calls may take to finish after listeners close."""


@dataclass(frozen=True)
class Settings:
    network: NetworkSettings = field(default_factory=NetworkSettings)
    tls: TlsSettings = field(default_factory=TlsSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    sources: SourceSettings = field(default_factory=SourceSettings)
    models: ModelSettings = field(default_factory=ModelSettings)
    shutdown: ShutdownSettings = field(default_factory=ShutdownSettings)
    status_mode: StatusMode = "torchserve"
    """"torchserve": TorchServe 0.12's status codes, quirks included; "conventional": gRPC's usual ones."""
    log_level: str = "INFO"
