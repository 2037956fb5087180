"""Pod-level causes reach the ModelDeployment on the local fleet: a missing volume, a crash loop, a
command that cannot start and an image without a local entrypoint each show as `Degraded` with a
reason of their own and a message naming the pod, with one Warning Event per transition (a repeat
is counted on the first Event). The missing volume is told, as by a real kubelet, only in the pod's
FailedMount event; other causes a real kubelet tells only in events are covered by
tests/operator/status/test_pod_causes_from_recorded_pods.py."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

pytestmark = pytest.mark.slow

V1 = {"version": "1.0", "url": "tiny.pt#version=1.0"}


async def _degraded(product: Any) -> tuple[str, str, str]:
    c = await product.condition("Degraded")
    return c.get("status", ""), c.get("reason", ""), c.get("message", "")


async def _events(product: Any, reason: str) -> list[dict[str, Any]]:
    return [
        e
        for e in await product.kube.list_objects("Event", "default")
        if e["reason"] == reason and e["involvedObject"]["kind"] == "ModelDeployment"
    ]


async def test_a_missing_volume_is_named_with_its_pod(product: Any, poll: Callable[..., Any]) -> None:
    await product.start_operator()
    await product.create(
        replicas=1,
        models=[{"name": "tiny", "versions": [V1]}],
        modelStore={"readOnly": True, "volume": {"persistentVolumeClaim": {"claimName": "no-such-claim"}}},
    )
    await poll(lambda: _reason_is(product, "VolumeMountFailed"), timeout=60)
    (pod,) = await product.pods()
    _, _, message = await _degraded(product)
    assert message == (
        f'{pod["metadata"]["name"]}: MountVolume.SetUp failed for volume "model-store" : '
        'persistentvolumeclaim "no-such-claim" not found'
    )  # the kubelet's FailedMount event, read as a real cluster reports it
    assert (await product.condition("Ready"))["status"] == "False"
    (event,) = await _events(product, "VolumeMountFailed")
    assert (event["type"], event["message"]) == ("Warning", message)


async def test_crashing_unstartable_and_unpullable_pods_are_named_and_a_repeat_is_counted(
    product: Any, poll: Callable[..., Any]
) -> None:
    await product.start_operator()
    await product.create(replicas=0, models=[{"name": "tiny", "versions": [V1]}])
    await poll(lambda: _reason_is(product, "AsExpected"), timeout=30)
    deployment = await product.kube.get("Deployment", "default", "demo")
    template = deployment["spec"]["template"]

    async def start(name: str, **server: Any) -> None:
        """A pod of the fleet (its labels and template) whose server container is changed."""
        spec = copy.deepcopy(template["spec"])
        (container,) = [c for c in spec["containers"] if c["name"] == "server"]
        for key, value in server.items():
            if value is None:
                container.pop(key, None)
            else:
                container[key] = value
        await product.kube.create(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "spec": spec,
                "metadata": {"name": name, "namespace": "default", "labels": template["metadata"]["labels"]},
            }
        )

    async def gone(name: str) -> None:
        await product.kube.delete("Pod", "default", name)
        await poll(lambda: _reason_is(product, "AsExpected"), timeout=60)

    crash = ["python", "-c", "import sys; sys.exit(3)"]
    await start("demo-crash", command=crash, args=[])
    await poll(lambda: _reason_is(product, "ContainerCrashLooping"), timeout=60)
    _, _, crashed = await _degraded(product)
    assert crashed == "demo-crash: container server keeps exiting, last with code 3 (Error) (see its log)"
    await gone("demo-crash")

    await start("demo-nocommand", command=["no-such-server-binary"])
    await poll(lambda: _reason_is(product, "ContainerCannotStart"), timeout=60)
    _, _, message = await _degraded(product)
    assert message.startswith("demo-nocommand: container server cannot start: ") and "no-such-server-binary" in message
    await gone("demo-nocommand")

    await start("demo-image", command=None, image="registry.example/not-a-modelfleet-image:1")
    await poll(lambda: _reason_is(product, "ImagePullFailed"), timeout=60)
    _, _, message = await _degraded(product)
    assert message.startswith("demo-image: container server: ErrImageNeverPull: ")
    await gone("demo-image")

    # The same crash again: the same Event, counted, not a second one.
    await start("demo-crash", command=crash, args=[])
    await poll(lambda: _reason_is(product, "ContainerCrashLooping"), timeout=60)

    async def counted_twice() -> list[dict[str, Any]]:  # the Event is patched after the status is written
        found = await _events(product, "ContainerCrashLooping")
        return found if any(e.get("count") == 2 for e in found) else []

    (event,) = await poll(counted_twice, timeout=30)
    assert (event["type"], event["message"], event["count"], event["series"]["count"]) == ("Warning", crashed, 2, 2)
    for reason in ("ContainerCannotStart", "ImagePullFailed"):
        assert [e["count"] for e in await _events(product, reason)] == [1]


async def _reason_is(product: Any, reason: str) -> bool:
    return (await _degraded(product))[1] == reason
