"""Create → every pod serves every model (through the Service too); scale 1→3 → the new pods converge."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kubernetes_validate
import pytest

pytestmark = pytest.mark.slow

TINY = {"name": "tiny", "versions": [{"version": "1.0", "url": "tiny.pt#version=1.0"}]}
MLP = {"name": "mlp", "versions": [{"version": "1.0", "url": "mlp.pt"}], "minWorkers": 1, "maxWorkers": 2}


async def test_created_fleet_serves_every_model_and_scaled_out_pods_converge(
    product: Any, poll: Callable[..., Any], k8s_versions: tuple[str, str]
) -> None:
    await product.start_operator()
    await product.create(replicas=1, models=[TINY, MLP])
    await poll(lambda: product.ready(replicas=1, summary="tiny:1.0 mlp:1.0"), timeout=90)
    token = await product.token("inference")
    answer = await product.predict(await product.service_address(), "tiny", token=token)
    assert len(answer.strip("[]").split(",")) == 4

    # Every object the operator wrote, as the API stored it, is valid Kubernetes.
    for kind, name in [
        ("Deployment", "demo"),
        ("Service", "demo"),
        ("Service", "demo-headless"),
        ("ConfigMap", "demo-models"),
        ("Secret", "demo-tokens"),
        ("NetworkPolicy", "demo"),
        ("PodDisruptionBudget", "demo"),
    ]:
        for v in k8s_versions:
            kubernetes_validate.validate(await product.kube.get(kind, "default", name), v, strict=True)

    await product.patch_spec({"replicas": 3})
    await poll(lambda: product.ready(replicas=3, summary="tiny:1.0 mlp:1.0"), timeout=120)
    pods = await product.pods()
    assert len(pods) == 3 and len({p["status"]["podIP"] for p in pods}) == 3
    for pod in pods:
        models = await product.pod_models(pod)
        assert models == {"tiny": ("1.0", ["1.0"]), "mlp": ("1.0", ["1.0"])}
    status = (await product.md())["status"]
    assert {m["name"]: (m["state"], m["podsServing"], m["pods"]) for m in status["models"]} == {
        "tiny": ("Loaded", 3, 3),
        "mlp": ("Loaded", 3, 3),
    }
    assert sorted(p["name"] for p in status["pods"]) == sorted(p["metadata"]["name"] for p in pods)
    assert all(p["ready"] for p in status["pods"])
