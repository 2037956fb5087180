"""Ready (and readyReplicas) say whether every pod serves the fleet's current default of every
model: a cut-over in progress is Progressing, a blocked one Degraded, and neither takes Ready away
while the old default serves everywhere. A brief unreachable spell of a Ready pod is no outage."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from modelfleet.operator.conditions import Condition
from modelfleet.operator.observed import ObservedModel, ObservedPod, ObservedVersion, PodRef
from modelfleet.operator.plan import Failure, make_plan
from modelfleet.operator.spec import parse_spec
from modelfleet.operator.status import Observation, build, decide
from modelfleet.operator.unreachable import settle

V1 = {"version": "1.0", "url": "tiny.pt#version=1.0"}
V2 = {"version": "2.0", "url": "tiny2.pt#version=2.0"}
ON_V1 = {"models": [{"name": "tiny", "defaultVersion": "1.0", "versions": [V1]}]}
"""The ConfigMap's document before the cut-over: the fleet's current default is 1.0."""


def _pod(name: str, default: str, *, loaded: dict[str, bool], ready: bool = True) -> ObservedPod:
    versions = {
        v: ObservedVersion(v, min_workers=1, max_workers=1, workers=1, ready_workers=int(s), serving=s)
        for v, s in loaded.items()
    }
    return ObservedPod(
        PodRef(name, f"u-{name}", "10.0.0.1", ready=ready), {"tiny": ObservedModel("tiny", default, versions)}
    )


def _decide(
    make_md: Callable[..., dict[str, Any]],
    pods: list[ObservedPod],
    *,
    versions: list[dict[str, str]],
    default: str,
    failures: dict[Any, Failure] | None = None,
    document: dict[str, Any] | None = ON_V1,
    **seen: Any,
) -> tuple[dict[str, Condition], dict[str, Any]]:
    spec = parse_spec(make_md(replicas=2, models=[{"name": "tiny", "versions": versions, "defaultVersion": default}]))
    plan = make_plan(
        spec, pods, failures=failures or {}, previous_document=document, now=0.0, drivable=[p.pod.name for p in pods]
    )
    observation = Observation(live_pods=[p.pod for p in pods], observed=pods, failures=failures or {}, **seen)
    conditions = {c.type: c for c in decide(spec, plan, seen=observation)}
    return conditions, build(spec, plan, seen=observation, selector="s", pod_cap=10)


def test_a_cutover_in_progress_is_progressing_and_the_fleet_stays_ready(make_md: Callable[..., dict[str, Any]]) -> None:
    loading = [_pod("a", "1.0", loaded={"1.0": True, "2.0": False}), _pod("b", "1.0", loaded={"1.0": True})]
    by, body = _decide(make_md, loading, versions=[V1, V2], default="2.0")
    assert (by["Ready"].status, by["Ready"].reason) == (True, "AllPodsServing")
    assert by["Progressing"].status is True and by["Degraded"].status is False
    assert (body["readyReplicas"], body["modelsSummary"]) == (2, "tiny:1.0->2.0")
    assert all(p["ready"] for p in body["pods"])

    # Halfway through the switch: pod a serves 2.0 by default, pod b still 1.0 (the document's).
    halfway = [_pod("a", "2.0", loaded={"1.0": True, "2.0": True}), _pod("b", "1.0", loaded={"1.0": True, "2.0": True})]
    by, body = _decide(make_md, halfway, versions=[V1, V2], default="2.0")
    assert by["Ready"].status is True and body["readyReplicas"] == 2 and by["Progressing"].status is True


def test_a_blocked_cutover_is_degraded_and_the_fleet_stays_ready(make_md: Callable[..., dict[str, Any]]) -> None:
    pods = [_pod("a", "1.0", loaded={"1.0": True}), _pod("b", "1.0", loaded={"1.0": True})]
    failure = Failure("u-a", "tiny", "2.0", V2["url"], "SOURCE_NOT_FOUND", "no such file " + "x" * 400, True, 1)
    by, body = _decide(make_md, pods, versions=[V1, V2], default="2.0", failures={("u-a", "tiny", "2.0"): failure})
    assert (by["Ready"].status, body["readyReplicas"]) == (True, 2)
    assert (by["Degraded"].status, by["Degraded"].reason) == (True, "ModelLoadFailed")
    assert (by["Progressing"].status, by["Progressing"].reason) == (False, "BlockedByFailedLoad")
    assert by["Progressing"].message == "tiny stays on 1.0: 2.0 failed to load"
    assert all(len(c.message) <= 200 for c in by.values())


def test_a_model_with_no_loadable_version_is_not_ready(make_md: Callable[..., dict[str, Any]]) -> None:
    pods = [_pod("a", "", loaded={}), _pod("b", "", loaded={})]
    failure = Failure("", "tiny", "2.0", V2["url"], "SOURCE_NOT_FOUND", "no such file", True, 1)
    by, _ = _decide(make_md, pods, versions=[V2], default="2.0", failures={("", "tiny", "2.0"): failure}, document=None)
    assert (by["Ready"].status, by["Ready"].reason) == (False, "ModelLoadFailed")
    assert "tiny" in by["Ready"].message


def test_a_pod_that_serves_an_old_version_the_fleet_left_is_not_ready(make_md: Callable[..., dict[str, Any]]) -> None:
    done = {"models": [{"name": "tiny", "defaultVersion": "2.0", "versions": [V2]}]}
    pods = [_pod("a", "2.0", loaded={"2.0": True}), _pod("b", "1.0", loaded={"1.0": True})]
    by, body = _decide(make_md, pods, versions=[V2], default="2.0", document=done)
    assert (by["Ready"].status, by["Ready"].reason, body["readyReplicas"]) == (False, "ModelsNotServing", 1)


def test_a_ready_pod_unreachable_for_one_pass_is_neither_degraded_nor_dropped(
    make_md: Callable[..., dict[str, Any]],
) -> None:
    serving = _pod("a", "1.0", loaded={"1.0": True})
    lost = ObservedPod(PodRef("b", "u-b", "10.0.0.2", ready=True), None, error="ListModels: UNAVAILABLE: refused")
    first = settle({}, [serving, lost], now=100.0, grace_s=5.0, min_delay_s=0.05)
    assert first.settling == {"b"} and first.recheck_after == 5.0
    by, body = _decide(
        make_md,
        [serving, lost],
        versions=[V1],
        default="1.0",
        settling=first.settling,
        served_before=frozenset({"a", "b"}),
    )
    assert (by["Degraded"].status, by["Ready"].status, body["readyReplicas"]) == (False, True, 2)

    # Still within the grace on the second pass: settling; after it: an outage, reported.
    assert settle(first.spells, [serving, lost], now=103.0, grace_s=5.0, min_delay_s=0.05).settling == {"b"}
    later = settle(first.spells, [serving, lost], now=106.0, grace_s=5.0, min_delay_s=0.05)
    assert later.settling == frozenset() and later.recheck_after is None
    by, body = _decide(
        make_md,
        [serving, lost],
        versions=[V1],
        default="1.0",
        settling=later.settling,
        served_before=frozenset({"a", "b"}),
    )
    assert (by["Degraded"].reason, by["Ready"].status, body["readyReplicas"]) == ("PodUnreachable", False, 1)
    # A reachable answer ends the spell: the next failure starts a new grace.
    assert settle(later.spells, [serving], now=107.0, grace_s=5.0, min_delay_s=0.05).spells == {}
