"""The planner drives every pod to the spec, and orders a version cut-over across the whole fleet:
register everywhere → serving everywhere → SetDefault everywhere → unregister the old one."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from modelfleet.operator.observed import ObservedModel, ObservedPod, ObservedVersion, PodRef
from modelfleet.operator.plan import Failure, Plan, make_plan
from modelfleet.operator.spec import DeploymentSpec, parse_spec

V1 = {"version": "1.0", "url": "tiny.pt#version=1.0"}
V2 = {"version": "2.0", "url": "tiny2.pt#version=2.0"}


def pod(name: str, models: dict[str, tuple[str, dict[str, bool]]] | None, *, workers: int = 1) -> ObservedPod:
    """models: name → (default, {version: serving})."""
    ref = PodRef(name=name, uid=f"uid-{name}", ip="10.0.0.1", ready=True)
    if models is None:
        return ObservedPod(pod=ref, models=None, error="unreachable")
    return ObservedPod(
        pod=ref,
        models={
            m: ObservedModel(
                name=m,
                default_version=default,
                versions={
                    v: ObservedVersion(
                        v,
                        min_workers=workers,
                        max_workers=workers,
                        workers=workers,
                        ready_workers=workers if s else 0,
                        serving=s,
                    )
                    for v, s in versions.items()
                },
            )
            for m, (default, versions) in models.items()
        },
    )


def plan_for(
    spec: DeploymentSpec,
    pods: list[ObservedPod],
    *,
    failures: dict[Any, Failure] | None = None,
    previous: dict[str, Any] | None = None,
) -> Plan:
    return make_plan(
        spec, pods, failures=failures or {}, previous_document=previous, now=0.0, drivable=[p.pod.name for p in pods]
    )


def actions(plan: Plan) -> list[tuple[str, str, str, str]]:
    return [(a.kind, a.pod.name, a.model, a.version) for a in plan.actions]


def cutover_spec(make_md: Callable[..., dict[str, Any]]) -> DeploymentSpec:
    return parse_spec(make_md(models=[{"name": "tiny", "versions": [V1, V2], "defaultVersion": "2.0"}]))


def test_empty_pods_get_every_desired_model_registered(make_md: Callable[..., dict[str, Any]]) -> None:
    spec = parse_spec(
        make_md(
            models=[
                {"name": "tiny", "versions": [V1]},
                {"name": "mlp", "versions": [{"version": "1.0", "url": "mlp.pt"}]},
            ]
        )
    )
    plan = plan_for(spec, [pod("a", {}), pod("b", {})])
    assert actions(plan) == [
        ("register", "a", "tiny", "1.0"),
        ("register", "a", "mlp", "1.0"),
        ("register", "b", "tiny", "1.0"),
        ("register", "b", "mlp", "1.0"),
    ]
    assert plan.converged_pods == frozenset()


def test_a_converged_fleet_needs_nothing(make_md: Callable[..., dict[str, Any]]) -> None:
    spec = parse_spec(make_md())
    plan = plan_for(spec, [pod("a", {"tiny": ("1.0", {"1.0": True})}), pod("b", {"tiny": ("1.0", {"1.0": True})})])
    assert plan.actions == ()
    assert plan.converged_pods == {"a", "b"}
    assert plan.models[0].state == "Loaded" and plan.models[0].pods_serving == 2


def test_cutover_step_one_registers_the_new_version_everywhere_and_keeps_the_old_default(
    make_md: Callable[..., dict[str, Any]],
) -> None:
    before = {"tiny": ("1.0", {"1.0": True})}
    plan = plan_for(
        cutover_spec(make_md),
        [pod("a", before), pod("b", before)],
        previous={"models": [{"name": "tiny", "defaultVersion": "1.0", "versions": [V1]}]},
    )
    assert actions(plan) == [("register", "a", "tiny", "2.0"), ("register", "b", "tiny", "2.0")]
    (model,) = plan.document["models"]
    assert model["defaultVersion"] == "1.0"  # the ConfigMap flips only after SetDefault everywhere
    assert [v["version"] for v in model["versions"]] == ["1.0", "2.0"]


def test_cutover_waits_until_the_new_version_serves_on_every_pod(make_md: Callable[..., dict[str, Any]]) -> None:
    plan = plan_for(
        cutover_spec(make_md),
        [
            pod("a", {"tiny": ("1.0", {"1.0": True, "2.0": True})}),
            pod("b", {"tiny": ("1.0", {"1.0": True, "2.0": False})}),
        ],
    )
    assert actions(plan) == []  # no SetDefault anywhere while one pod is still warming up
    assert plan.waiting


def test_cutover_sets_the_default_everywhere_once_serving_everywhere(make_md: Callable[..., dict[str, Any]]) -> None:
    both = {"tiny": ("1.0", {"1.0": True, "2.0": True})}
    plan = plan_for(
        cutover_spec(make_md),
        [pod("a", both), pod("b", both)],
        previous={"models": [{"name": "tiny", "defaultVersion": "1.0", "versions": [V1, V2]}]},
    )
    assert actions(plan) == [("set_default", "a", "tiny", "2.0"), ("set_default", "b", "tiny", "2.0")]
    assert plan.document["models"][0]["defaultVersion"] == "1.0"


def test_cutover_flips_the_configmap_default_only_when_every_pod_switched(
    make_md: Callable[..., dict[str, Any]],
) -> None:
    previous = {"models": [{"name": "tiny", "defaultVersion": "1.0", "versions": [V1, V2]}]}
    half = plan_for(
        cutover_spec(make_md),
        [
            pod("a", {"tiny": ("2.0", {"1.0": True, "2.0": True})}),
            pod("b", {"tiny": ("1.0", {"1.0": True, "2.0": True})}),
        ],
        previous=previous,
    )
    assert half.document["models"][0]["defaultVersion"] == "1.0"
    done = plan_for(
        cutover_spec(make_md),
        [
            pod("a", {"tiny": ("2.0", {"1.0": True, "2.0": True})}),
            pod("b", {"tiny": ("2.0", {"1.0": True, "2.0": True})}),
        ],
        previous=previous,
    )
    assert done.document["models"][0]["defaultVersion"] == "2.0"


def test_the_old_version_is_unregistered_only_after_every_pod_switched(make_md: Callable[..., dict[str, Any]]) -> None:
    spec = parse_spec(make_md(models=[{"name": "tiny", "versions": [V2]}]))  # 1.0 dropped from the spec
    previous = {"models": [{"name": "tiny", "defaultVersion": "1.0", "versions": [V1, V2]}]}
    switching = plan_for(
        spec,
        [
            pod("a", {"tiny": ("2.0", {"1.0": True, "2.0": True})}),
            pod("b", {"tiny": ("1.0", {"1.0": True, "2.0": True})}),
        ],
        previous=previous,
    )
    assert actions(switching) == [("set_default", "b", "tiny", "2.0")]
    # The old default is still what pod b serves: a pod restarting now must come back on it.
    (model,) = switching.document["models"]
    assert model["defaultVersion"] == "1.0" and model["versions"][0] == V1
    switched = plan_for(
        spec,
        [
            pod("a", {"tiny": ("2.0", {"1.0": True, "2.0": True})}),
            pod("b", {"tiny": ("2.0", {"1.0": True, "2.0": True})}),
        ],
        previous=previous,
    )
    assert actions(switched) == [("unregister", "a", "tiny", "1.0"), ("unregister", "b", "tiny", "1.0")]
    assert switched.document["models"][0]["versions"] == [V2]


def test_a_failed_load_keeps_the_old_default_and_blocks_the_cutover(make_md: Callable[..., dict[str, Any]]) -> None:
    spec = cutover_spec(make_md)
    failure = Failure(
        pod_uid="uid-b",
        model="tiny",
        version="2.0",
        url=V2["url"],
        reason="LOAD_FAILED",
        message="bad archive",
        permanent=True,
        generation=spec.generation,
    )
    pods = [pod("a", {"tiny": ("1.0", {"1.0": True, "2.0": True})}), pod("b", {"tiny": ("1.0", {"1.0": True})})]
    plan = plan_for(
        spec,
        pods,
        failures={("uid-b", "tiny", "2.0"): failure},
        previous={"models": [{"name": "tiny", "defaultVersion": "1.0", "versions": [V1, V2]}]},
    )
    assert actions(plan) == []  # not retried (permanent), and no SetDefault anywhere
    (model,) = plan.models
    assert model.blocked and model.state == "FailedToLoad" and "bad archive" in model.message
    assert model.default_version == "1.0"
    (doc_model,) = plan.document["models"]
    assert doc_model["defaultVersion"] == "1.0" and [v["version"] for v in doc_model["versions"]] == ["1.0"]


def test_a_permanent_failure_is_retried_once_the_spec_changes(make_md: Callable[..., dict[str, Any]]) -> None:
    spec = cutover_spec(make_md)
    failure = Failure(
        pod_uid="uid-a",
        model="tiny",
        version="2.0",
        url=V2["url"],
        reason="SOURCE_NOT_FOUND",
        message="missing",
        permanent=True,
        generation=spec.generation - 1,
    )
    plan = plan_for(spec, [pod("a", {"tiny": ("1.0", {"1.0": True})})], failures={("uid-a", "tiny", "2.0"): failure})
    assert actions(plan) == [("register", "a", "tiny", "2.0")]


def test_a_transient_failure_waits_for_its_backoff(make_md: Callable[..., dict[str, Any]]) -> None:
    spec = cutover_spec(make_md)
    failure = Failure(
        pod_uid="uid-a",
        model="tiny",
        version="2.0",
        url=V2["url"],
        reason="SOURCE_FETCH_FAILED",
        message="timeout",
        permanent=False,
        generation=spec.generation,
        retry_at=10.0,
    )
    pods = [pod("a", {"tiny": ("1.0", {"1.0": True})})]
    assert (
        actions(
            make_plan(
                spec,
                pods,
                failures={("uid-a", "tiny", "2.0"): failure},
                previous_document=None,
                now=5.0,
                drivable=["a"],
            )
        )
        == []
    )
    assert actions(
        make_plan(
            spec, pods, failures={("uid-a", "tiny", "2.0"): failure}, previous_document=None, now=10.0, drivable=["a"]
        )
    ) == [("register", "a", "tiny", "2.0")]
    assert not math.isinf(failure.retry_at)


def test_a_removed_model_is_unregistered_default_last(make_md: Callable[..., dict[str, Any]]) -> None:
    spec = parse_spec(make_md())
    plan = plan_for(spec, [pod("a", {"tiny": ("1.0", {"1.0": True}), "old": ("3", {"1": True, "3": True})})])
    assert actions(plan) == [("unregister", "a", "old", "1"), ("unregister", "a", "old", "3")]
    assert [m.state for m in plan.models] == ["Loaded", "Unloading"]
    assert [m["name"] for m in plan.document["models"]] == ["tiny"]


def test_workers_are_scaled_to_spec(make_md: Callable[..., dict[str, Any]]) -> None:
    spec = parse_spec(make_md(models=[{"name": "tiny", "versions": [V1], "minWorkers": 2, "maxWorkers": 3}]))
    plan = plan_for(spec, [pod("a", {"tiny": ("1.0", {"1.0": True})}, workers=1)])
    assert actions(plan) == [("scale", "a", "tiny", "1.0")]


def test_a_pod_that_is_still_starting_is_observed_but_not_changed(make_md: Callable[..., dict[str, Any]]) -> None:
    spec = parse_spec(make_md())
    pods = [pod("a", {}), pod("b", {})]
    plan = make_plan(spec, pods, failures={}, previous_document=None, now=0.0, drivable=["b"])
    assert actions(plan) == [("register", "b", "tiny", "1.0")]


def test_a_new_pod_from_scale_out_converges_like_the_others(make_md: Callable[..., dict[str, Any]]) -> None:
    spec = cutover_spec(make_md)
    done = {"tiny": ("2.0", {"1.0": True, "2.0": True})}
    fresh = {"tiny": ("1.0", {"1.0": True, "2.0": True})}  # loaded the ConfigMap written before the flip
    plan = plan_for(spec, [pod("a", done), pod("b", done), pod("c", fresh)])
    assert actions(plan) == [("set_default", "c", "tiny", "2.0")]


def test_an_unreachable_pod_holds_the_configmap_default(make_md: Callable[..., dict[str, Any]]) -> None:
    previous = {"models": [{"name": "tiny", "defaultVersion": "1.0", "versions": [V1, V2]}]}
    plan = plan_for(
        cutover_spec(make_md),
        [pod("a", {"tiny": ("2.0", {"1.0": True, "2.0": True})}), pod("b", None)],
        previous=previous,
    )
    assert plan.document["models"][0]["defaultVersion"] == "1.0"


def test_without_pods_the_document_is_the_spec(make_md: Callable[..., dict[str, Any]]) -> None:
    previous = {"models": [{"name": "tiny", "defaultVersion": "1.0", "versions": [V1]}]}
    plan = plan_for(cutover_spec(make_md), [], previous=previous)
    assert plan.document == {
        "models": [
            {
                "name": "tiny",
                "defaultVersion": "2.0",
                "versions": [V1, V2],
                "minWorkers": 1,
                "maxWorkers": 1,
                "batchSize": 1,
                "maxBatchDelayMs": 100,
                "responseTimeoutS": 120,
                "handler": "",
            }
        ]
    }


def test_planning_twice_gives_the_same_plan(make_md: Callable[..., dict[str, Any]]) -> None:
    pods = [pod("a", {"tiny": ("1.0", {"1.0": True, "2.0": True})}), pod("b", {"tiny": ("1.0", {"1.0": True})})]
    assert plan_for(cutover_spec(make_md), pods) == plan_for(cutover_spec(make_md), pods)
