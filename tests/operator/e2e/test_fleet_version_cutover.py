"""Version cut-over across the fleet with a client calling through the Service the whole time: no
failed prediction, the new default everywhere, the ConfigMap flipped, the old version unregistered."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc
import pytest

pytestmark = pytest.mark.slow

V1 = {"version": "1.0", "url": "tiny.pt#version=1.0"}
V2 = {"version": "2.0", "url": "tiny2.pt#version=2.0"}


async def test_cutover_with_a_client_calling_throughout(product: Any, poll: Callable[..., Any]) -> None:
    await product.start_operator()
    await product.create(replicas=2, models=[{"name": "tiny", "versions": [V1]}])
    await poll(lambda: product.ready(replicas=2, summary="tiny:1.0"), timeout=90)
    address, token = await product.service_address(), await product.token("inference")
    old_answer = await product.predict(address, token=token)

    answers: list[str] = []
    failures: list[str] = []
    stop = asyncio.Event()

    async def client() -> None:
        for _ in range(100_000):  # bounded; stopped by the event long before
            if stop.is_set():
                return
            try:
                answers.append(await product.predict(address, token=token))
            except grpc.RpcError as exc:
                failures.append(f"{exc.code()}: {exc.details()}")

    calling = asyncio.create_task(client())
    await poll(lambda: len(answers) >= 5 or failures, timeout=30)
    assert failures == []
    started = asyncio.get_running_loop().time()
    await product.patch_spec({"models": [{"name": "tiny", "versions": [V1, V2], "defaultVersion": "2.0"}]})
    await poll(lambda: product.ready(replicas=2, summary="tiny:2.0"), timeout=90)
    print(f"cut-over of 2 pods took {asyncio.get_running_loop().time() - started:.2f} s")
    assert (await product.configmap_document())["models"][0]["defaultVersion"] == "2.0"
    new_answer = await product.predict(address, token=token)
    assert new_answer != old_answer  # other weights: the default really moved
    await poll(lambda: answers.count(new_answer) >= 5 or failures, timeout=30)
    assert failures == []

    # Drop 1.0 from the spec: it is unregistered everywhere (the default already moved).
    await product.patch_spec({"models": [{"name": "tiny", "versions": [V2], "defaultVersion": "2.0"}]})

    async def old_gone() -> bool:
        pods = await product.pods()
        return all([(await product.pod_models(p))["tiny"] == ("2.0", ["2.0"]) for p in pods])

    await poll(old_gone, timeout=60)
    await poll(lambda: product.ready(replicas=2, summary="tiny:2.0"))
    stop.set()
    await calling
    assert failures == []
    assert set(answers) == {old_answer, new_answer}
    assert answers.index(new_answer) > 0 and old_answer not in answers[answers.index(new_answer) + 50 :]
    events = await product.kube.list_objects("Event", "default")
    assert any(e["reason"] == "DefaultVersionChanged" and "2.0" in e["message"] for e in events)
