"""What goes wrong in a fleet and how the operator answers: a version that fails to load (old
default kept, Degraded, not retried), a bad spec (InvalidSpec, running fleet untouched)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

pytestmark = pytest.mark.slow

V1 = {"version": "1.0", "url": "tiny.pt#version=1.0"}
MISSING = {"version": "2.0", "url": "missing.pt#version=2.0"}


async def test_a_failed_load_keeps_the_old_default_and_says_why(product: Any, poll: Callable[..., Any]) -> None:
    await product.start_operator()
    await product.create(replicas=2, models=[{"name": "tiny", "versions": [V1]}])
    await poll(lambda: product.ready(replicas=2, summary="tiny:1.0"), timeout=90)
    address, token = await product.service_address(), await product.token("inference")

    await product.patch_spec({"models": [{"name": "tiny", "versions": [V1, MISSING], "defaultVersion": "2.0"}]})

    async def degraded() -> bool:
        return (await product.condition("Degraded")).get("reason") == "ModelLoadFailed"

    await poll(degraded, timeout=60)
    await poll(lambda: _blocked(product), timeout=30)
    status = (await product.md())["status"]
    (model,) = status["models"]
    assert (model["state"], model["defaultVersion"], model["desiredDefaultVersion"]) == ("FailedToLoad", "1.0", "2.0")
    assert "missing.pt" in model["message"] or "not found" in model["message"].lower()
    assert (await product.condition("Ready"))["status"] == "True"  # the old default serves everywhere
    for pod in await product.pods():
        assert (await product.pod_models(pod))["tiny"] == ("1.0", ["1.0"])  # nothing half-loaded serves
    document = await product.configmap_document()
    assert document["models"][0]["defaultVersion"] == "1.0"
    assert [v["version"] for v in document["models"][0]["versions"]] == ["1.0"]  # new pods still start
    await product.predict(address, token=token)
    events = await product.kube.list_objects("Event", "default")
    assert any(e["type"] == "Warning" and e["reason"] == "ModelLoadFailed" for e in events)

    # Permanent: not retried on later passes (the resync runs every second here).
    start = product.runtime.resyncs
    await poll(lambda: product.runtime.resyncs >= start + 2, timeout=10)
    assert product.runtime.reconciler.last[("default", "demo")].actions == 0

    # Replacing every pod (a node drain) and restarting the operator must not put the bad version
    # back into the ConfigMap that new pods load at start: they would never become ready.
    await product.stop_operator()
    product.fleet.api.emulator.audit.reset()
    await product.start_operator()
    await poll(lambda: ("default", "demo") in product.runtime.reconciler.last)
    old_pods = {p["metadata"]["name"] for p in await product.pods()}
    for pod in old_pods:
        await product.kube.delete("Pod", "default", pod)

    async def replaced_and_serving() -> bool:
        pods = await product.pods()
        names = {p["metadata"]["name"] for p in pods}
        return (
            len(pods) == 2
            and not names & old_pods
            and await _blocked(product)
            and all(
                any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions") or [])
                for p in pods
            )
        )

    await poll(replaced_and_serving, timeout=90)
    configmap_writes = [r for r in product.operator_writes() if r.resource == "configmaps"]
    assert configmap_writes == []  # the restarted operator knew from the status that 2.0 fails
    assert [v["version"] for v in (await product.configmap_document())["models"][0]["versions"]] == ["1.0"]
    assert (await product.md())["status"]["models"][0]["state"] == "FailedToLoad"
    await product.predict(address, token=token)

    # Fixing the spec (back to 1.0) clears the failure.
    await product.patch_spec({"models": [{"name": "tiny", "versions": [V1], "defaultVersion": "1.0"}]})
    await poll(lambda: product.ready(replicas=2, summary="tiny:1.0"), timeout=60)
    assert (await product.condition("Degraded"))["status"] == "False"


async def _blocked(product: Any) -> bool:
    return (await product.condition("Progressing")).get("reason") == "BlockedByFailedLoad"


async def test_an_invalid_spec_leaves_the_running_fleet_alone(
    product: Any, poll: Callable[..., Any], outdated_crd: Callable[[Any], Any]
) -> None:
    await product.start_operator()
    await product.create(replicas=1, models=[{"name": "tiny", "versions": [V1]}])
    await poll(lambda: product.ready(replicas=1), timeout=90)
    before = {
        kind: (await product.kube.get(kind, "default", name))["metadata"]["resourceVersion"]
        for kind, name in [("Deployment", "demo"), ("ConfigMap", "demo-models"), ("Service", "demo")]
    }
    pods = [p["metadata"]["uid"] for p in await product.pods()]
    await outdated_crd(product.kube)  # without its CEL rules the API stores what the parser refuses
    await product.patch_spec({"models": [{"name": "tiny", "versions": [V1], "defaultVersion": "3.0"}]})

    async def invalid() -> bool:
        return (await product.condition("Ready")).get("reason") == "InvalidSpec"

    await poll(invalid, timeout=30)
    assert (await product.condition("Degraded"))["status"] == "True"
    after = {
        kind: (await product.kube.get(kind, "default", name))["metadata"]["resourceVersion"]
        for kind, name in [("Deployment", "demo"), ("ConfigMap", "demo-models"), ("Service", "demo")]
    }
    assert after == before
    assert [p["metadata"]["uid"] for p in await product.pods()] == pods
    assert (await product.pod_models((await product.pods())[0]))["tiny"] == ("1.0", ["1.0"])
    events = await product.kube.list_objects("Event", "default")
    assert any(e["type"] == "Warning" and e["reason"] == "InvalidSpec" for e in events)
