"""The ModelDeployment's status: per-model and per-pod truth plus the decided conditions.

reconcile.py calls build() after planning (and again after acting). Pure and deterministic: the
same observation gives the same dict (sorted, capped, no clocks), so an idle pass writes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .conditions import DEGRADED, PROGRESSING, READY, Condition
from .observed import ObservedPod, PodRef
from .plan import Failure, FailureKey, ModelProgress, Plan
from .spec import DeploymentSpec


@dataclass(frozen=True)
class Observation:
    """Everything one pass learned, beyond the plan."""

    live_pods: Sequence[PodRef]
    """Pods of the fleet that are not terminating (running or not)."""
    observed: Sequence[ObservedPod]
    """Pods whose management API was asked (running, with an address)."""
    failures: Mapping[FailureKey, Failure]
    child_error: str | None = None
    """A child object could not be written (message), else None."""
    action_errors: Sequence[str] = ()
    """Messages of management calls of this pass that failed with a non-load reason."""


def decide(spec: DeploymentSpec, plan: Plan, *, seen: Observation) -> list[Condition]:
    ready_pods = [p for p in seen.live_pods if p.ready and p.name in plan.converged_pods]
    failed = [m for m in plan.models if m.state == "FailedToLoad"]
    blocked = [m for m in plan.models if m.blocked]
    unreachable = [o for o in seen.observed if not o.reachable and o.pod.ready]
    starting = [p for p in seen.live_pods if not p.ready]

    if seen.child_error:
        degraded = Condition(DEGRADED, True, "ChildWriteFailed", seen.child_error)
    elif unverified := [o for o in seen.observed if o.unverified]:
        # Before the rest: whatever else is wrong, the operator cannot manage a pod it cannot verify.
        degraded = Condition(
            DEGRADED,
            True,
            "PodUnverified",
            "; ".join(f"{o.pod.name}: {o.error}" for o in sorted(unverified, key=lambda o: o.pod.name)[:3]),
        )
    elif failed:
        degraded = Condition(DEGRADED, True, "ModelLoadFailed", "; ".join(f"{m.name} {m.message}" for m in failed))
    elif crashing := [p for p in seen.live_pods if not p.ready and p.restarts > 0]:
        degraded = Condition(
            DEGRADED,
            True,
            "PodsRestarting",
            "; ".join(f"{p.name} restarted {p.restarts} times (see its log)" for p in crashing[:3]),
        )
    elif unreachable:
        degraded = Condition(
            DEGRADED,
            True,
            "PodUnreachable",
            "; ".join(f"{o.pod.name}: {o.error}" for o in sorted(unreachable, key=lambda o: o.pod.name)[:3]),
        )
    elif seen.action_errors:
        degraded = Condition(DEGRADED, True, "ManagementCallFailed", "; ".join(sorted(seen.action_errors)[:3]))
    else:
        degraded = Condition(DEGRADED, False, "AsExpected", "")

    pending = [a.describe() for a in plan.actions]
    if blocked:
        progressing = Condition(
            PROGRESSING,
            False,
            "BlockedByFailedLoad",
            "; ".join(f"{m.name} stays on {m.default_version or 'its previous default'}: {m.message}" for m in blocked),
        )
    elif pending:
        more = f" (+{len(pending) - 3} more)" if len(pending) > 3 else ""
        progressing = Condition(PROGRESSING, True, "RolloutInProgress", "; ".join(pending[:3]) + more)
    elif len(seen.live_pods) != spec.replicas or starting:
        progressing = Condition(
            PROGRESSING,
            True,
            "PodsStarting" if starting else "ScalingPods",
            f"{len(ready_pods)} of {spec.replicas} pods ready ({len(seen.live_pods)} exist)",
        )
    elif plan.waiting or len(ready_pods) != len(seen.live_pods):
        progressing = Condition(PROGRESSING, True, "RolloutInProgress", "waiting for model workers to become ready")
    else:
        progressing = Condition(PROGRESSING, False, "RolloutComplete", "every pod serves every desired model")

    all_ready = len(ready_pods) == spec.replicas == len(seen.live_pods)
    if all_ready and spec.replicas == 0:
        ready = Condition(READY, True, "ScaledToZero", "no pods requested")
    elif all_ready:
        ready = Condition(READY, True, "AllPodsServing", f"{len(ready_pods)} pods serve every desired model")
    elif blocked or failed:
        ready = Condition(READY, False, "ModelLoadFailed", degraded.message)
    elif len(seen.live_pods) < spec.replicas or starting:
        ready = Condition(READY, False, "PodsNotReady", f"{len(ready_pods)} of {spec.replicas} pods serve every model")
    else:
        ready = Condition(READY, False, "ModelsNotServing", f"{len(ready_pods)} of {spec.replicas} pods serve every model")
    return [ready, progressing, degraded]


def invalid_spec_conditions(message: str) -> list[Condition]:
    return [
        Condition(READY, False, "InvalidSpec", message),
        Condition(PROGRESSING, False, "InvalidSpec", "fix the spec; running children are left as they are"),
        Condition(DEGRADED, True, "InvalidSpec", message),
    ]


def models_summary(plan: Plan) -> str:
    parts = []
    for m in plan.models:
        if m.state == "Unloading":
            continue
        now = m.default_version or "-"
        parts.append(f"{m.name}:{now}" if now == m.desired_default_version else f"{m.name}:{now}->{m.desired_default_version}")
    return " ".join(parts)


def build(spec: DeploymentSpec, plan: Plan, *, seen: Observation, selector: str, pod_cap: int) -> dict[str, Any]:
    """The status body without conditions (reconcile.py merges those in)."""
    ready_pods = [p for p in seen.live_pods if p.ready and p.name in plan.converged_pods]
    return {
        "observedGeneration": spec.generation,
        "replicas": len(seen.live_pods),
        "readyReplicas": len(ready_pods),
        "selector": selector,
        "modelsSummary": models_summary(plan),
        "models": [_model(m) for m in plan.models],
        **_pods(plan, seen, cap=pod_cap),
    }


def _model(m: ModelProgress) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": m.name,
        "defaultVersion": m.default_version,
        "desiredDefaultVersion": m.desired_default_version,
        "podsServing": m.pods_serving,
        "pods": m.pods,
        "state": m.state,
        "versions": [
            {"version": v.version, "podsLoaded": v.pods_loaded, "state": v.state, **({"message": v.message} if v.message else {})}
            for v in m.versions
        ],
    }
    if m.message:
        entry["message"] = m.message
    return entry


def _pods(plan: Plan, seen: Observation, *, cap: int) -> dict[str, Any]:
    observed = {o.pod.name: o for o in seen.observed}
    errors: dict[str, str] = {}
    for f in sorted(seen.failures.values(), key=lambda f: (f.model, f.version)):
        for pod in seen.live_pods:
            if pod.uid == f.pod_uid:
                errors[pod.name] = f"{f.model}/{f.version}: {f.message}"
    entries = []
    for pod in seen.live_pods:
        o = observed.get(pod.name)
        entry: dict[str, Any] = {"name": pod.name, "ready": pod.ready and pod.name in plan.converged_pods, "models": []}
        if o is not None and o.models is not None:
            for name, model in sorted(o.models.items()):
                default = model.versions.get(model.default_version)
                entry["models"].append(
                    {
                        "name": name,
                        "defaultVersion": model.default_version,
                        "versions": sorted(model.versions),
                        "readyWorkers": default.ready_workers if default else 0,
                        "workers": default.workers if default else 0,
                    }
                )
        error = (o.error if o is not None and o.error else None) or errors.get(pod.name)
        if error:
            entry["lastError"] = error
        entries.append(entry)
    # Failing pods first, then not-ready ones, then by name: the cap keeps the interesting ones.
    entries.sort(key=lambda e: ("lastError" not in e, e["ready"], e["name"]))
    return {"pods": entries[:cap], "podsOmitted": max(0, len(entries) - cap)}
