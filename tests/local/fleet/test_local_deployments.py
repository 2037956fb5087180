"""The local controller-manager and kubelet run a Deployment's pods as real processes, as a cluster would."""

from __future__ import annotations

import asyncio
import os

from modelfleet.local import podstatus


def _pods(fleet, app: str = "web") -> list[dict]:
    pods = fleet.client.type("", "pods")
    return [p for p in fleet.client.list(pods, "default") if p["metadata"].get("labels", {}).get("app") == app]


def _deployment(fleet, name: str = "web") -> dict:
    return fleet.client.get(fleet.client.type("apps", "deployments"), "default", name) or {}


def _ready(fleet, replicas: int, name: str = "web") -> bool:
    status = _deployment(fleet, name).get("status") or {}
    active = [p for p in _pods(fleet, name) if not podstatus.is_terminating(p)]
    return (
        status.get("readyReplicas") == replicas
        and status.get("updatedReplicas") == replicas
        and len(active) == replicas
        and all(podstatus.is_ready(p) for p in active)
    )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _pids(pods: list[dict]) -> list[int]:
    return [
        int(s["containerID"].split("://")[1])
        for p in pods
        for s in p["status"]["containerStatuses"]
        if s.get("containerID")
    ]


async def test_deployment_pods_run_as_processes_on_their_own_addresses(fleet, deployment, wait):
    deployments = fleet.client.type("apps", "deployments")
    fleet.client.create(deployments, "default", deployment(replicas=2))
    await wait(lambda: _ready(fleet, 2), what="2 ready pods")
    pods = _pods(fleet)
    ips = {p["status"]["podIP"] for p in pods}
    assert len(ips) == 2 and all(ip.startswith("127.0.") and ip != "127.0.0.1" for ip in ips)
    assert all(_alive(pid) for pid in _pids(pods))
    owner = pods[0]["metadata"]["ownerReferences"][0]
    assert owner["kind"] == "ReplicaSet" and pods[0]["metadata"]["labels"]["pod-template-hash"]
    status = _deployment(fleet)["status"]
    assert status["observedGeneration"] == 1 and status["availableReplicas"] == 2

    fleet.client.patch(deployments, "default", "web", {"spec": {"replicas": 1}})
    await wait(lambda: _ready(fleet, 1) and len(_pods(fleet)) == 1, what="scale down to 1")
    gone = [pid for pid in _pids(pods) if pid not in _pids(_pods(fleet))]
    assert len(gone) == 1
    await wait(lambda: not _alive(gone[0]), what="the removed pod's process to end")


async def test_rolling_update_with_max_surge_zero_never_runs_more_pods_than_replicas(fleet, deployment, wait):
    deployments = fleet.client.type("apps", "deployments")
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
    fleet.client.create(deployments, "default", deployment(replicas=2, strategy=strategy))
    await wait(lambda: _ready(fleet, 2), what="2 ready pods")
    old_pids = _pids(_pods(fleet))
    watch = fleet.client.watch(fleet.client.type("", "pods"), "default")
    fleet.client.patch(
        deployments, "default", "web", {"spec": {"template": {"metadata": {"annotations": {"rev": "2"}}}}}
    )
    most_active = 0
    active: dict[str, bool] = {}

    def rolled() -> bool:
        return _ready(fleet, 2) and all(p["metadata"].get("annotations", {}).get("rev") == "2" for p in _pods(fleet))

    deadline = asyncio.get_running_loop().time() + 30
    trace = []
    try:
        while not rolled():
            assert asyncio.get_running_loop().time() < deadline, f"rollout did not finish: {_pods(fleet)}"
            event = await watch.next(timeout=0.1)
            if event is None:
                continue
            pod = event["object"]
            active[pod["metadata"]["name"]] = event["type"] != "DELETED" and podstatus.is_active(pod)
            most_active = max(most_active, sum(active.values()))
            trace.append(
                (
                    event["type"],
                    pod["metadata"]["name"],
                    pod["status"].get("phase"),
                    podstatus.is_active(pod),
                    sum(active.values()),
                )
            )
    finally:
        watch.close()
    assert most_active <= 2, trace
    await wait(lambda: not any(_alive(pid) for pid in old_pids), what="old processes to end")
    assert _deployment(fleet)["status"]["observedGeneration"] == 2


async def test_recreate_stops_every_old_pod_before_starting_new_ones(fleet, deployment, wait):
    deployments = fleet.client.type("apps", "deployments")
    fleet.client.create(deployments, "default", deployment(replicas=2, strategy={"type": "Recreate"}))
    await wait(lambda: _ready(fleet, 2), what="2 ready pods")
    old = {p["metadata"]["name"] for p in _pods(fleet)}
    watch = fleet.client.watch(fleet.client.type("", "pods"), "default")
    fleet.client.patch(
        deployments, "default", "web", {"spec": {"template": {"metadata": {"annotations": {"rev": "2"}}}}}
    )
    remaining = set(old)
    try:
        while remaining:
            event = await watch.next(timeout=30)
            assert event is not None, "old pods were not removed"
            name = event["object"]["metadata"]["name"]
            assert name in old, f"new pod {name} created while old pods remained"
            if event["type"] == "DELETED":
                remaining.discard(name)
    finally:
        watch.close()
    await wait(lambda: _ready(fleet, 2), what="2 new ready pods")


async def test_deleting_a_deployment_collects_its_replicasets_pods_and_processes(fleet, deployment, wait):
    deployments = fleet.client.type("apps", "deployments")
    fleet.client.create(deployments, "default", deployment(replicas=2))
    await wait(lambda: _ready(fleet, 2), what="2 ready pods")
    pids = _pids(_pods(fleet))
    fleet.client.delete(deployments, "default", "web")
    await wait(lambda: not _pods(fleet), what="pods to be collected")
    assert not fleet.client.list(fleet.client.type("apps", "replicasets"), "default")
    assert not any(_alive(pid) for pid in pids)
