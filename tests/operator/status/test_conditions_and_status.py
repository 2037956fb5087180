"""Conditions move lastTransitionTime only on flips; status is deterministic and truthful."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from modelfleet.operator.conditions import Condition, merge
from modelfleet.operator.observed import ObservedModel, ObservedPod, ObservedVersion, PodRef
from modelfleet.operator.plan import Failure, make_plan
from modelfleet.operator.spec import parse_spec
from modelfleet.operator.status import Observation, build, decide


def test_last_transition_time_changes_only_when_the_status_flips() -> None:
    first, flips = merge(None, [Condition("Ready", False, "PodsNotReady", "0 of 1")], generation=1, now="T1")
    assert first[0]["lastTransitionTime"] == "T1" and [f.new for f in flips] == ["False"]
    same, flips = merge(first, [Condition("Ready", False, "ModelsNotServing", "other message")], generation=2, now="T2")
    assert same[0]["lastTransitionTime"] == "T1" and flips == []
    assert (same[0]["reason"], same[0]["observedGeneration"]) == ("ModelsNotServing", 2)
    flipped, flips = merge(same, [Condition("Ready", True, "AllPodsServing")], generation=2, now="T3")
    assert flipped[0]["lastTransitionTime"] == "T3" and [(f.old, f.new) for f in flips] == [("False", "True")]


def test_foreign_conditions_are_kept() -> None:
    merged, _ = merge([{"type": "Custom", "status": "True"}], [Condition("Ready", True, "X")], generation=1, now="T")
    assert [c["type"] for c in merged] == ["Ready", "Custom"]


def _pod(name: str, default: str, *, ready: bool = True, serving: bool = True) -> ObservedPod:
    ref = PodRef(name=name, uid=f"u-{name}", ip="10.0.0.1", ready=ready)
    version = ObservedVersion(default, min_workers=1, max_workers=1, workers=1, ready_workers=1, serving=serving)
    return ObservedPod(pod=ref, models={"tiny": ObservedModel("tiny", default, {default: version})})


def _status(
    make_md: Callable[..., dict[str, Any]],
    pods: list[ObservedPod],
    *,
    failures: dict[Any, Failure] | None = None,
    replicas: int = 2,
) -> tuple[dict[str, Any], list[Condition]]:
    spec = parse_spec(make_md(replicas=replicas))
    plan = make_plan(
        spec, pods, failures=failures or {}, previous_document=None, now=0.0, drivable=[p.pod.name for p in pods]
    )
    seen = Observation(live_pods=[p.pod for p in pods], observed=pods, failures=failures or {})
    return build(spec, plan, seen=seen, selector="s", pod_cap=10), decide(spec, plan, seen=seen)


def _by_type(conditions: list[Condition]) -> dict[str, Condition]:
    return {c.type: c for c in conditions}


def test_ready_only_when_every_pod_serves_every_desired_model(make_md: Callable[..., dict[str, Any]]) -> None:
    body, conditions = _status(make_md, [_pod("a", "1.0"), _pod("b", "1.0")])
    assert _by_type(conditions)["Ready"].status is True
    assert (body["replicas"], body["readyReplicas"], body["modelsSummary"]) == (2, 2, "tiny:1.0")
    body, conditions = _status(make_md, [_pod("a", "1.0"), _pod("b", "1.0", ready=False)])
    assert _by_type(conditions)["Ready"].status is False
    assert _by_type(conditions)["Progressing"].reason == "PodsStarting"
    assert body["readyReplicas"] == 1


def test_a_failed_load_is_degraded_with_its_message(make_md: Callable[..., dict[str, Any]]) -> None:
    spec = parse_spec(make_md())
    failure = Failure(
        "u-a", "tiny", "1.0", "tiny.pt#version=1.0", "SOURCE_NOT_FOUND", "no such file", True, spec.generation
    )
    body, conditions = _status(
        make_md, [_pod("a", "0.9"), _pod("b", "0.9")], failures={("u-a", "tiny", "1.0"): failure}
    )
    by = _by_type(conditions)
    assert (by["Degraded"].status, by["Degraded"].reason) == (True, "ModelLoadFailed")
    assert "no such file" in by["Degraded"].message
    assert (by["Progressing"].status, by["Progressing"].reason) == (False, "BlockedByFailedLoad")
    assert body["models"][0]["state"] == "FailedToLoad" and "no such file" in body["models"][0]["message"]
    assert body["pods"][0]["name"] == "a" and "no such file" in body["pods"][0]["lastError"]  # failing pods first


def test_status_is_deterministic(make_md: Callable[..., dict[str, Any]]) -> None:
    pods = [_pod("b", "1.0"), _pod("a", "1.0")]
    assert _status(make_md, pods) == _status(make_md, pods)


def test_pods_past_the_cap_are_counted(make_md: Callable[..., dict[str, Any]]) -> None:
    pods = [_pod(f"p{i:02}", "1.0") for i in range(13)]
    spec = parse_spec(make_md(replicas=13))
    plan = make_plan(spec, pods, failures={}, previous_document=None, now=0.0, drivable=[])
    body = build(
        spec,
        plan,
        seen=Observation(live_pods=[p.pod for p in pods], observed=pods, failures={}),
        selector="s",
        pod_cap=10,
    )
    assert len(body["pods"]) == 10 and body["podsOmitted"] == 3
