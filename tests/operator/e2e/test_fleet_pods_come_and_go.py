"""Pods that change under the operator: a server process killed (the kubelet restarts it empty; it
reloads the ConfigMap), a pod drifting with no Kubernetes event at all (a model unregistered by
hand: the resync repairs it), a pod replaced with a new address, and a model removed from the spec."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

import pytest

from modelfleet.protos import management_pb2

pytestmark = pytest.mark.slow

TINY = {"name": "tiny", "versions": [{"version": "1.0", "url": "tiny.pt#version=1.0"}]}
MLP = {"name": "mlp", "versions": [{"version": "1.0", "url": "mlp.pt"}]}
BOTH = {"tiny": ("1.0", ["1.0"]), "mlp": ("1.0", ["1.0"])}


async def test_a_killed_server_and_a_drifted_pod_are_reconverged(
    product: Any, poll: Callable[..., Any], pids_of: Callable[[dict[str, Any]], list[int]]
) -> None:
    await product.start_operator(resync_s=1.0)
    await product.create(replicas=1, models=[TINY, MLP])
    await poll(lambda: product.ready(replicas=1), timeout=90)
    (pod,) = await product.pods()

    # Drift no event announces: mlp unregistered behind the operator's back; "" stays SERVING.
    channel, stub, metadata = await product.management(pod)
    async with channel:
        await stub.UnregisterModel(
            management_pb2.UnregisterModelRequest(model_name="mlp", model_version="1.0"), metadata=metadata, timeout=10
        )
    assert "mlp" not in await product.pod_models(pod)
    await poll(lambda: _serves(product, pod, BOTH), timeout=30)  # repaired by the periodic resync

    # The server process dies; the kubelet restarts it empty and it loads the ConfigMap at start.
    (pid,) = pids_of(pod)
    os.kill(pid, signal.SIGKILL)

    async def restarted() -> bool:
        (current,) = await product.pods()
        statuses = current["status"].get("containerStatuses") or [{}]
        return statuses[0].get("restartCount", 0) >= 1 and await product.ready(replicas=1)

    await poll(restarted, timeout=90)
    assert pids_of(pod) not in ([], [pid])
    assert await product.pod_models(pod) == BOTH


async def _serves(product: Any, pod: dict[str, Any], expected: dict[str, Any]) -> bool:
    try:
        return bool(await product.pod_models(pod) == expected)
    except Exception:  # the process is restarting
        return False


async def test_a_replaced_pod_with_a_new_address_converges(product: Any, poll: Callable[..., Any]) -> None:
    await product.start_operator()
    await product.create(replicas=2, models=[TINY])
    await poll(lambda: product.ready(replicas=2), timeout=90)
    old = (await product.pods())[0]
    await product.kube.delete("Pod", "default", old["metadata"]["name"])

    async def replaced() -> bool:
        pods = await product.pods()
        names = {p["metadata"]["name"] for p in pods}
        return len(pods) == 2 and old["metadata"]["name"] not in names and await product.ready(replicas=2)

    await poll(replaced, timeout=90)
    pods = await product.pods()
    new = next(
        p
        for p in pods
        if p["metadata"]["name"] != old["metadata"]["name"] and p["metadata"]["uid"] != old["metadata"]["uid"]
    )
    assert await product.pod_models(new) == {"tiny": ("1.0", ["1.0"])}
    status = (await product.md())["status"]
    assert sorted(p["name"] for p in status["pods"]) == sorted(p["metadata"]["name"] for p in pods)


async def test_a_model_removed_from_the_spec_is_unregistered_everywhere(product: Any, poll: Callable[..., Any]) -> None:
    await product.start_operator()
    await product.create(replicas=1, models=[TINY, MLP])
    await poll(lambda: product.ready(replicas=1, summary="tiny:1.0 mlp:1.0"), timeout=90)
    await product.patch_spec({"models": [TINY]})
    (pod,) = await product.pods()
    await poll(lambda: _serves(product, pod, {"tiny": ("1.0", ["1.0"])}), timeout=30)
    await poll(lambda: product.ready(replicas=1, summary="tiny:1.0"), timeout=30)
    assert [m["name"] for m in (await product.configmap_document())["models"]] == ["tiny"]

    async def status_lists_tiny_only() -> bool:  # "Unloading" until the next pass observes it gone
        return [m["name"] for m in (await product.md())["status"]["models"]] == ["tiny"]

    await poll(status_lists_tiny_only, timeout=30)
