"""Observed pods + spec → the management calls to make, and the desired-state document to store.

Called by reconcile.py once per pass. Pure and level-based: it looks only at what the pods report
now, the spec, the remembered failures and the ConfigMap's current document, so running it twice
on the same input gives the same plan, and an operator restarted mid-cut-over simply continues.
The cut-over order (register everywhere → SERVING everywhere → SetDefault everywhere → unregister
old) falls out of the rules below; the ConfigMap's default flips only once every pod has switched.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .observed import ObservedModel, ObservedPod, PodRef
from .spec import DeploymentSpec, ModelSpec

ActionKind = Literal["register", "scale", "set_default", "unregister"]
_ORDER: dict[str, int] = {"register": 0, "scale": 1, "set_default": 2, "unregister": 3}


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    pod: PodRef
    model: str
    version: str

    def describe(self) -> str:
        verb = {"register": "register", "scale": "scale", "set_default": "make default", "unregister": "unregister"}
        return f"{verb[self.kind]} {self.model}/{self.version} on {self.pod.name}"


@dataclass(frozen=True)
class Failure:
    """A management call that failed for one (pod, model, version, url)."""

    pod_uid: str
    model: str
    version: str
    url: str
    reason: str
    message: str
    permanent: bool
    generation: int
    attempts: int = 1
    retry_at: float = math.inf
    """For transient failures: when the next attempt may start (monotonic clock)."""

    def blocks(self, *, url: str, generation: int, now: float) -> bool:
        """Whether this failure still stops a new attempt with `url` at spec `generation`."""
        if url != self.url:
            return False  # a new source is a new attempt
        if self.permanent:
            return generation == self.generation  # not retried until the spec changes
        return now < self.retry_at


FailureKey = tuple[str, str, str]  # (pod uid, model, version)


@dataclass(frozen=True)
class VersionProgress:
    version: str
    pods_loaded: int
    state: str
    message: str = ""


@dataclass(frozen=True)
class ModelProgress:
    name: str
    default_version: str
    desired_default_version: str
    pods_serving: int
    pods: int
    state: str
    message: str = ""
    versions: tuple[VersionProgress, ...] = ()
    blocked: bool = False
    """The desired default failed to load somewhere, so the cut-over (or first load) cannot finish."""


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    document: dict[str, Any]
    """The desired-state file for the ConfigMap."""
    models: tuple[ModelProgress, ...]
    waiting: bool = False
    """Something will change that no Kubernetes event announces (workers warming up): poll."""
    converged_pods: frozenset[str] = field(default_factory=frozenset)
    """Names of pods that serve every desired model at its desired default version."""


def _loaded(pod: ObservedPod, model: str) -> ObservedModel | None:
    return (pod.models or {}).get(model)


def make_plan(
    spec: DeploymentSpec,
    pods: Sequence[ObservedPod],
    *,
    failures: Mapping[FailureKey, Failure],
    previous_document: Mapping[str, Any] | None,
    now: float,
    drivable: Iterable[str] = (),
) -> Plan:
    """`pods`: every live pod (reachable or not); `drivable`: names of pods that may be changed
    (their startup finished: a pod still loading its desired-state file is only observed)."""
    drive = set(drivable)
    reachable = [p for p in pods if p.reachable]
    document = desired_document(spec, pods, failures=failures, previous_document=previous_document)
    committed = {m["name"]: str(m["defaultVersion"]) for m in document["models"]}
    actions: list[Action] = []
    progress: list[ModelProgress] = []
    waiting = False
    converged = {p.pod.name for p in reachable}

    def blocked(pod: PodRef, model: ModelSpec, version: str) -> Failure | None:
        failure = failures.get((pod.uid, model.name, version))
        entry = model.version(version)
        if failure is None or entry is None:
            return None
        return failure if failure.blocks(url=entry.url, generation=spec.generation, now=now) else None

    for model in spec.models:
        target = model.default_version
        for pod in reachable:
            observed = _loaded(pod, model.name)
            versions = observed.versions if observed else {}
            if not (observed and observed.default_version == target and versions.get(target, None) and versions[target].serving):
                converged.discard(pod.pod.name)
            if pod.pod.name not in drive:
                continue
            for entry in model.versions:
                have = versions.get(entry.version)
                if have is None:
                    if blocked(pod.pod, model, entry.version) is None:
                        actions.append(Action("register", pod.pod, model.name, entry.version))
                elif (have.min_workers, have.max_workers) != (model.min_workers, model.max_workers):
                    actions.append(Action("scale", pod.pod, model.name, entry.version))
                elif not have.serving:
                    waiting = True  # registered, workers not READY yet: no event will tell us
        target_everywhere = bool(reachable) and all(
            (o := _loaded(p, model.name)) is not None and target in o.versions and o.versions[target].serving
            for p in reachable
        )
        if target_everywhere:
            for pod in reachable:
                observed = _loaded(pod, model.name)
                if pod.pod.name in drive and observed is not None and observed.default_version != target:
                    actions.append(Action("set_default", pod.pod, model.name, target))
        switched = all((o := _loaded(p, model.name)) is not None and o.default_version == target for p in reachable)
        if switched:
            # Old versions go only once every pod serves the new default (cut-over finished).
            for pod in reachable:
                observed = _loaded(pod, model.name)
                if pod.pod.name not in drive or observed is None:
                    continue
                for version in sorted(observed.versions):
                    if model.version(version) is None and version != observed.default_version:
                        actions.append(Action("unregister", pod.pod, model.name, version))
        progress.append(_model_progress(spec, model, pods=pods, reachable=reachable, failures=failures, committed=committed.get(model.name, "")))

    wanted = {m.name for m in spec.models}
    removed: dict[str, int] = {}
    for pod in reachable:
        for name, observed in sorted((pod.models or {}).items()):
            if name in wanted:
                continue
            removed[name] = removed.get(name, 0) + 1
            if pod.pod.name not in drive:
                continue
            # The default goes last: the server refuses it while other versions remain.
            others = [v for v in sorted(observed.versions) if v != observed.default_version]
            for version in others + [observed.default_version]:
                actions.append(Action("unregister", pod.pod, name, version))
    for name, count in sorted(removed.items()):
        progress.append(
            ModelProgress(
                name=name, default_version="", desired_default_version="", pods_serving=0, pods=count, state="Unloading"
            )
        )

    actions.sort(key=lambda a: (a.pod.name, _ORDER[a.kind]))
    return Plan(
        actions=tuple(actions),
        document=document,
        models=tuple(progress),
        waiting=waiting,
        converged_pods=frozenset(converged),
    )


def _model_progress(
    spec: DeploymentSpec,
    model: ModelSpec,
    *,
    pods: Sequence[ObservedPod],
    reachable: Sequence[ObservedPod],
    failures: Mapping[FailureKey, Failure],
    committed: str,
) -> ModelProgress:
    """`committed`: the default the ConfigMap holds (what the fleet serves when no pod says more)."""
    target = model.default_version
    versions: list[VersionProgress] = []
    last_failure = ""
    target_failed = False
    for entry in model.versions:
        loaded = sum(
            1
            for p in reachable
            if (o := _loaded(p, model.name)) is not None and (v := o.versions.get(entry.version)) is not None and v.serving
        )
        failed = [
            f
            for f in failures.values()
            if f.model == model.name and f.version == entry.version and f.url == entry.url
            and (f.permanent and f.generation == spec.generation or not f.permanent)
        ]
        state = "Loaded" if loaded == len(pods) else "Loading"
        message = ""
        if failed:
            state = "FailedToLoad"
            message = failed[-1].message
            last_failure = f"{entry.version}: {message}"
            target_failed = target_failed or entry.version == target
        versions.append(VersionProgress(entry.version, loaded, state, message))
    defaults = {o.default_version for p in reachable if (o := _loaded(p, model.name)) is not None}
    serving = sum(
        1
        for p in reachable
        if (o := _loaded(p, model.name)) is not None
        and o.default_version == target
        and (v := o.versions.get(target)) is not None
        and v.serving
    )
    if last_failure:
        state = "FailedToLoad"
    elif pods and serving == len(pods):
        state = "Loaded"
    else:
        state = "Loading" if pods else "Loaded"
    return ModelProgress(
        name=model.name,
        default_version=defaults.pop() if len(defaults) == 1 else (committed if not defaults else "mixed"),
        desired_default_version=target,
        pods_serving=serving,
        pods=len(pods),
        state=state,
        message=last_failure,
        versions=tuple(versions),
        blocked=target_failed,
    )


def desired_document(
    spec: DeploymentSpec,
    pods: Sequence[ObservedPod],
    *,
    failures: Mapping[FailureKey, Failure],
    previous_document: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """What a new or restarted pod loads at start (contract: the desired-state JSON).

    A model's default is the spec's only once every live pod has switched to it (or there is no
    pod); until then the previous document's default stays, with its source, so a pod that
    restarts mid-cut-over comes back on the default the rest of the fleet still serves. Versions
    that failed permanently are left out, so a bad source cannot keep new pods from starting.
    """
    previous = {
        str(m.get("name")): m
        for m in (previous_document or {}).get("models", [])
        if isinstance(m, Mapping) and isinstance(m.get("name"), str)
    }
    failed = {
        (f.model, f.version, f.url) for f in failures.values() if f.permanent and f.generation == spec.generation
    }
    models: list[dict[str, Any]] = []
    for model in spec.models:
        target = model.default_version
        switched = all(p.reachable and (o := _loaded(p, model.name)) is not None and o.default_version == target for p in pods)
        before = previous.get(model.name)
        default = target
        entries: list[dict[str, str]] = []
        if before is not None and not switched and isinstance(before.get("defaultVersion"), str):
            default = str(before["defaultVersion"])
            if model.version(default) is None:
                # The old default is gone from the spec but still serves: keep its source until the switch.
                old = next(
                    (v for v in before.get("versions", []) if isinstance(v, Mapping) and v.get("version") == default),
                    None,
                )
                if old is not None and isinstance(old.get("url"), str):
                    entries.append({"version": default, "url": str(old["url"])})
                else:
                    default = target
        entries += [
            {"version": v.version, "url": v.url}
            for v in model.versions
            if (model.name, v.version, v.url) not in failed
        ]
        if not entries:
            continue
        if default not in {e["version"] for e in entries}:
            default = entries[0]["version"]
        models.append(
            {
                "name": model.name,
                "defaultVersion": default,
                "versions": entries,
                "minWorkers": model.min_workers,
                "maxWorkers": model.max_workers,
                "batchSize": model.batch_size,
                "maxBatchDelayMs": model.max_batch_delay_ms,
                "responseTimeoutS": model.response_timeout_s,
                "handler": model.handler,
            }
        )
    return {"models": models}
