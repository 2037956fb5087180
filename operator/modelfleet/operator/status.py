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
from .podcauses import PodCause, short, summarize
from .spec import DeploymentSpec
from .storage import StorageProblem


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
    causes: Sequence[PodCause] = ()
    """Why pods that are not Ready do not run (podcauses.py), at most one per pod."""
    settling: frozenset[str] = frozenset()
    """Ready pods whose management API failed only briefly (reconcile.py's grace): not yet called
    unreachable, and still counted as serving if they served on the previous pass."""
    served_before: frozenset[str] = frozenset()
    """Pods counted as serving on the previous pass."""
    storage: StorageProblem | None = None
    """What is wrong with spec.storage.credentialsSecret (storage.py), if anything."""


def current_defaults(plan: Plan) -> dict[str, str]:
    """Model → the default the fleet serves now (the desired-state document's: during a cut-over
    still the old one; the new one once every pod switched)."""
    return {str(m["name"]): str(m["defaultVersion"]) for m in plan.document.get("models", [])}


def serving_pods(spec: DeploymentSpec, plan: Plan, *, seen: Observation) -> frozenset[str]:
    """Ready pods whose default of every servable model is SERVING and is the fleet's current
    default or the desired one (a pod that switched first, mid-cut-over, still serves)."""
    current = current_defaults(plan)
    observed = {o.pod.name: o for o in seen.observed}
    result = set()
    for pod in seen.live_pods:
        o = observed.get(pod.name)
        if not pod.ready or o is None:
            continue
        if not o.reachable:
            if pod.name in seen.settling and pod.name in seen.served_before:
                result.add(pod.name)
            continue
        if all(_serves(o, m.name, {current[m.name], m.default_version}) for m in spec.models if m.name in current):
            result.add(pod.name)
    return frozenset(result)


def _serves(pod: ObservedPod, model: str, defaults: set[str]) -> bool:
    have = (pod.models or {}).get(model)
    if have is None or have.default_version not in defaults:
        return False
    version = have.versions.get(have.default_version)
    return version is not None and version.serving


def _pods_text(pods: Sequence[ObservedPod]) -> str:
    return "; ".join(f"{o.pod.name}: {o.error}" for o in sorted(pods, key=lambda o: o.pod.name)[:3])


def _degraded(plan: Plan, seen: Observation) -> Condition:
    failed = [m for m in plan.models if m.state == "FailedToLoad"]
    explained = {c.pod for c in seen.causes}
    if seen.child_error:
        return Condition(DEGRADED, True, "ChildWriteFailed", short(seen.child_error))
    if seen.storage is not None:
        # Before pod causes and load failures: it is what they come from (FailedMount, refused downloads).
        return Condition(DEGRADED, True, seen.storage.reason, short(seen.storage.message))
    if unverified := [o for o in seen.observed if o.unverified]:
        # Before the rest: whatever else is wrong, the operator cannot manage a pod it cannot verify.
        return Condition(DEGRADED, True, "PodUnverified", short(_pods_text(unverified)))
    if failed:
        return Condition(DEGRADED, True, "ModelLoadFailed", short("; ".join(f"{m.name} {m.message}" for m in failed)))
    if trouble := summarize(seen.causes):
        return Condition(DEGRADED, True, trouble[0], trouble[1])
    if crashing := [p for p in seen.live_pods if not p.ready and p.restarts > 0 and p.name not in explained]:
        return Condition(
            DEGRADED,
            True,
            "PodsRestarting",
            short("; ".join(f"{p.name} restarted {p.restarts} times (see its log)" for p in crashing[:3])),
        )
    unreachable = [
        o
        for o in seen.observed
        if not o.reachable and not o.unverified and o.pod.ready and o.pod.name not in seen.settling
    ]
    if unreachable:
        return Condition(DEGRADED, True, "PodUnreachable", short(_pods_text(unreachable)))
    if seen.action_errors:
        return Condition(DEGRADED, True, "ManagementCallFailed", short("; ".join(sorted(seen.action_errors)[:3])))
    return Condition(DEGRADED, False, "AsExpected", "")


def decide(spec: DeploymentSpec, plan: Plan, *, seen: Observation) -> list[Condition]:
    serving = serving_pods(spec, plan, seen=seen)
    converged = [p for p in seen.live_pods if p.ready and p.name in plan.converged_pods]
    blocked = [m for m in plan.models if m.blocked]
    current = current_defaults(plan)
    unservable = [m.name for m in spec.models if m.name not in current]
    starting = [p for p in seen.live_pods if not p.ready]
    degraded = _degraded(plan, seen)

    pending = [a.describe() for a in plan.actions]
    stalled = seen.storage is not None and (bool(starting) or len(seen.live_pods) != spec.replicas)
    if blocked:
        progressing = Condition(
            PROGRESSING,
            False,
            "BlockedByFailedLoad",
            short(
                "; ".join(
                    f"{m.name} stays on {m.default_version or 'no version'}: {m.desired_default_version} failed to load"
                    for m in blocked
                )
            ),
        )
    elif stalled and seen.storage is not None:
        # Pods cannot start (or load) until the Secret is fixed: no progress, and the reason says why.
        progressing = Condition(PROGRESSING, False, seen.storage.reason, short(seen.storage.message))
    elif pending:
        more = f" (+{len(pending) - 3} more)" if len(pending) > 3 else ""
        progressing = Condition(PROGRESSING, True, "RolloutInProgress", short("; ".join(pending[:3]) + more))
    elif len(seen.live_pods) != spec.replicas or starting:
        progressing = Condition(
            PROGRESSING,
            True,
            "PodsStarting" if starting else "ScalingPods",
            f"{len(serving)} of {spec.replicas} pods ready ({len(seen.live_pods)} exist)",
        )
    elif plan.waiting or len(converged) != len(seen.live_pods):
        progressing = Condition(PROGRESSING, True, "RolloutInProgress", "waiting for model workers to become ready")
    else:
        progressing = Condition(PROGRESSING, False, "RolloutComplete", "every pod serves every desired model")

    # Ready means "serves": a cut-over in progress (Progressing) or a blocked one (Degraded) leaves
    # it True while every pod serves the fleet's current default of every model.
    if spec.replicas == 0 and not seen.live_pods:
        ready = Condition(READY, True, "ScaledToZero", "no pods requested")
    elif len(serving) == spec.replicas == len(seen.live_pods) and not unservable:
        ready = Condition(
            READY, True, "AllPodsServing", f"{len(serving)} pods serve the current default of every model"
        )
    elif seen.storage is not None:
        ready = Condition(
            READY,
            False,
            seen.storage.reason,
            short(f"{len(serving)} of {spec.replicas} pods serve every model: {seen.storage.message}"),
        )
    elif unservable:
        ready = Condition(
            READY, False, "ModelLoadFailed", short(f"no version of {', '.join(unservable)} loads: {degraded.message}")
        )
    elif len(seen.live_pods) < spec.replicas or starting:
        ready = Condition(READY, False, "PodsNotReady", f"{len(serving)} of {spec.replicas} pods serve every model")
    else:
        ready = Condition(READY, False, "ModelsNotServing", f"{len(serving)} of {spec.replicas} pods serve every model")
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
        parts.append(
            f"{m.name}:{now}" if now == m.desired_default_version else f"{m.name}:{now}->{m.desired_default_version}"
        )
    return " ".join(parts)


def build(spec: DeploymentSpec, plan: Plan, *, seen: Observation, selector: str, pod_cap: int) -> dict[str, Any]:
    """The status body without conditions (reconcile.py merges those in)."""
    serving = serving_pods(spec, plan, seen=seen)
    return {
        "observedGeneration": spec.generation,
        "replicas": len(seen.live_pods),
        "readyReplicas": len(serving),
        "selector": selector,
        "modelsSummary": models_summary(plan),
        "models": [_model(m) for m in plan.models],
        **_pods(serving, seen, cap=pod_cap),
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
            {
                "version": v.version,
                "podsLoaded": v.pods_loaded,
                "state": v.state,
                **({"message": v.message} if v.message else {}),
            }
            for v in m.versions
        ],
    }
    if m.message:
        entry["message"] = m.message
    return entry


def _pods(serving: frozenset[str], seen: Observation, *, cap: int) -> dict[str, Any]:
    observed = {o.pod.name: o for o in seen.observed}
    errors: dict[str, str] = {c.pod: f"{c.reason}: {c.detail}" for c in seen.causes}
    for f in sorted(seen.failures.values(), key=lambda f: (f.model, f.version)):
        for pod in seen.live_pods:
            if pod.uid == f.pod_uid:
                errors[pod.name] = f"{f.model}/{f.version}: {f.message}"
    entries = []
    for pod in seen.live_pods:
        o = observed.get(pod.name)
        entry: dict[str, Any] = {"name": pod.name, "ready": pod.name in serving, "models": []}
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
