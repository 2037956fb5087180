"""Prometheus metrics on their own port: TorchServe's names plus what an HPA or KEDA scales on.

Everything is read from the registry at scrape time (queue depth, workers, per-worker counters),
so the request path updates no metric objects at all. Off by default; binds where told (loopback
by default). TorchServe's counters keep their exact names (no `_total` suffix added), because
existing dashboards and HPA rules query them by name.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import HistogramMetricFamily, Metric

from .models.workers import BATCH_SIZE_BUCKETS

if TYPE_CHECKING:
    from .models.registry import ModelRegistry

_TS_LABELS = ("model_name", "model_version", "hostname")


class RegistryCollector:
    """A prometheus_client collector that derives every sample from the model registry."""

    def __init__(self, registry: ModelRegistry, *, hostname: str | None = None) -> None:
        self.registry = registry
        self.hostname = hostname or socket.gethostname()

    def describe(self) -> list[Metric]:
        return []  # unchecked collector: samples vary with registered models

    def collect(self) -> Iterator[Metric]:
        # Family names: prometheus_client writes a counter family `x` as samples `x_total` with
        # `# TYPE x_total counter` (text) or `# TYPE x counter` (OpenMetrics, which Prometheus asks
        # for first), so a counter's family is named without `_total`. TorchServe's two latency
        # totals have no `_total` to end in, which OpenMetrics requires of counters: they are
        # typed unknown ("untyped" in text), keeping their exact names; rate() works on them alike.
        requests = Metric("ts_inference_requests", "Total inference requests answered.", "counter")
        latency = Metric(
            "ts_inference_latency_microseconds", "Cumulative inference duration in microseconds.", "unknown"
        )
        queue_latency = Metric("ts_queue_latency_microseconds", "Cumulative queue duration in microseconds.", "unknown")
        errors = Metric("modelfleet_inference_errors", "Requests answered with an error.", "counter")
        rejected = Metric("modelfleet_rejected_requests", "Requests refused because the job queue was full.", "counter")
        depth = Metric("modelfleet_queue_depth", "Requests waiting for a worker.", "gauge")
        capacity = Metric("modelfleet_queue_capacity", "Job queue size of the version.", "gauge")
        workers = Metric("modelfleet_workers", "Workers of the version by status.", "gauge")
        min_workers = Metric("modelfleet_min_workers", "Configured minimum workers.", "gauge")
        batch = HistogramMetricFamily(
            "modelfleet_batch_size", "Requests per forward pass.", labels=["model_name", "model_version"]
        )
        for version in self.registry.versions():
            name, number = version.key.name, version.key.version
            ts_labels = dict(zip(_TS_LABELS, (name, number, self.hostname)))
            labels = {"model_name": name, "model_version": number}
            stats = version.pool.stats()
            requests.add_sample("ts_inference_requests_total", ts_labels, stats.requests)
            latency.add_sample("ts_inference_latency_microseconds", ts_labels, stats.inference_us)
            queue_latency.add_sample("ts_queue_latency_microseconds", ts_labels, stats.queue_us)
            errors.add_sample("modelfleet_inference_errors_total", labels, stats.errors)
            rejected.add_sample("modelfleet_rejected_requests_total", labels, version.pool.rejected)
            depth.add_sample("modelfleet_queue_depth", labels, len(version.pool.queue))
            capacity.add_sample("modelfleet_queue_capacity", labels, version.pool.queue.capacity)
            ready = version.pool.ready_count
            workers.add_sample("modelfleet_workers", {**labels, "status": "ready"}, ready)
            workers.add_sample(
                "modelfleet_workers", {**labels, "status": "not_ready"}, len(version.pool.workers) - ready
            )
            min_workers.add_sample("modelfleet_min_workers", labels, version.min_workers)
            cumulative, buckets = 0, []
            for bound, count in zip((*BATCH_SIZE_BUCKETS, float("inf")), stats.batch_size_counts):
                cumulative += count
                # "4.0" and "+Inf": how prometheus_client's own Histogram writes le (one series per bucket)
                buckets.append(("+Inf" if bound == float("inf") else str(float(bound)), cumulative))
            batch.add_metric([name, number], buckets, stats.batch_size_sum)
        yield from (requests, latency, queue_latency, errors, rejected, depth, capacity, workers, min_workers, batch)


class MetricsServer:
    """/metrics over HTTP in prometheus_client's daemon thread; `port` is the bound one (0 allowed)."""

    def __init__(self, registry: ModelRegistry, address: str) -> None:
        host, _, port = address.rpartition(":")
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(RegistryCollector(registry))
        self._server, self._thread = start_http_server(
            int(port), addr=host.strip("[]") or "127.0.0.1", registry=self.registry
        )
        self.port: int = self._server.server_port

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
