"""The operator's own life: restarted in the middle of a cut-over it finishes the job from what the
pods say; an idle fleet costs zero API writes per resync; deleting the resource removes every child
and stops every server process."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from modelfleet.protos import management_pb2

pytestmark = pytest.mark.slow

V1 = {"version": "1.0", "url": "tiny.pt#version=1.0"}
V2 = {"version": "2.0", "url": "tiny2.pt#version=2.0"}


async def test_an_operator_restarted_mid_cutover_finishes_it(product: Any, poll: Callable[..., Any]) -> None:
    await product.start_operator()
    await product.create(replicas=2, models=[{"name": "tiny", "versions": [V1]}])
    await poll(lambda: product.ready(replicas=2, summary="tiny:1.0"), timeout=90)
    await product.stop_operator()

    # The state an operator leaves when it dies right after switching the first pod: pod a serves
    # 2.0 by default, pod b has never heard of it, the ConfigMap still says 1.0.
    first, second = sorted(await product.pods(), key=lambda p: p["metadata"]["name"])
    channel, stub, metadata = await product.management(first)
    async with channel:
        await stub.RegisterModel(
            management_pb2.RegisterModelRequest(model_name="tiny", url=V2["url"], initial_workers=1, synchronous=True),
            metadata=metadata,
            timeout=60,
        )
        await stub.SetDefault(
            management_pb2.SetDefaultRequest(model_name="tiny", model_version="2.0"), metadata=metadata, timeout=10
        )
    await product.patch_spec({"models": [{"name": "tiny", "versions": [V2], "defaultVersion": "2.0"}]})
    assert (await product.configmap_document())["models"][0]["defaultVersion"] == "1.0"

    await product.start_operator()
    await poll(lambda: product.ready(replicas=2, summary="tiny:2.0"), timeout=60)
    for pod in (first, second):
        assert await product.pod_models(pod) == {"tiny": ("2.0", ["2.0"])}
    document = await product.configmap_document()
    assert document["models"][0]["defaultVersion"] == "2.0" and document["models"][0]["versions"] == [V2]


async def test_an_idle_fleet_costs_no_writes_per_resync(product: Any, poll: Callable[..., Any]) -> None:
    runtime = await product.start_operator(resync_s=0.3)
    await product.create(replicas=2, models=[{"name": "tiny", "versions": [V1]}])
    await poll(lambda: product.ready(replicas=2), timeout=90)
    # Settled: two resync rounds without a write (the last flip's Event may still be in flight).
    settled = {"writes": -1, "round": runtime.resyncs}

    def quiet() -> bool:
        if runtime.resyncs < settled["round"] + 2:
            return False
        writes = len(product.operator_writes())
        done = writes == settled["writes"]
        settled.update(writes=writes, round=runtime.resyncs)
        return done

    await poll(quiet, timeout=30)
    before = len(product.operator_writes())
    start = runtime.resyncs
    await poll(lambda: runtime.resyncs >= start + 5, timeout=15)
    extra = [(r.verb, r.resource, r.subresource, r.name, r.user_agent) for r in product.operator_writes()[before:]]
    events = [(e["reason"], e["message"]) for e in await product.kube.list_objects("Event", "default")]
    assert extra == [], events[-3:]
    assert runtime.reconciler.last[("default", "demo")].writes == 0


async def test_deleting_the_resource_removes_children_and_stops_servers(
    product: Any, poll: Callable[..., Any], pids_of: Callable[[dict[str, Any]], list[int]]
) -> None:
    await product.start_operator()
    await product.create(replicas=2, models=[{"name": "tiny", "versions": [V1]}])
    await poll(lambda: product.ready(replicas=2), timeout=90)
    pods = await product.pods()
    assert all(pids_of(pod) for pod in pods)
    await product.kube.delete("ModelDeployment", "default", "demo")

    left: list[str] = []

    async def gone() -> bool:
        left.clear()
        for kind, name in [
            ("Deployment", "demo"),
            ("Service", "demo"),
            ("Service", "demo-headless"),
            ("ConfigMap", "demo-models"),
            ("Secret", "demo-tokens"),
            ("NetworkPolicy", "demo"),
            ("PodDisruptionBudget", "demo"),
        ]:
            if await product.kube.get(kind, "default", name) is not None:
                left.append(f"{kind}/{name}")
        pods = await product.kube.list_objects("Pod", "default", label_selector="modelfleet.io/deployment=demo")
        left.extend(f"Pod/{p['metadata']['name']}" for p in pods)
        return not left

    try:
        await poll(gone, timeout=60)
    except AssertionError:
        raise AssertionError(f"still there after 60 s: {left}") from None
    await poll(lambda: not any(pids_of(pod) for pod in pods), timeout=30)
