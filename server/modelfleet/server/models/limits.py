"""Upper bounds on what a request may ask of the server: workers, models, versions, batch values.

The registry asks these checks before it changes anything, so a refused request leaves no trace
(no worker started, no minimum kept, nothing reserved). Every refusal is Reason.LIMIT_EXCEEDED
(RESOURCE_EXHAUSTED in both status modes) and names the limit and the flag that raises it.
Values <= 0 are not judged here: they keep their meaning ("the default") in the registry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..echo import quoted
from ..errors import ErrorKind, ModelFleetError, Reason
from ..settings import ModelSettings
from .devices import default_worker_count

WORKERS_PER_DEVICE = 4
"""Default per-version worker limit: this many workers per GPU (or per usable CPU without GPUs)."""

FLAGS = {
    "worker_limit_per_version": "--worker-limit-per-version",
    "worker_limit": "--worker-limit",
    "batch_size_limit": "--batch-size-limit",
    "batch_delay_limit_ms": "--batch-delay-limit",
    "response_timeout_limit_s": "--response-timeout-limit",
    "model_limit": "--model-limit",
    "version_limit": "--version-limit",
}
"""ModelSettings field → the command-line flag (cli.py) that sets it; named in every refusal."""


def _setting(field: str) -> str:
    flag = FLAGS[field]
    return f"{flag} or MODELFLEET_{flag.removeprefix('--').replace('-', '_').upper()}"


def limit_exceeded(message: str, *, field: str, limit: int) -> ModelFleetError:
    return ModelFleetError(
        ErrorKind.RESOURCE_EXHAUSTED,
        Reason.LIMIT_EXCEEDED,
        f"{message}; the server's limit is {limit} (setting {_setting(field)})",
        metadata={"limit": field, "max": str(limit)},
    )


@dataclass(frozen=True)
class Limits:
    """The limits of one registry, resolved once from its settings and devices."""

    workers_per_version: int
    workers_total: int
    batch_size: int
    batch_delay_ms: int
    response_timeout_s: int
    models: int
    versions_per_model: int

    @classmethod
    def from_settings(cls, settings: ModelSettings, *, devices: Sequence[str], cpus: int) -> Limits:
        per_version = settings.worker_limit_per_version or WORKERS_PER_DEVICE * default_worker_count(devices, cpus)
        return cls(
            workers_per_version=per_version,
            workers_total=settings.worker_limit,
            batch_size=settings.batch_size_limit,
            batch_delay_ms=settings.batch_delay_limit_ms,
            response_timeout_s=settings.response_timeout_limit_s,
            models=settings.model_limit,
            versions_per_model=settings.version_limit,
        )

    def check_values(self, *, batch_size: int, max_batch_delay_ms: int, response_timeout_s: int) -> None:
        """A model's batch_size, max_batch_delay and response_timeout, as requested."""
        if batch_size > self.batch_size:
            raise limit_exceeded(
                f"batch_size {batch_size} is too large", field="batch_size_limit", limit=self.batch_size
            )
        if max_batch_delay_ms > self.batch_delay_ms:
            raise limit_exceeded(
                f"max_batch_delay {max_batch_delay_ms} ms is too long", field="batch_delay_limit_ms",
                limit=self.batch_delay_ms,
            )  # fmt: skip
        if response_timeout_s > self.response_timeout_s:
            raise limit_exceeded(
                f"response_timeout {response_timeout_s} s is too long", field="response_timeout_limit_s",
                limit=self.response_timeout_s,
            )  # fmt: skip

    def check_version_workers(self, workers: int, *, what: str) -> None:
        """Workers one version would have (`what` names the request field, e.g. "min_worker")."""
        if workers > self.workers_per_version:
            raise limit_exceeded(
                f"{what} {workers} is more workers than one model version may have",
                field="worker_limit_per_version",
                limit=self.workers_per_version,
            )

    def check_total_workers(self, total: int, *, adding: int) -> None:
        """`total` threads run or are reserved now; `adding` more would start."""
        if total + adding > self.workers_total:
            raise limit_exceeded(
                f"starting {adding} more worker(s) would make {total + adding} worker threads on this server",
                field="worker_limit",
                limit=self.workers_total,
            )

    def check_models(self, models: int, *, model: str) -> None:
        """`models` held or loading, counting `model` (the one being registered)."""
        if models > self.models:
            raise limit_exceeded(
                f"registering model {quoted(model)} would make {models} models on this server",
                field="model_limit",
                limit=self.models,
            )

    def check_versions(self, versions: int, *, model: str) -> None:
        """`versions` of `model` held or loading, counting the one being registered."""
        if versions > self.versions_per_model:
            raise limit_exceeded(
                f"registering another version of model {quoted(model)} would make it {versions} versions",
                field="version_limit",
                limit=self.versions_per_model,
            )
