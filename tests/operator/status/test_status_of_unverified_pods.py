"""A pod whose address answered as another pod is reported as such: Degraded PodUnverified (ahead of
other pod troubles, since nothing can be managed there) and the reason in the pod's lastError."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from modelfleet.operator.observed import ObservedModel, ObservedPod, ObservedVersion, PodRef
from modelfleet.operator.plan import make_plan
from modelfleet.operator.spec import parse_spec
from modelfleet.operator.status import Observation, build, decide

MISMATCH = "Health/Check: POD_IDENTITY_MISMATCH: the server at 10.0.0.2:7071 is pod uid 'x', not u-b"


def _serving(name: str) -> ObservedPod:
    version = ObservedVersion("1.0", min_workers=1, max_workers=1, workers=1, ready_workers=1, serving=True)
    return ObservedPod(
        PodRef(name, f"u-{name}", "10.0.0.1", ready=True), {"tiny": ObservedModel("tiny", "1.0", {"1.0": version})}
    )


def test_an_unverified_pod_makes_the_fleet_degraded_with_its_reason(make_md: Callable[..., dict[str, Any]]) -> None:
    spec = parse_spec(make_md(replicas=2))
    # Not ready and restarting too (its own server died): the identity problem is still what is shown.
    stranger = ObservedPod(
        PodRef("b", "u-b", "10.0.0.2", ready=False, restarts=2), None, error=MISMATCH, unverified=True
    )
    pods = [_serving("a"), stranger]
    plan = make_plan(spec, pods, failures={}, previous_document=None, now=0.0, drivable=["a"])
    seen = Observation(live_pods=[p.pod for p in pods], observed=pods, failures={})
    degraded = {c.type: c for c in decide(spec, plan, seen=seen)}["Degraded"]
    assert (degraded.status, degraded.reason) == (True, "PodUnverified")
    assert degraded.message == f"b: {MISMATCH}"
    assert not any(a.pod.name == "b" for a in plan.actions)  # nothing is planned for it
    entry = next(p for p in build(spec, plan, seen=seen, selector="s", pod_cap=10)["pods"] if p["name"] == "b")
    assert entry["lastError"] == MISMATCH and entry["ready"] is False


def test_an_unreachable_pod_is_not_called_unverified(make_md: Callable[..., dict[str, Any]]) -> None:
    spec = parse_spec(make_md(replicas=2))
    gone = ObservedPod(PodRef("b", "u-b", "10.0.0.2", ready=True), None, error="ListModels: UNAVAILABLE: refused")
    pods = [_serving("a"), gone]
    plan = make_plan(spec, pods, failures={}, previous_document=None, now=0.0, drivable=["a", "b"])
    seen = Observation(live_pods=[p.pod for p in pods], observed=pods, failures={})
    assert {c.type: c for c in decide(spec, plan, seen=seen)}["Degraded"].reason == "PodUnreachable"
