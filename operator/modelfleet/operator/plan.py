"""Observed pods + spec → the management calls to make, and the desired-state document to store.

Called by reconcile.py once per pass. Pure and level-based: it looks only at what the pods report
now, the spec, the remembered failures and the ConfigMap's current document, so running it twice
on the same input gives the same plan, and an operator restarted mid-cut-over simply continues.
The cut-over order (register everywhere → SERVING everywhere → SetDefault everywhere → unregister
old) falls out of the rules below; the ConfigMap's default flips only once every pod has switched.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelfleet.protos.contract import DesiredModelEntry, DesiredStateDocument, DesiredVersionEntry

from . import actions
from .actions import Action
from .observed import ObservedModel, ObservedPod, PodRef
from .spec import DeploymentSpec, ModelSpec


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
    document: DesiredStateDocument
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
    fleet = _Fleet(spec, [p for p in pods if p.reachable], drive=frozenset(drivable), failures=failures, now=now)
    document = desired_document(spec, pods, failures=failures, previous_document=previous_document)
    committed = {m["name"]: str(m["defaultVersion"]) for m in document["models"]}
    planned: list[Action] = []
    progress: list[ModelProgress] = []
    waiting = False
    for model in spec.models:
        loads, warming = _load_and_scale(fleet, model)
        planned += loads
        planned += _switch_default(fleet, model)
        planned += _drop_old_versions(fleet, model)
        waiting = waiting or warming
        committed_default = committed.get(model.name, "")
        progress.append(
            _model_progress(
                spec, model, pods=pods, reachable=fleet.reachable, failures=failures, committed=committed_default
            )
        )
    removals, removed = _remove_unwanted_models(fleet)
    planned += removals
    planned.sort(key=lambda a: (a.pod.name, a.order))  # stable: within a pod and kind, plan order
    return Plan(
        actions=tuple(planned),
        document=document,
        models=tuple(progress + removed),
        waiting=waiting,
        converged_pods=frozenset(
            p.pod.name
            for p in fleet.reachable
            if all(_serves_as_default(p, m.name, m.default_version) for m in spec.models)
        ),
    )


@dataclass(frozen=True)
class _Fleet:
    """What every step of one plan reads."""

    spec: DeploymentSpec
    reachable: Sequence[ObservedPod]
    drive: frozenset[str]
    failures: Mapping[FailureKey, Failure]
    now: float

    def blocked(self, pod: PodRef, model: ModelSpec, version: str) -> Failure | None:
        failure = self.failures.get((pod.uid, model.name, version))
        entry = model.version(version)
        if failure is None or entry is None:
            return None
        return failure if failure.blocks(url=entry.url, generation=self.spec.generation, now=self.now) else None


def _serves(pod: ObservedPod, model: str, version: str) -> bool:
    observed = _loaded(pod, model)
    return observed is not None and version in observed.versions and observed.versions[version].serving


def _serves_as_default(pod: ObservedPod, model: str, version: str) -> bool:
    observed = _loaded(pod, model)
    return observed is not None and observed.default_version == version and _serves(pod, model, version)


def _load_and_scale(fleet: _Fleet, model: ModelSpec) -> tuple[list[Action], bool]:
    """Register missing versions (unless a failure blocks them), scale held ones; (actions, whether
    a version is registered but its workers are not READY yet: no event will tell us)."""
    planned: list[Action] = []
    waiting = False
    for pod in fleet.reachable:
        if pod.pod.name not in fleet.drive:
            continue
        observed = _loaded(pod, model.name)
        versions = observed.versions if observed else {}
        for entry in model.versions:
            have = versions.get(entry.version)
            if have is None:
                if fleet.blocked(pod.pod, model, entry.version) is None:
                    planned.append(actions.register(pod.pod, model, entry))
            elif (have.min_workers, have.max_workers) != (model.min_workers, model.max_workers):
                planned.append(actions.scale(pod.pod, model, entry.version))
            elif not have.serving:
                waiting = True
    return planned, waiting


def _switch_default(fleet: _Fleet, model: ModelSpec) -> list[Action]:
    """SetDefault only once every reachable pod serves the target version."""
    target = model.default_version
    if not fleet.reachable or not all(_serves(p, model.name, target) for p in fleet.reachable):
        return []
    return [
        actions.SetDefault(pod.pod, model.name, target)
        for pod in fleet.reachable
        if pod.pod.name in fleet.drive
        and (observed := _loaded(pod, model.name)) is not None
        and observed.default_version != target
    ]


def _drop_old_versions(fleet: _Fleet, model: ModelSpec) -> list[Action]:
    """Old versions go only once every pod serves the new default (cut-over finished)."""
    target = model.default_version
    if not all((o := _loaded(p, model.name)) is not None and o.default_version == target for p in fleet.reachable):
        return []
    planned: list[Action] = []
    for pod in fleet.reachable:
        observed = _loaded(pod, model.name)
        if pod.pod.name not in fleet.drive or observed is None:
            continue
        for version in sorted(observed.versions):
            if model.version(version) is None and version != observed.default_version:
                planned.append(actions.Unregister(pod.pod, model.name, version))
    return planned


def _remove_unwanted_models(fleet: _Fleet) -> tuple[list[Action], list[ModelProgress]]:
    """Unregister every version of models the spec no longer lists; report them as Unloading."""
    wanted = {m.name for m in fleet.spec.models}
    planned: list[Action] = []
    removed: dict[str, int] = {}
    for pod in fleet.reachable:
        for name, observed in sorted((pod.models or {}).items()):
            if name in wanted:
                continue
            removed[name] = removed.get(name, 0) + 1
            if pod.pod.name not in fleet.drive:
                continue
            # The default goes last: the server refuses it while other versions remain.
            others = [v for v in sorted(observed.versions) if v != observed.default_version]
            for version in others + [observed.default_version]:
                planned.append(actions.Unregister(pod.pod, name, version))
    progress = [
        ModelProgress(
            name=name, default_version="", desired_default_version="", pods_serving=0, pods=count, state="Unloading"
        )
        for name, count in sorted(removed.items())
    ]
    return planned, progress


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
            if (o := _loaded(p, model.name)) is not None
            and (v := o.versions.get(entry.version)) is not None
            and v.serving
        )
        failed = [
            f
            for f in failures.values()
            if f.model == model.name
            and f.version == entry.version
            and f.url == entry.url
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
) -> DesiredStateDocument:
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
    failed = {(f.model, f.version, f.url) for f in failures.values() if f.permanent and f.generation == spec.generation}
    models: list[DesiredModelEntry] = []
    for model in spec.models:
        target = model.default_version
        switched = all(
            p.reachable and (o := _loaded(p, model.name)) is not None and o.default_version == target for p in pods
        )
        before = previous.get(model.name)
        default = target
        entries: list[DesiredVersionEntry] = []
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
            {"version": v.version, "url": v.url} for v in model.versions if (model.name, v.version, v.url) not in failed
        ]
        if not entries:
            continue
        if default not in {e.get("version") for e in entries}:
            default = entries[0].get("version", target)
        entry: DesiredModelEntry = {
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
        if model.signature is not None:  # absent, not null: the server then derives the signature itself
            entry["signature"] = copy.deepcopy(model.signature)
        models.append(entry)
    return {"models": models}
