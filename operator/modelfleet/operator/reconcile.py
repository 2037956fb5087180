"""One reconcile pass for one ModelDeployment: observe → plan → apply; returns when to come back.

The work queue (runtime.py) calls Reconciler.reconcile(key) for CR events, pod events and resyncs.
A pass reads the object, its children and every live pod's models, plans with plan.py, writes the
children and the status only where they differ (an idle pass writes nothing), then makes the
planned management calls. It never waits for a state: it returns a requeue delay instead.
It sequences; the work lives elsewhere: pods are read in observed.py, the token Secret in
tokens.py, Events in events.py, and each planned call is made by dispatch.py.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from . import children, dispatch, events, failures, podcauses, status, storage, tokens, unreachable
from .actions import Action, Register, SetDefault
from .bodies import ConfigMap, ModelDeployment, ObjectMeta, Pod, Secret
from .conditions import Condition, merge, notices
from .events import EventRecorder
from .kube import Kube, KubeError
from .observed import ObservedPod, PodRef, has_started, is_live, is_running, pod_ref
from .patches import child_patch, status_changed
from .plan import Failure, FailureKey, Plan, make_plan
from .podclient import PodCallError, PodClients
from .settings import OperatorSettings
from .spec import DeploymentSpec, InvalidSpec, parse_spec

log = logging.getLogger(__name__)

Key = tuple[str, str]
Json = dict[str, Any]


@dataclass
class Memory:
    """What the operator remembers about one object between passes (lost on restart, by design:
    everything that matters is re-observed; only retry pacing starts over)."""

    uid: str
    clients: PodClients
    failures: dict[FailureKey, Failure] = field(default_factory=dict)
    action_errors: list[str] = field(default_factory=list)
    last_actions: tuple[tuple[str, str, str, str], ...] = ()
    repeats: int = 0
    seeded: bool = False
    unreachable: dict[str, tuple[float, int]] = field(default_factory=dict)
    """Ready pods (uid) whose management API failed: (first failure, consecutive passes)."""
    served: frozenset[str] = frozenset()
    """Pods that served on the previous pass (held through a brief unreachable spell)."""


@dataclass
class PassResult:
    """What one pass did (tests and the benchmark read it)."""

    writes: int = 0
    actions: int = 0
    requeue_after: float | None = None


@dataclass(frozen=True)
class _Fleet:
    """What a pass saw before planning."""

    token: str | None
    token_error: str | None
    refs: Sequence[PodRef]
    """Every live pod, by name."""
    observed: Sequence[ObservedPod]
    """What each running pod serves (or why it could not be read)."""
    drivable: frozenset[str]
    """Names of pods whose startup finished (the only ones a plan may change)."""
    causes: tuple[podcauses.PodCause, ...]
    stuck: float | None
    """When to look at pods that are not Ready again (None: all are Ready)."""
    storage_problem: storage.StorageProblem | None = None
    """What is wrong with spec.storage.credentialsSecret (None: nothing, or none is named)."""


def _now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def management_address(ip: str) -> str:
    return f"[{ip}]:{children.MANAGEMENT_PORT}" if ":" in ip else f"{ip}:{children.MANAGEMENT_PORT}"


class Reconciler:
    def __init__(self, kube: Kube, settings: OperatorSettings, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.kube = kube
        self.settings = settings
        self._clock = clock
        self._memory: dict[Key, Memory] = {}
        self.last: dict[Key, PassResult] = {}
        self.events = EventRecorder(kube)

    async def close(self) -> None:
        for memory in self._memory.values():
            await memory.clients.close()
        self._memory.clear()

    async def forget(self, key: Key) -> None:
        memory = self._memory.pop(key, None)
        if memory is not None:
            await memory.clients.close()

    async def reconcile(self, key: Key) -> float | None:
        result = PassResult()
        try:
            result.requeue_after = await self._reconcile(key, result)
        finally:
            if key in self._memory:
                self.last[key] = result
            else:
                self.last.pop(key, None)  # deleted (or never seen): keep nothing about it
        return result.requeue_after

    async def _reconcile(self, key: Key, result: PassResult) -> float | None:
        found = await self._current(key, result)
        if found is None:
            return None
        body, memory = found
        spec = await self._spec(body, memory, result)
        if spec is None:
            return None
        fleet = await self._look(spec, memory, result)
        failures.forget_stale(memory.failures, spec, live_uids={r.uid for r in fleet.refs})
        current_cm = cast(
            ConfigMap | None, await self.kube.get("ConfigMap", spec.namespace, children.names(spec.name)["configmap"])
        )
        previous_document = _document(current_cm)
        now = self._clock()
        settled = unreachable.settle(
            memory.unreachable,
            fleet.observed,
            now=now,
            grace_s=self.settings.reconcile.pod_unreachable_grace_s,
            min_delay_s=self.settings.reconcile.requeue_after_action_s,
        )
        memory.unreachable = settled.spells
        plan = make_plan(
            spec,
            fleet.observed,
            failures=memory.failures,
            previous_document=previous_document,
            now=now,
            drivable=fleet.drivable,
        )
        child_error, failed_kinds = await self._write_children(body, spec, plan, current_cm, result)
        body = await self._report(
            body,
            spec,
            plan=plan,
            memory=memory,
            fleet=fleet,
            settled=settled,
            child_error=child_error or fleet.token_error,
            result=result,
        )
        if "ConfigMap" not in failed_kinds:  # else the next pass sees the same change and tells it then
            await events.post_cutovers(self.events, body, previous_document, plan.document)
        if not plan.actions:
            return self._idle(plan, memory, now=now, settled=settled, stuck=fleet.stuck)
        return await self._act_and_back_off(spec, plan, memory, token=fleet.token or "", result=result)

    # Steps of a pass ---------------------------------------------------------------------------

    async def _current(self, key: Key, result: PassResult) -> tuple[ModelDeployment, Memory] | None:
        """The object and its memory, or None when it is gone or going (its memory is dropped)."""
        namespace, name = key
        body = cast(ModelDeployment | None, await self.kube.get("ModelDeployment", namespace, name))
        if body is None:
            memory = self._memory.get(key)
            if memory is not None:
                # A pass that was in flight when the resource was deleted may have re-created a child
                # after the garbage collector ran; remove what still points at the deleted owner.
                await self._delete_orphans(namespace, name, memory.uid, result)
            await self.forget(key)
            return None
        if body.get("metadata", {}).get("deletionTimestamp"):
            await self.forget(key)
            return None  # children go by owner reference (garbage collection)
        uid = str(body["metadata"].get("uid"))
        memory = self._memory.get(key)
        if memory is None or memory.uid != uid:
            if memory is not None:
                await memory.clients.close()
            memory = self._memory[key] = Memory(uid=uid, clients=PodClients(self.settings.pods))
        return body, memory

    async def _spec(self, body: ModelDeployment, memory: Memory, result: PassResult) -> DeploymentSpec | None:
        """The parsed spec, or None after reporting why it is invalid in the status."""
        try:
            spec = parse_spec(body, default_image=self.settings.fleet.default_server_image)
        except InvalidSpec as exc:
            message = "; ".join(exc.problems)
            generation = int(body["metadata"].get("generation") or 0)
            await self._write_status(
                body, {"observedGeneration": generation}, status.invalid_spec_conditions(message), result
            )
            return None
        if not memory.seeded:
            failures.seed_from_status(memory.failures, spec, current=body.get("status") or {})
            memory.seeded = True
        return spec

    async def _look(self, spec: DeploymentSpec, memory: Memory, result: PassResult) -> _Fleet:
        """The token, the live pods, what each running pod serves and why the others do not run."""
        read = await tokens.management_token(self.kube, spec)
        result.writes += read.writes
        listed = await self.kube.list_objects("Pod", spec.namespace, label_selector=children.label_selector(spec))
        pods = [p for p in cast(list[Pod], listed) if is_live(p)]
        refs = sorted((pod_ref(p) for p in pods), key=lambda r: r.name)
        running = [p for p in pods if is_running(p)]
        if read.token:
            observed = await self._observe(memory, running, read.token)
        else:  # unreadable, not absent: a plan must not read "no pod" as "every pod switched"
            observed = [ObservedPod(pod_ref(p), None, error=read.error) for p in running]
        drivable = {pod_ref(p).name for p in running if has_started(p)} if read.token else set()
        causes, stuck = await self._pod_causes(spec.namespace, pods)
        problem = await self._storage_problem(spec)
        if problem is not None and spec.replicas and stuck is None:
            stuck = self.settings.reconcile.stuck_pod_poll_s  # a fixed Secret starts no pass by itself
        return _Fleet(read.token, read.error, refs, observed, frozenset(drivable), tuple(causes), stuck, problem)

    async def _storage_problem(self, spec: DeploymentSpec) -> storage.StorageProblem | None:
        """The credentials Secret as read now (a Secret the operator may not read is no finding:
        the pods' own FailedMount events still tell)."""
        name = spec.storage.credentials_secret
        if not name:
            return None
        try:
            secret = cast(Secret | None, await self.kube.get("Secret", spec.namespace, name))
        except KubeError as exc:
            log.warning("Reading Secret %s/%s (spec.storage.credentialsSecret) failed: %s", spec.namespace, name, exc)
            return None
        return storage.problem_of(spec, secret)

    async def _report(
        self,
        body: ModelDeployment,
        spec: DeploymentSpec,
        *,
        plan: Plan,
        memory: Memory,
        fleet: _Fleet,
        settled: unreachable.Settled,
        child_error: str | None,
        result: PassResult,
    ) -> ModelDeployment:
        """Write the status of this pass (and the Events of its condition changes)."""
        seen = status.Observation(
            live_pods=fleet.refs,
            observed=fleet.observed,
            failures=dict(memory.failures),
            child_error=child_error,
            action_errors=tuple(memory.action_errors) if plan.actions else (),
            causes=fleet.causes,
            settling=settled.settling,
            served_before=memory.served,
            storage=fleet.storage_problem,
        )
        memory.served = status.serving_pods(spec, plan, seen=seen)
        return await self._write_status(
            body,
            status.build(
                spec,
                plan,
                seen=seen,
                selector=children.label_selector(spec),
                pod_cap=self.settings.reconcile.status_pod_cap,
            ),
            status.decide(spec, plan, seen=seen),
            result,
        )

    def _idle(
        self, plan: Plan, memory: Memory, *, now: float, settled: unreachable.Settled, stuck: float | None
    ) -> float | None:
        memory.action_errors.clear()
        memory.last_actions, memory.repeats = (), 0
        delays = [d for d in (self._idle_requeue(plan, memory, now), settled.recheck_after, stuck) if d is not None]
        return min(delays) if delays else None

    async def _act_and_back_off(
        self, spec: DeploymentSpec, plan: Plan, memory: Memory, *, token: str, result: PassResult
    ) -> float:
        signature = tuple((a.kind, a.pod.uid, a.model, a.version) for a in plan.actions)
        memory.repeats = memory.repeats + 1 if signature == memory.last_actions else 0
        memory.last_actions = signature
        result.actions = len(plan.actions)
        await self._act(spec, plan, memory, token)
        # The next pass observes what these calls did; a plan that keeps repeating backs off.
        delay = self.settings.reconcile.requeue_after_action_s * (2 ** min(memory.repeats, 10))
        return float(min(delay, 30.0))

    # Observation ------------------------------------------------------------------------------

    async def _observe(self, memory: Memory, running: Sequence[Pod], token: str) -> list[ObservedPod]:
        limit = asyncio.Semaphore(self.settings.reconcile.pod_call_concurrency)
        addresses = {management_address(pod_ref(p).ip): p for p in running}
        await memory.clients.retain(set(addresses))

        async def one(address: str, pod: Pod) -> ObservedPod:
            async with limit:
                ref = pod_ref(pod)
                return await memory.clients.get(address, token, pod_uid=ref.uid).observe(ref)

        results = await asyncio.gather(*(one(a, p) for a, p in addresses.items()))
        return sorted(results, key=lambda o: o.pod.name)

    async def _pod_causes(self, namespace: str, pods: Sequence[Pod]) -> tuple[list[podcauses.PodCause], float | None]:
        """Why each pod that is not Ready does not run, and when to look again (None: every pod is
        Ready). The pods' Warning events are read only when a pod's status alone does not say."""
        waiting = [p for p in pods if not pod_ref(p).ready]
        if not waiting:
            return [], None
        found = {pod_ref(p).uid: podcauses.cause_of(p) for p in waiting}
        if any(cause is None for cause in found.values()):
            unexplained = {uid for uid, cause in found.items() if cause is None}
            warnings = await events.pod_warnings(self.kube, namespace, unexplained)
            for pod in waiting:
                uid = pod_ref(pod).uid
                if found[uid] is None and warnings.get(uid):
                    found[uid] = podcauses.cause_of(pod, warnings[uid])
        # A real kubelet reports a failed mount only as an Event, which starts no pass: look again.
        return [c for c in found.values() if c is not None], self.settings.reconcile.stuck_pod_poll_s

    # Children and status ----------------------------------------------------------------------

    async def _write_children(
        self,
        body: Mapping[str, Any],
        spec: DeploymentSpec,
        plan: Plan,
        current_cm: ConfigMap | None,
        result: PassResult,
    ) -> tuple[str | None, set[str]]:
        """Create or patch every child; (the error text, the kinds whose write failed)."""
        # The ConfigMap first: a pod the Deployment starts mounts it, and would report a failed
        # mount (Degraded, an Event) for the moment it is missing.
        desired = [
            children.configmap(spec, plan.document),
            children.deployment(spec),
            children.service(spec),
            children.headless_service(spec),
            children.pod_disruption_budget(spec),
        ]
        if spec.network_policy_enabled:
            desired.append(children.network_policy(spec, self.settings.fleet))
        errors: list[str] = []
        failed: set[str] = set()
        for child in desired:
            kind, child_name = str(child["kind"]), str(child["metadata"]["name"])
            try:
                current = current_cm if kind == "ConfigMap" else await self.kube.get(kind, spec.namespace, child_name)
                if current is None:
                    await self.kube.create(child)
                    result.writes += 1
                    continue
                ops = child_patch(child, current)
                if ops:
                    await self.kube.patch_json(kind, spec.namespace, child_name, ops)
                    result.writes += 1
            except KubeError as exc:
                log.warning("Writing %s %s/%s failed: %s", kind, spec.namespace, child_name, exc)
                errors.append(f"{kind} {child_name}: {exc.message or exc.reason}")
                failed.add(kind)
        if not spec.network_policy_enabled:
            try:
                await self._delete_owned("NetworkPolicy", spec, children.names(spec.name)["networkpolicy"], result)
            except KubeError as exc:
                errors.append(f"NetworkPolicy removal: {exc.message or exc.reason}")
                failed.add("NetworkPolicy")
        # No Event here: the status says Degraded=ChildWriteFailed, and its transition posts one.
        return "; ".join(errors) or None, failed

    async def _delete_orphans(self, namespace: str, name: str, uid: str, result: PassResult) -> None:
        child_names = children.names(name)
        for kind, child in (
            ("Deployment", child_names["deployment"]),
            ("Service", child_names["service"]),
            ("Service", child_names["headless"]),
            ("ConfigMap", child_names["configmap"]),
            ("Secret", child_names["secret"]),
            ("NetworkPolicy", child_names["networkpolicy"]),
            ("PodDisruptionBudget", child_names["pdb"]),
        ):
            if _owned_by(await self.kube.get(kind, namespace, child), uid):
                await self.kube.delete(kind, namespace, child)
                result.writes += 1

    async def _delete_owned(self, kind: str, spec: DeploymentSpec, name: str, result: PassResult) -> None:
        if _owned_by(await self.kube.get(kind, spec.namespace, name), spec.uid):
            await self.kube.delete(kind, spec.namespace, name)
            result.writes += 1

    async def _write_status(
        self, body: ModelDeployment, desired: dict[str, Any], decided: list[Condition], result: PassResult
    ) -> ModelDeployment:
        meta = body["metadata"]
        current = body.get("status") or {}
        conditions, _ = merge(
            current.get("conditions"), decided, generation=int(meta.get("generation") or 0), now=_now_iso()
        )
        news = notices(current.get("conditions"), decided)
        desired = {**desired, "conditions": conditions}
        if not status_changed(current, desired):
            return body
        try:
            patched = await self.kube.patch_merge(
                "ModelDeployment", meta["namespace"], meta["name"], {"status": desired}, subresource="status"
            )
            body = cast(ModelDeployment, patched)
            result.writes += 1
        except KubeError as exc:
            if exc.status == 404:
                return body
            raise
        for notice in news:
            await self.events.post(body, type=notice.type, reason=notice.reason, message=notice.message)
        return body

    # Acting -----------------------------------------------------------------------------------

    async def _act(self, spec: DeploymentSpec, plan: Plan, memory: Memory, token: str) -> None:
        by_pod: dict[str, list[Action]] = {}
        for action in plan.actions:
            by_pod.setdefault(action.pod.name, []).append(action)
        limit = asyncio.Semaphore(self.settings.reconcile.pod_call_concurrency)
        errors: list[str] = []

        async def run_pod(actions: list[Action]) -> None:
            async with limit:
                for action in actions:
                    error = await self._call(spec, action, memory, token)
                    if error is None:
                        memory.failures.pop((action.pod.uid, action.model, action.version), None)
                        continue
                    if isinstance(action, Register) and not error.stale and not error.unverified:
                        self._record_failure(spec, action, error, memory)
                    elif not error.stale:
                        errors.append(f"{action.describe()}: {error.reason or error.code.name}: {error.message}")
                    if isinstance(action, Register | SetDefault) or error.unverified:
                        break  # later calls for this pod depend on this one (or cannot be sent at all)

        await asyncio.gather(*(run_pod(a) for a in by_pod.values()))
        memory.action_errors = errors
        # No Event per failed pod here: the next pass shows them in Degraded=ModelLoadFailed, whose
        # transition posts one Event for the fleet.

    async def _call(self, spec: DeploymentSpec, action: Action, memory: Memory, token: str) -> PodCallError | None:
        client = memory.clients.get(management_address(action.pod.ip), token, pod_uid=action.pod.uid)
        try:
            await dispatch.send(client, action, load_timeout_s=spec.model_load_timeout_s)
        except PodCallError as exc:
            log.warning("%s failed: %s", action.describe(), exc)
            return exc
        return None

    def _record_failure(self, spec: DeploymentSpec, action: Action, error: PodCallError, memory: Memory) -> Failure:
        key = (action.pod.uid, action.model, action.version)
        failure = failures.record(
            spec,
            action,
            reason=error.reason or error.code.name,
            message=error.message,
            permanent=error.permanent,
            previous=memory.failures.get(key),
            now=self._clock(),
            settings=self.settings.reconcile,
        )
        memory.failures[key] = failure
        return failure

    def _idle_requeue(self, plan: Plan, memory: Memory, now: float) -> float | None:
        delays = [f.retry_at - now for f in memory.failures.values() if not f.permanent and math.isfinite(f.retry_at)]
        if plan.waiting:
            delays.append(self.settings.reconcile.requeue_waiting_s)
        return max(0.0, min(delays)) if delays else None


def _owned_by(current: Json | None, uid: str) -> bool:
    """The object exists and the owner with this uid has a reference on it."""
    if current is None:
        return False
    meta = cast(ObjectMeta, current.get("metadata") or {})
    return any(r.get("uid") == uid for r in meta.get("ownerReferences") or [])


def _document(configmap: ConfigMap | None) -> dict[str, Any] | None:
    text = ((configmap or {}).get("data") or {}).get(children.DESIRED_STATE_KEY)
    if not text:
        return None
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        return None
    return document if isinstance(document, dict) else None
