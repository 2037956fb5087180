"""The Deployment controller: a ReplicaSet per pod template, rolled as the strategy says, and status.

For each Deployment: the ReplicaSet whose pod-template-hash matches the current template is the new
one (created if missing, with the next revision); the others are old. RollingUpdate follows the
controller-manager's arithmetic (maxSurge rounds up, maxUnavailable down, both from percentages;
scale the new ReplicaSet up within desired+maxSurge, then old ones down, unhealthy first, keeping
desired-maxUnavailable available), so `maxSurge: 0` replaces a pod only after an old one is gone.
Recreate scales old ReplicaSets to zero and waits until their pods are gone. Status and conditions
are written as kubectl and operators read them. Runs in the local fleet's loop (reconciler.py).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections.abc import Iterable
from typing import Any

from modelfleet.local import podstatus
from modelfleet.local.apistore import now_rfc3339
from modelfleet.local.apitypes import JSON, ApiError
from modelfleet.local.localclient import LocalClient
from modelfleet.local.reconciler import Controller

Key = tuple[str, str]
HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # the alphabet Kubernetes renders template hashes in


def template_hash(template: JSON) -> str:
    digest = int.from_bytes(hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest()[:8], "big")
    chars = []
    for _ in range(10):
        digest, index = divmod(digest, len(_ALPHABET))
        chars.append(_ALPHABET[index])
    return "".join(chars)


def resolve(value: Any, total: int, *, round_up: bool) -> int:
    """An int-or-percent (maxSurge/maxUnavailable) against `total` replicas."""
    if isinstance(value, str) and value.endswith("%"):
        scaled = total * int(value[:-1]) / 100
        return math.ceil(scaled) if round_up else math.floor(scaled)
    return int(value)


def _replicas(rs: JSON) -> int:
    return int((rs.get("spec") or {}).get("replicas", 0))


def _status(rs: JSON, field: str) -> int:
    return int((rs.get("status") or {}).get(field, 0))


class DeploymentController(Controller[Key]):
    name = "deployment-controller"

    def __init__(self, client: LocalClient) -> None:
        super().__init__(client)
        self.deployments = client.type("apps", "deployments")
        self.replicasets = client.type("apps", "replicasets")
        self.pods = client.type("", "pods")
        self.watch(self.deployments, lambda d: [(d["metadata"]["namespace"], d["metadata"]["name"])])
        self.watch(self.replicasets, self._owner_key)
        # Pods too, as the controller-manager does: Recreate waits for old pods to be gone, and their
        # removal changes no ReplicaSet (terminating pods are already not counted).
        self.watch(self.pods, self._pod_key)

    def _pod_key(self, pod: JSON) -> Iterable[Key]:
        for ref in pod["metadata"].get("ownerReferences") or []:
            if ref.get("controller") and ref.get("kind") == "ReplicaSet":
                rs = self.client.get(self.replicasets, pod["metadata"]["namespace"], ref["name"])
                if rs is not None:
                    yield from self._owner_key(rs)

    def _owner_key(self, rs: JSON) -> Iterable[Key]:
        for ref in rs["metadata"].get("ownerReferences") or []:
            if ref.get("controller") and ref.get("kind") == "Deployment":
                yield (rs["metadata"]["namespace"], ref["name"])

    def reconcile(self, key: Key) -> float | None:
        namespace, name = key
        deployment = self.client.get(self.deployments, namespace, name)
        if deployment is None or deployment["metadata"].get("deletionTimestamp"):
            return None
        uid = deployment["metadata"]["uid"]
        owned = [
            rs
            for rs in self.client.list(self.replicasets, namespace)
            if podstatus.controller_of(rs, "Deployment") == uid
        ]
        spec = deployment["spec"]
        template = spec["template"]
        digest = template_hash(template)
        new = next((rs for rs in owned if rs["metadata"].get("labels", {}).get(HASH_LABEL) == digest), None)
        old = sorted(
            (rs for rs in owned if rs is not new),
            key=lambda rs: int(rs["metadata"].get("annotations", {}).get(REVISION, "0")),
        )
        if not spec.get("paused"):
            if new is None:
                new = self._create_replicaset(deployment, digest, owned)
                owned.append(new)
            else:
                new = self._bump_revision(new, owned)
            if spec["strategy"]["type"] == "Recreate":
                self._recreate(deployment, new, old)
            else:
                self._roll(deployment, new, old)
            self._clean_up_history(deployment, old)
        return self._update_status(deployment, new, old)

    # ---- ReplicaSets -------------------------------------------------------------------------
    def _create_replicaset(self, deployment: JSON, digest: str, owned: list[JSON]) -> JSON:
        meta, spec = deployment["metadata"], deployment["spec"]
        template = copy.deepcopy(spec["template"])
        template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = digest
        revision = 1 + max((int(rs["metadata"].get("annotations", {}).get(REVISION, "0")) for rs in owned), default=0)
        selector = copy.deepcopy(spec["selector"])
        selector.setdefault("matchLabels", {})[HASH_LABEL] = digest
        # With nothing running yet (first rollout), start at the desired size straight away.
        running = sum(_replicas(rs) for rs in owned)
        body: JSON = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": f"{meta['name']}-{digest}",
                "namespace": meta["namespace"],
                "labels": dict(template["metadata"]["labels"]),
                "annotations": {
                    REVISION: str(revision),
                    "deployment.kubernetes.io/desired-replicas": str(spec["replicas"]),
                },
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": meta["name"],
                        "uid": meta["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": {
                "replicas": 0 if running else int(spec["replicas"]),
                "selector": selector,
                "minReadySeconds": int(spec.get("minReadySeconds", 0)),
                "template": template,
            },
        }
        try:
            return self.client.create(self.replicasets, meta["namespace"], body)
        except ApiError as exc:
            if exc.code != 409:
                raise
            found = self.client.get(self.replicasets, meta["namespace"], body["metadata"]["name"])
            assert found is not None
            return found

    def _bump_revision(self, new: JSON, owned: list[JSON]) -> JSON:
        """A rollback to an old template makes that ReplicaSet the newest revision again."""
        revisions = [int(rs["metadata"].get("annotations", {}).get(REVISION, "0")) for rs in owned]
        mine = int(new["metadata"].get("annotations", {}).get(REVISION, "0"))
        if mine >= max(revisions, default=0):
            return new
        return self.client.patch(
            self.replicasets,
            new["metadata"]["namespace"],
            new["metadata"]["name"],
            {"metadata": {"annotations": {REVISION: str(max(revisions) + 1)}}},
        )

    def _scale(self, rs: JSON, replicas: int) -> JSON:
        if _replicas(rs) == replicas:
            return rs
        return self.client.patch(
            self.replicasets, rs["metadata"]["namespace"], rs["metadata"]["name"], {"spec": {"replicas": replicas}}
        )

    # ---- strategies --------------------------------------------------------------------------
    def _recreate(self, deployment: JSON, new: JSON, old: list[JSON]) -> None:
        for rs in old:
            self._scale(rs, 0)
        old_uids = {rs["metadata"]["uid"] for rs in old}
        pods = self.client.list(self.pods, deployment["metadata"]["namespace"])
        if any(podstatus.controller_of(pod, "ReplicaSet") in old_uids for pod in pods):
            return  # Recreate: the new pods start only when every old pod is gone
        self._scale(new, int(deployment["spec"]["replicas"]))

    def _roll(self, deployment: JSON, new: JSON, old: list[JSON]) -> None:
        desired = int(deployment["spec"]["replicas"])
        rolling = deployment["spec"]["strategy"].get("rollingUpdate") or {}
        surge = resolve(rolling.get("maxSurge", "25%"), desired, round_up=True)
        unavailable = resolve(rolling.get("maxUnavailable", "25%"), desired, round_up=False)
        if surge == 0 and unavailable == 0:
            unavailable = 1
        total = _replicas(new) + sum(_replicas(rs) for rs in old)
        # The controller-manager counts ReplicaSet sizes only, so the new ReplicaSet may grow before the
        # ReplicaSet controller has started deleting an old pod. Counting live pods as well closes that
        # window: with maxSurge 0 a new pod never starts while desired pods are still running.
        uids = {rs["metadata"]["uid"] for rs in old} | {new["metadata"]["uid"]}
        live = sum(
            1
            for pod in self.client.list(self.pods, deployment["metadata"]["namespace"])
            if podstatus.is_active(pod) and podstatus.controller_of(pod, "ReplicaSet") in uids
        )
        # 1. Scale the new ReplicaSet up, within desired + maxSurge pods in all.
        if _replicas(new) > desired:
            self._scale(new, desired)
            return
        if _replicas(new) < desired:
            room = desired + surge - max(total, live)
            if room > 0:
                self._scale(new, min(desired, _replicas(new) + room))
                return
        # 2. Scale old ReplicaSets down, keeping desired - maxUnavailable pods available.
        min_available = desired - unavailable
        new_unavailable = _replicas(new) - _status(new, "availableReplicas")
        budget = total - min_available - new_unavailable
        if budget <= 0:
            return
        sizes = {rs["metadata"]["uid"]: _replicas(rs) for rs in old}
        for rs in old:  # unhealthy old pods first, oldest ReplicaSet first
            unhealthy = sizes[rs["metadata"]["uid"]] - _status(rs, "availableReplicas")
            cut = min(budget, max(unhealthy, 0))
            if cut > 0:
                sizes[rs["metadata"]["uid"]] -= cut
                budget -= cut
        available = _status(new, "availableReplicas") + sum(
            min(_status(rs, "availableReplicas"), sizes[rs["metadata"]["uid"]]) for rs in old
        )
        budget = min(budget, available - min_available)
        for rs in old:
            cut = min(max(budget, 0), sizes[rs["metadata"]["uid"]])
            sizes[rs["metadata"]["uid"]] -= cut
            budget -= cut
        for rs in old:
            self._scale(rs, sizes[rs["metadata"]["uid"]])

    def _clean_up_history(self, deployment: JSON, old: list[JSON]) -> None:
        limit = int(deployment["spec"].get("revisionHistoryLimit", 10))
        idle = [rs for rs in old if _replicas(rs) == 0 and _status(rs, "replicas") == 0]
        for rs in idle[: max(len(idle) - limit, 0)]:
            self.client.delete(self.replicasets, rs["metadata"]["namespace"], rs["metadata"]["name"])

    # ---- status ------------------------------------------------------------------------------
    def _update_status(self, deployment: JSON, new: JSON | None, old: list[JSON]) -> float | None:
        everything = ([new] if new is not None else []) + old
        desired = int(deployment["spec"]["replicas"])
        rolling = deployment["spec"]["strategy"].get("rollingUpdate") or {}
        unavailable = resolve(rolling.get("maxUnavailable", "25%"), desired, round_up=False)
        available = sum(_status(rs, "availableReplicas") for rs in everything)
        updated = _status(new, "replicas") if new is not None else 0
        replicas = sum(_status(rs, "replicas") for rs in everything)
        complete = updated == desired and replicas == desired and available >= desired
        previous = deployment.get("status") or {}
        status: JSON = {
            "observedGeneration": deployment["metadata"].get("generation", 1),
            "replicas": replicas,
            "updatedReplicas": updated,
            "readyReplicas": sum(_status(rs, "readyReplicas") for rs in everything),
            "availableReplicas": available,
            "unavailableReplicas": max(desired - available, 0) if replicas or desired else 0,
            "conditions": [
                self._condition(
                    previous,
                    "Available",
                    available >= desired - unavailable,
                    "MinimumReplicasAvailable" if available >= desired - unavailable else "MinimumReplicasUnavailable",
                    "Deployment has minimum availability."
                    if available >= desired - unavailable
                    else "Deployment does not have minimum availability.",
                ),
                self._condition(
                    previous,
                    "Progressing",
                    True,
                    "NewReplicaSetAvailable" if complete else "ReplicaSetUpdated",
                    f'ReplicaSet "{new["metadata"]["name"]}" '
                    + ("has successfully progressed." if complete else "is progressing.")
                    if new is not None
                    else "Deployment is paused.",
                ),
            ],
        }
        keys = set(status) | {k for k in previous if k != "collisionCount"}
        if any(previous.get(k) != status.get(k) for k in keys):
            try:
                self.client.patch(
                    self.deployments,
                    deployment["metadata"]["namespace"],
                    deployment["metadata"]["name"],
                    {"status": {**{k: None for k in previous}, **status}},
                    subresource="status",
                )
            except ApiError as exc:
                if exc.code != 404:
                    raise
        return None

    @staticmethod
    def _condition(previous: JSON, kind: str, ok: bool, reason: str, message: str) -> JSON:
        old: JSON = next((c for c in previous.get("conditions") or [] if c.get("type") == kind), {})
        state = "True" if ok else "False"
        now = now_rfc3339()
        same = old.get("status") == state
        unchanged = same and old.get("reason") == reason and old.get("message") == message
        return {
            "type": kind,
            "status": state,
            "reason": reason,
            "message": message,
            "lastUpdateTime": old.get("lastUpdateTime", now) if unchanged else now,
            "lastTransitionTime": old.get("lastTransitionTime", now) if same else now,
        }
