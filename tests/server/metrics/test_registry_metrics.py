"""Prometheus metrics derived from the registry at scrape time: TorchServe's metric names and labels
kept exact, plus queue depth, batch-size histogram and worker gauges; /metrics served over HTTP."""

from __future__ import annotations

import asyncio
import socket
import urllib.request
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from modelfleet.server.errors import ModelFleetError
from modelfleet.server.metrics import MetricsServer, RegistryCollector
from modelfleet.server.models.contracts import RegisterSpec
from modelfleet.server.models.registry import ModelRegistry

import mf_domain_harness as h

HOST = "pod-a"


def scrape(registry: ModelRegistry, *, openmetrics: bool = False) -> str:
    exposition = CollectorRegistry(auto_describe=False)
    exposition.register(RegistryCollector(registry, hostname=HOST))
    return (generate_openmetrics if openmetrics else generate_latest)(exposition).decode()


def samples(text: str, *, openmetrics: bool = False) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in (parse_openmetrics if openmetrics else text_string_to_metric_families)(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def ts(model: str, version: str) -> tuple[tuple[str, str], ...]:
    return (("hostname", HOST), ("model_name", model), ("model_version", version))


def mf(model: str, version: str, **extra: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({"model_name": model, "model_version": version, **extra}.items()))


async def test_torchserve_metric_names_and_labels_count_answered_requests(
    registries: Any, tiny_model: Any, handler_module: Any
) -> None:
    registry: ModelRegistry = registries.new(adaptive_batching=False)
    await registry.register(
        RegisterSpec(url="tiny.pt", synchronous=True, initial_workers=2, batch_size=4, max_batch_delay_ms=60_000)
    )
    await registry.register(RegisterSpec(url="tiny.pt#version=2.0", synchronous=True, initial_workers=1, batch_size=1))
    empty = samples(scrape(registry))
    assert empty[("ts_inference_requests_total", ts("tiny", "1.0"))] == 0

    rows = h.rows_json(h.seeded_rows(1, seed=1))
    await asyncio.gather(*(h.predict(registry, "tiny", rows) for _ in range(8)))  # two full batches of 4
    outcomes = await h.gather_outcomes([h.predict(registry, "tiny", b"{bad", version="2.0")])
    assert isinstance(outcomes[0], ModelFleetError)
    text = scrape(registry)
    found = samples(text)

    # exact TorchServe names (no suffix added) with model_name, model_version, hostname
    assert "# TYPE ts_inference_requests_total counter" in text
    assert found[("ts_inference_requests_total", ts("tiny", "1.0"))] == 8
    assert found[("ts_inference_requests_total", ts("tiny", "2.0"))] == 1
    for name in ("ts_inference_latency_microseconds", "ts_queue_latency_microseconds"):
        assert f"# TYPE {name} untyped" in text  # metadata names the samples' own name
        assert found[(name, ts("tiny", "1.0"))] > 0
    assert "_total_total" not in text
    # the same samples in OpenMetrics, which Prometheus negotiates first and parses strictly
    assert samples(scrape(registry, openmetrics=True), openmetrics=True) == found
    assert (
        found[("ts_inference_latency_microseconds", ts("tiny", "1.0"))]
        >= found[("ts_queue_latency_microseconds", ts("tiny", "1.0"))]
    )
    assert found[("modelfleet_inference_errors_total", mf("tiny", "2.0"))] == 1
    assert found[("modelfleet_inference_errors_total", mf("tiny", "1.0"))] == 0

    # batch size histogram: two batches of exactly 4
    assert found[("modelfleet_batch_size_count", mf("tiny", "1.0"))] == 2
    assert found[("modelfleet_batch_size_sum", mf("tiny", "1.0"))] == 8
    assert found[("modelfleet_batch_size_bucket", mf("tiny", "1.0", le="2.0"))] == 0
    assert found[("modelfleet_batch_size_bucket", mf("tiny", "1.0", le="4.0"))] == 2
    assert found[("modelfleet_batch_size_bucket", mf("tiny", "1.0", le="+Inf"))] == 2

    # what an autoscaler reads: queue, capacity, workers by status, minimum
    assert found[("modelfleet_queue_depth", mf("tiny", "1.0"))] == 0
    assert found[("modelfleet_queue_capacity", mf("tiny", "1.0"))] == 100
    assert found[("modelfleet_workers", mf("tiny", "1.0", status="ready"))] == 2
    assert found[("modelfleet_workers", mf("tiny", "1.0", status="not_ready"))] == 0
    assert found[("modelfleet_min_workers", mf("tiny", "2.0"))] == 1


async def test_queue_depth_and_rejections_show_overload(registries: Any, tiny_model: Any, handler_module: Any) -> None:
    handler = handler_module(h.HOLDING_HANDLER)
    registry: ModelRegistry = registries.new(job_queue_size=2, trusted_handlers=(handler.__name__,))
    await registry.register(RegisterSpec(url="tiny.pt", handler=handler.__name__, synchronous=True, initial_workers=1))
    rows = h.seeded_rows(1, seed=2)
    calls = [asyncio.ensure_future(h.predict(registry, "tiny", h.held(rows)))]
    assert await h.in_thread(lambda: handler.ENTERED.acquire(timeout=h.WAIT_S))
    calls += [asyncio.ensure_future(h.predict(registry, "tiny", h.rows_json(rows))) for _ in range(2)]
    await h.eventually(lambda: len(registry.get("tiny").pool.queue) == 2, what="queue full")
    with pytest.raises(ModelFleetError):
        await registry.predict("tiny", None, {"data": h.rows_json(rows)}, deadline=None)
    found = samples(scrape(registry))
    assert found[("modelfleet_queue_depth", mf("tiny", "1.0"))] == 2
    assert found[("modelfleet_queue_capacity", mf("tiny", "1.0"))] == 2
    assert found[("modelfleet_rejected_requests_total", mf("tiny", "1.0"))] == 1
    handler.GATE.set()
    await asyncio.gather(*calls)
    found = samples(scrape(registry))
    assert found[("modelfleet_queue_depth", mf("tiny", "1.0"))] == 0
    assert found[("ts_inference_requests_total", ts("tiny", "1.0"))] == 3


async def test_unregistered_versions_leave_the_exposition(registries: Any, tiny_model: Any) -> None:
    registry: ModelRegistry = registries.new()
    await registry.register(RegisterSpec(url="tiny.pt", synchronous=True, initial_workers=1))
    assert "tiny" in scrape(registry)
    await registry.unregister("tiny", None)
    assert 'model_name="tiny"' not in scrape(registry)


async def test_metrics_server_serves_the_exposition_over_http_on_loopback(registries: Any, tiny_model: Any) -> None:
    registry: ModelRegistry = registries.new()
    await registry.register(RegisterSpec(url="tiny.pt", synchronous=True, initial_workers=1))
    await h.predict(registry, "tiny", h.rows_json(h.seeded_rows(1, seed=3)))
    server = MetricsServer(registry, "127.0.0.1:0")
    try:
        assert server.port > 0

        def get(accept: str) -> tuple[int, str, str]:
            request = urllib.request.Request(f"http://127.0.0.1:{server.port}/metrics", headers={"Accept": accept})
            with urllib.request.urlopen(request, timeout=h.WAIT_S) as reply:
                return reply.status, reply.headers["Content-Type"], reply.read().decode()

        labels = (("hostname", socket.gethostname()), ("model_name", "tiny"), ("model_version", "1.0"))
        status, content_type, body = await asyncio.to_thread(get, "text/plain")
        assert status == 200 and content_type.startswith("text/plain")
        assert samples(body)[("ts_inference_requests_total", labels)] == 1
        # Prometheus' own Accept header gets OpenMetrics
        prometheus_accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
        status, content_type, body = await asyncio.to_thread(get, prometheus_accept)
        assert status == 200 and content_type.startswith("application/openmetrics-text")
        assert samples(body, openmetrics=True)[("ts_inference_requests_total", labels)] == 1
    finally:
        server.stop()
