"""What the operator puts back, removes, and how it leads: children edited by hand are patched back and
turning the NetworkPolicy off deletes it, while the operator holds (renews, and at stop releases) its
Lease; children that a pass in flight re-creates after the resource was deleted are deleted by the
next pass. Only these paths patch every kind of child, delete children and touch Leases, so the RBAC
comparison (test_zz_rbac_matches_what_the_operator_sent.py) sees those grants used."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest

pytestmark = pytest.mark.slow

FLEET_LABEL = "modelfleet.io/deployment"
V1 = {"version": "1.0", "url": "tiny.pt#version=1.0"}
CHILDREN = [
    ("Deployment", "demo"),
    ("Service", "demo"),
    ("Service", "demo-headless"),
    ("ConfigMap", "demo-models"),
    ("Secret", "demo-tokens"),
    ("NetworkPolicy", "demo"),
    ("PodDisruptionBudget", "demo"),
]


async def test_hand_edits_are_undone_and_a_disabled_network_policy_removed_while_the_operator_leads(
    product: Any, poll: Callable[..., Any]
) -> None:
    async def lease() -> dict[str, Any]:
        body = await product.kube.get("Lease", "default", "modelfleet-operator")
        assert body is not None, "the operator created its Lease"
        return dict(body["spec"])

    await product.start_operator(leader=True)
    first = await lease()
    assert first["holderIdentity"] == product.operator_identity

    await product.create(replicas=0, models=[{"name": "tiny", "versions": [V1]}])

    async def labels() -> dict[tuple[str, str], str | None]:
        """Each child's fleet label (None while the child is missing)."""
        found = {}
        for kind, name in CHILDREN:
            child = await product.kube.get(kind, "default", name)
            found[(kind, name)] = None if child is None else (child["metadata"].get("labels") or {}).get(FLEET_LABEL)
        return found

    async def every_child_labelled() -> bool:
        return all(value == "demo" for value in (await labels()).values())

    await poll(every_child_labelled, timeout=30)
    # Someone edits every child by hand: the operator puts its label back (a patch per child).
    for kind, name in CHILDREN:
        await product.kube.patch_merge(kind, "default", name, {"metadata": {"labels": {FLEET_LABEL: "edited"}}})
    try:
        await poll(every_child_labelled, timeout=30)
    except AssertionError:
        raise AssertionError(f"not put back: {await labels()}") from None

    await product.patch_spec({"networkPolicy": {"enabled": False}})

    async def removed() -> bool:
        return await product.kube.get("NetworkPolicy", "default", "demo") is None

    await poll(removed, timeout=30)
    assert await product.kube.get("Deployment", "default", "demo") is not None, "only the NetworkPolicy goes"

    async def renewed() -> bool:
        return bool((await lease())["renewTime"] != first["renewTime"])

    await poll(renewed, timeout=10)
    await product.stop_operator()
    assert (await lease())["holderIdentity"] == "", "a stopped operator releases its Lease"


async def test_children_a_pass_in_flight_recreates_after_deletion_are_deleted(
    product: Any, poll: Callable[..., Any], pids_of: Callable[[dict[str, Any]], list[int]]
) -> None:
    await product.start_operator()
    uid = (await product.create(replicas=1, models=[{"name": "tiny", "versions": [V1]}]))["metadata"]["uid"]
    await poll(lambda: product.ready(replicas=1), timeout=90)
    (pod,) = await product.pods()
    pids = pids_of(pod)
    assert pids
    audit = product.fleet.api.emulator.audit

    # A stopped server never answers: the next pass lists the pods, then waits on its call to the pod
    # (until the kubelet's liveness probe, about 3 s here, restarts it). That pass holds the body it
    # read before the deletion below, so it re-creates the children the garbage collector has removed.
    stopped = time.time()
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        # 30 s: the next pass comes with the probes' pod updates, later on a loaded machine.
        await poll(
            lambda: [
                r
                for r in audit
                if r.at > stopped and r.verb == "list" and r.resource == "pods" and product.sent_by_operator(r)
            ],
            timeout=30,
        )
        await product.kube.delete("ModelDeployment", "default", "demo")
        # A leftover that pass does not write (it read the token Secret before waiting): one more
        # object that still points at the deleted owner.
        await product.kube.create({
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "demo-tokens", "namespace": "default",
            "ownerReferences": [{"apiVersion": "modelfleet.io/v1alpha1", "kind": "ModelDeployment", "name": "demo",
                                 "uid": uid}]}})  # fmt: skip
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

    expected = {"deployments", "services", "configmaps", "secrets", "networkpolicies", "poddisruptionbudgets"}

    def deleted() -> set[str]:
        return {r.resource for r in audit if r.at > stopped and r.verb == "delete" and product.sent_by_operator(r)}

    await poll(lambda: deleted() >= expected, timeout=60)
    left: list[str] = []

    async def gone() -> bool:
        left.clear()
        for kind, name in CHILDREN:
            if await product.kube.get(kind, "default", name) is not None:
                left.append(f"{kind}/{name}")
        pods = await product.kube.list_objects("Pod", "default", label_selector="modelfleet.io/deployment=demo")
        left.extend(f"Pod/{p['metadata']['name']}" for p in pods)
        return not left

    try:
        await poll(gone, timeout=60)
    except AssertionError:
        raise AssertionError(f"still there after 60 s: {left}") from None
