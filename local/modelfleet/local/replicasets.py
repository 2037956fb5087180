"""The ReplicaSet controller: keep `.spec.replicas` pods of each ReplicaSet, and report its status.

Pods are created from the ReplicaSet's template (generateName `<rs>-`, its labels, a controller owner
reference) and, when there are too many, deleted in the controller-manager's order (unscheduled,
pending, not ready, most restarts, newest first). Pods being deleted or finished do not count.
Runs in the local fleet's event loop (reconciler.py); writes through LocalClient.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

from modelfleet.local import podstatus
from modelfleet.local.apitypes import JSON, ApiError
from modelfleet.local.localclient import LocalClient
from modelfleet.local.reconciler import Controller

Key = tuple[str, str]
BURST = 50  # pods created or deleted per pass (the controller-manager's slow start, simplified)


class ReplicaSetController(Controller[Key]):
    name = "replicaset-controller"

    def __init__(self, client: LocalClient) -> None:
        super().__init__(client)
        self.replicasets = client.type("apps", "replicasets")
        self.pods = client.type("", "pods")
        self.watch(self.replicasets, lambda rs: [(rs["metadata"]["namespace"], rs["metadata"]["name"])])
        self.watch(self.pods, self._owner_key)

    def _owner_key(self, pod: JSON) -> Iterable[Key]:
        for ref in pod["metadata"].get("ownerReferences") or []:
            if ref.get("controller") and ref.get("kind") == "ReplicaSet":
                yield (pod["metadata"]["namespace"], ref["name"])

    def owned_pods(self, rs: JSON) -> list[JSON]:
        uid = rs["metadata"]["uid"]
        return [
            pod
            for pod in self.client.list(self.pods, rs["metadata"]["namespace"])
            if podstatus.controller_of(pod, "ReplicaSet") == uid
        ]

    def reconcile(self, key: Key) -> float | None:
        namespace, name = key
        rs = self.client.get(self.replicasets, namespace, name)
        if rs is None or rs["metadata"].get("deletionTimestamp"):
            return None
        pods = self.owned_pods(rs)
        active = [pod for pod in pods if podstatus.is_active(pod)]
        wanted = int((rs.get("spec") or {}).get("replicas", 1))
        if len(active) < wanted:
            for _ in range(min(wanted - len(active), BURST)):
                self.client.create(self.pods, namespace, self._pod_from_template(rs))
        elif len(active) > wanted:
            for pod in sorted(active, key=podstatus.deletion_rank)[: min(len(active) - wanted, BURST)]:
                self.client.delete(self.pods, namespace, pod["metadata"]["name"])
        return self._update_status(rs, self.owned_pods(rs))

    def _pod_from_template(self, rs: JSON) -> JSON:
        template = copy.deepcopy((rs.get("spec") or {}).get("template") or {})
        meta = template.get("metadata") or {}
        meta.pop("name", None)
        meta["generateName"] = rs["metadata"]["name"] + "-"
        meta["namespace"] = rs["metadata"]["namespace"]
        meta["ownerReferences"] = [
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": rs["metadata"]["name"],
                "uid": rs["metadata"]["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template.get("spec") or {}}

    def _update_status(self, rs: JSON, pods: list[JSON]) -> float | None:
        min_ready = int((rs.get("spec") or {}).get("minReadySeconds", 0))
        active = [pod for pod in pods if podstatus.is_active(pod)]
        ready = [pod for pod in active if podstatus.is_ready(pod)]
        available = [pod for pod in ready if podstatus.is_available(pod, min_ready_seconds=min_ready)]
        labels = ((rs.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels") or {}
        status = {
            "replicas": len(active),
            "fullyLabeledReplicas": sum(
                1 for pod in active if labels.items() <= (pod["metadata"].get("labels") or {}).items()
            ),
            "readyReplicas": len(ready),
            "availableReplicas": len(available),
            "observedGeneration": rs["metadata"].get("generation", 1),
        }
        if {k: (rs.get("status") or {}).get(k, 0) for k in status} != status:
            try:
                self.client.patch(
                    self.replicasets,
                    rs["metadata"]["namespace"],
                    rs["metadata"]["name"],
                    {"status": status},
                    subresource="status",
                )
            except ApiError as exc:
                if exc.code != 404:
                    raise
        # Ready but not yet available pods become available later without any event: look again.
        return 1.0 if len(available) < len(ready) else None
