"""The real kopf operator (handlers.py) in the test's event loop against the HTTP in-memory API:
CR and pod events trigger reconciles, the resync loop walks the index, and while nothing changes
neither kopf nor the reconciler writes anything (no finalizers, no kopf annotations)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any

import kopf
import pytest

from modelfleet.operator.handlers import build_registry
from modelfleet.operator.kube import Kube
from modelfleet.operator.runtime import Runtime
from modelfleet.operator.settings import OperatorSettings, ReconcileSettings


def _settings(resync_s: float) -> OperatorSettings:
    return dataclasses.replace(OperatorSettings(), reconcile=ReconcileSettings(resync_interval_s=resync_s))


@pytest.fixture
def operator_factory(api: Any, kube: Kube) -> Any:
    started: list[tuple[asyncio.Event, Any, Runtime]] = []

    async def start(resync_s: float = 0.3) -> Runtime:
        runtime = Runtime(kube, _settings(resync_s))
        stop, ready = asyncio.Event(), asyncio.Event()
        tasks = await kopf.spawn_tasks(
            registry=build_registry(runtime, kube.connection),
            settings=kopf.OperatorSettings(),
            clusterwide=True,
            standalone=True,
            stop_flag=stop,
            ready_flag=ready,
        )
        async with asyncio.timeout(10):
            await ready.wait()
        started.append((stop, tasks, runtime))
        return runtime

    return start, started


@pytest.fixture
async def operator(operator_factory: Any) -> AsyncIterator[Any]:
    start, started = operator_factory
    yield start
    for stop, tasks, runtime in started:
        stop.set()
        async with asyncio.timeout(10):
            _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        await runtime.stop()


async def _create(kube: Kube, body: dict[str, Any]) -> None:
    body = dict(body, metadata={k: v for k, v in body["metadata"].items() if k not in ("uid", "generation")})
    await kube.create(body)


async def test_a_new_resource_gets_children_and_status_then_idle_resyncs_write_nothing(
    api: Any, kube: Kube, operator: Any, make_md: Callable[..., dict[str, Any]], poll: Callable[..., Any]
) -> None:
    runtime = await operator(resync_s=0.2)
    await _create(kube, make_md(replicas=0))

    async def ready() -> bool:
        body = await kube.get("ModelDeployment", "default", "demo")
        return any(
            c["type"] == "Ready" and c["status"] == "True" for c in (body.get("status") or {}).get("conditions", [])
        )

    await poll(ready)
    assert await kube.get("Deployment", "default", "demo") is not None
    # Settled: two resync rounds without a write (the last flip's Event may still be in flight).
    settled = {"writes": -1, "round": runtime.resyncs}

    def quiet() -> bool:
        if runtime.resyncs < settled["round"] + 2:
            return False
        writes = len(api.audit.writes())
        done = writes == settled["writes"]
        settled.update(writes=writes, round=runtime.resyncs)
        return done

    await poll(quiet)
    api.audit.reset()
    start = runtime.resyncs
    await poll(lambda: runtime.resyncs >= start + 3, timeout=10)
    assert api.audit.writes() == []  # neither kopf nor the reconciler wrote anything
    assert runtime.reconciler.last[("default", "demo")].writes == 0
    body = await kube.get("ModelDeployment", "default", "demo")
    assert not body["metadata"].get("finalizers")
    assert not [k for k in body["metadata"].get("annotations", {}) if "kopf" in k]


async def test_a_pod_event_reconciles_its_fleet_without_waiting_for_a_resync(
    kube: Kube, operator: Any, make_md: Callable[..., dict[str, Any]], poll: Callable[..., Any]
) -> None:
    await operator(resync_s=3600)
    await _create(kube, make_md(replicas=1))
    await poll(lambda: kube.get("Deployment", "default", "demo"))
    # A pod of the fleet appears (as the ReplicaSet controller would create it): no IP yet.
    await kube.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "demo-abc",
                "namespace": "default",
                "labels": {"app.kubernetes.io/name": "modelfleet-server", "modelfleet.io/deployment": "demo"},
            },
            "spec": {"containers": [{"name": "server", "image": "x"}]},
        }
    )

    async def counted() -> bool:
        body = await kube.get("ModelDeployment", "default", "demo")
        return (body.get("status") or {}).get("replicas") == 1

    await poll(counted)
    body = await kube.get("ModelDeployment", "default", "demo")
    progressing = next(c for c in body["status"]["conditions"] if c["type"] == "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("True", "PodsStarting")
