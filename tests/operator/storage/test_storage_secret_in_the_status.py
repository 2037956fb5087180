"""A missing (or keyless) spec.storage.credentialsSecret is named in Ready, Progressing and Degraded,
since in a cluster the pods only sit in ContainerCreating and say why in an Event. The operator reads
that Secret with a namespaced `get` (nothing else: no list, no watch, no write), never echoes its
values, and a fleet that already serves stays Ready (a mounted Secret outlives its deletion)."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from modelfleet.operator.kube import Kube
from modelfleet.operator.observed import ObservedModel, ObservedPod, ObservedVersion, PodRef
from modelfleet.operator.plan import make_plan
from modelfleet.operator.reconcile import Reconciler
from modelfleet.operator.settings import OperatorSettings
from modelfleet.operator.spec import parse_spec
from modelfleet.operator.status import Observation, decide
from modelfleet.operator.storage import SECRET_INCOMPLETE, SECRET_MISSING, problem_of

KEY = ("default", "demo")
STORAGE = {"credentialsSecret": {"name": "creds"}, "endpoint": "http://minio.minio:9000"}
KEY_MATERIAL = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"


def _secret(**data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "creds", "namespace": "default"},
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": KEY_MATERIAL}, None),
        ({"AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "b", "AWS_SESSION_TOKEN": "c"}, None),
        ({"credentials": "[default]\n"}, None),
        ({"AWS_ACCESS_KEY_ID": "a"}, SECRET_INCOMPLETE),
        ({"aws_access_key_id": "a", "aws_secret_access_key": "b"}, SECRET_INCOMPLETE),
        ({}, SECRET_INCOMPLETE),
    ],
)
def test_either_layout_the_server_reads_is_enough(
    make_md: Callable[..., dict[str, Any]], data: dict[str, str], expected: str | None
) -> None:
    problem = problem_of(parse_spec(make_md(storage=STORAGE)), _secret(**data))
    assert (problem.reason if problem else None) == expected
    if problem is not None:
        assert '"credentials"' in problem.message and "AWS_SECRET_ACCESS_KEY" in problem.message


def test_without_a_named_secret_nothing_is_read_or_reported(make_md: Callable[..., dict[str, Any]]) -> None:
    assert problem_of(parse_spec(make_md(storage={"region": "eu-west-1"})), None) is None


def _serving(name: str) -> ObservedPod:
    version = ObservedVersion("1.0", min_workers=1, max_workers=1, workers=1, ready_workers=1, serving=True)
    ref = PodRef(name=name, uid=f"u-{name}", ip="10.0.0.1", ready=True)
    return ObservedPod(pod=ref, models={"tiny": ObservedModel("tiny", "1.0", {"1.0": version})})


def test_a_serving_fleet_whose_secret_went_away_stays_ready_and_is_degraded(
    make_md: Callable[..., dict[str, Any]],
) -> None:
    spec = parse_spec(make_md(replicas=1, storage=STORAGE))
    pods = [_serving("demo-a")]
    plan = make_plan(spec, pods, failures={}, previous_document=None, now=0.0, drivable=["demo-a"])
    seen = Observation(live_pods=[p.pod for p in pods], observed=pods, failures={}, storage=problem_of(spec, None))
    ready, progressing, degraded = decide(spec, plan, seen=seen)
    assert (ready.status, ready.reason) == (True, "AllPodsServing")
    assert (progressing.status, progressing.reason) == (False, "RolloutComplete")
    assert (degraded.status, degraded.reason) == (True, SECRET_MISSING)


@pytest.fixture
async def reconciler(kube: Kube) -> AsyncIterator[Reconciler]:
    r = Reconciler(kube, OperatorSettings())
    yield r
    await r.close()


async def _conditions(kube: Kube) -> dict[str, dict[str, Any]]:
    body = await kube.get("ModelDeployment", "default", "demo")
    assert body is not None
    return {c["type"]: c for c in body["status"]["conditions"]}


async def test_the_status_says_the_secret_is_missing_then_keyless_then_nothing(
    api: Any, kube: Kube, reconciler: Reconciler, make_md: Callable[..., dict[str, Any]]
) -> None:
    body = make_md(replicas=1, storage=STORAGE)
    body["metadata"] = {"name": "demo", "namespace": "default"}
    await kube.create(body)

    requeue = await reconciler.reconcile(KEY)
    conditions = await _conditions(kube)
    for kind, status in (("Ready", "False"), ("Progressing", "False"), ("Degraded", "True")):
        assert (conditions[kind]["status"], conditions[kind]["reason"]) == (status, SECRET_MISSING), conditions[kind]
        assert (
            'Secret "creds" (spec.storage.credentialsSecret) not found in namespace "default"'
            in (conditions[kind]["message"])
        )
    assert all("ContainerCreating" in c["message"] and not c["message"].endswith("…") for c in conditions.values())
    # A created Secret starts no pass (the operator watches no Secret): it comes back to look.
    assert requeue == OperatorSettings().reconcile.stuck_pod_poll_s

    await kube.create(_secret(AWS_ACCESS_KEY_ID="AKIAEXAMPLE", aws_secret_access_key=KEY_MATERIAL))
    await reconciler.reconcile(KEY)
    conditions = await _conditions(kube)
    assert conditions["Degraded"]["reason"] == SECRET_INCOMPLETE
    assert conditions["Ready"]["reason"] == SECRET_INCOMPLETE

    await kube.patch_merge(
        "Secret", "default", "creds", {"data": {"AWS_SECRET_ACCESS_KEY": base64.b64encode(b"x").decode()}}
    )
    api.audit.reset()
    await reconciler.reconcile(KEY)
    conditions = await _conditions(kube)
    assert conditions["Degraded"]["status"] == "False", conditions["Degraded"]
    assert conditions["Ready"]["reason"] == "PodsNotReady"  # no kubelet here: the pod never starts

    status = json.dumps((await kube.get("ModelDeployment", "default", "demo"))["status"])
    assert KEY_MATERIAL not in status and "AKIAEXAMPLE" not in status
    secret_calls = {(r.verb, r.name) for r in api.audit.select(resource="secrets", user_agent="modelfleet-operator")}
    assert ("get", "creds") in secret_calls
    assert {verb for verb, name in secret_calls if name == "creds"} == {"get"}
