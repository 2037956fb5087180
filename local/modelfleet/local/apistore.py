"""The in-memory object store behind the local Kubernetes API: the semantics of a real API server.

Called by the HTTP layer (apiserver.py) and by in-process controllers (through LocalClient). Stamps
metadata (uid, creationTimestamp, generation bumped only on spec changes, resourceVersion bumped only
on real changes), keeps the status subresource apart from the main resource, applies defaults and
CRD schemas (admission.py), refuses objects in namespaces that do not exist or are being deleted,
handles finalizers, graceful pod deletion and garbage collection through ownerReferences
(background, foreground, orphan), and feeds watches with a replayable history.
Stored objects are never mutated in place: every write stores a new dict, so events are snapshots.
Must not do I/O: it is plain data, driven from one event loop.
"""

from __future__ import annotations

import collections
import copy
import datetime
import itertools
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from modelfleet.local import admission, patching
from modelfleet.local.apitypes import (
    JSON,
    ApiError,
    ResourceType,
    already_exists,
    conflict,
    invalid,
    not_found,
)
from modelfleet.local.apiwatch import LabelPredicate, ObjectPredicate, Watch

TypeKey = tuple[str, str]
ObjectKey = tuple[str, str]  # (namespace or "", name)
Listener = Callable[[ResourceType, str, JSON], None]

POD_KEY: TypeKey = ("", "pods")
FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _meta(obj: JSON) -> JSON:
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        meta = obj["metadata"] = {}
    return meta


def _without(obj: JSON, *keys: str) -> JSON:
    return {k: v for k, v in obj.items() if k not in keys}


class Store:
    """Objects by resource type and (namespace, name); see the module docstring."""

    def __init__(self, *, history: int = 5000) -> None:
        self.types: dict[TypeKey, ResourceType] = {}
        self._objects: dict[TypeKey, dict[ObjectKey, JSON]] = collections.defaultdict(dict)
        self._uids: dict[str, tuple[TypeKey, ObjectKey]] = {}
        self._history: dict[TypeKey, collections.deque[tuple[int, str, JSON, JSON | None]]] = collections.defaultdict(
            lambda: collections.deque(maxlen=history)
        )
        self._expired: dict[TypeKey, int] = collections.defaultdict(int)
        self._watches: dict[TypeKey, set[Watch]] = collections.defaultdict(set)
        self._applied: dict[tuple[TypeKey, ObjectKey, str], JSON] = {}
        self._counter = itertools.count(1)
        self.resource_version = 0
        self.listeners: list[Listener] = []
        # Service cluster IPs: a real cluster's range by default; the local fleet hands out loopback
        # addresses it can listen on (and takes them back when the Service goes).
        self.allocate_cluster_ip: Callable[[Iterable[int]], str] = admission.default_cluster_ip
        self.release_cluster_ip: Callable[[str], None] = lambda address: None

    # ---- types -------------------------------------------------------------------------------
    def register(self, rtype: ResourceType) -> None:
        self.types[rtype.key] = rtype

    def type_of(self, group: str, plural: str) -> ResourceType:
        try:
            return self.types[(group, plural)]
        except KeyError:
            raise ApiError(
                404, "NotFound", f"the server could not find the requested resource ({plural}.{group})"
            ) from None

    # ---- reads ------------------------------------------------------------------------------
    def get(self, rtype: ResourceType, namespace: str | None, name: str) -> JSON:
        obj = self._objects[rtype.key].get((self._ns(rtype, namespace), name))
        if obj is None:
            raise not_found(rtype, name)
        return obj

    def find(self, rtype: ResourceType, namespace: str | None, name: str) -> JSON | None:
        return self._objects[rtype.key].get((self._ns(rtype, namespace), name))

    def list_objects(
        self,
        rtype: ResourceType,
        namespace: str | None = None,
        *,
        labels: LabelPredicate | None = None,
        fields: ObjectPredicate | None = None,
    ) -> list[JSON]:
        """Objects (stored snapshots: do not mutate) of a type, sorted by namespace and name."""
        items = []
        for (ns, _), obj in sorted(self._objects[rtype.key].items()):
            if namespace and ns != namespace:
                continue
            if labels is not None and not labels(_meta(obj).get("labels") or {}):
                continue
            if fields is not None and not fields(obj):
                continue
            items.append(obj)
        return items

    def by_uid(self, uid: str) -> JSON | None:
        where = self._uids.get(uid)
        return None if where is None else self._objects[where[0]].get(where[1])

    # ---- watches ----------------------------------------------------------------------------
    def watch(
        self,
        rtype: ResourceType,
        namespace: str | None = None,
        *,
        name: str | None = None,
        labels: LabelPredicate | None = None,
        fields: ObjectPredicate | None = None,
        since: int | None = None,
        initial: bool = True,
    ) -> Watch:
        """Open a watch. With `since` (a resourceVersion), replay the changes after it (410 Expired
        if the history no longer reaches back that far); otherwise (and with `initial`) start with
        an ADDED event per current object. Subscribing and the snapshot happen without a yield in
        between, so no change is lost or duplicated."""
        watch = Watch(
            namespace=namespace,
            name=name,
            labels=labels,
            fields=fields,
            on_close=lambda w: self._watches[rtype.key].discard(w),
        )
        if since is not None and since > 0:
            if since < self._expired[rtype.key]:
                watch.send(
                    {
                        "type": "ERROR",
                        "object": ApiError(
                            410, "Expired", f"too old resource version: {since} ({self._expired[rtype.key]})"
                        ).status(),
                    }
                )
                watch.close()
                return watch
            for rv, event_type, obj, old in self._history[rtype.key]:
                if rv > since:
                    watch.offer(event_type, obj, old)
        elif initial:
            for obj in self.list_objects(rtype, namespace):
                if watch.wants(obj):
                    watch.send({"type": "ADDED", "object": obj})
        self._watches[rtype.key].add(watch)
        return watch

    def _emit(self, rtype: ResourceType, event_type: str, obj: JSON, old: JSON | None) -> None:
        rv = int(_meta(obj)["resourceVersion"])
        history = self._history[rtype.key]
        if history.maxlen is not None and len(history) == history.maxlen:
            self._expired[rtype.key] = history[0][0]
        history.append((rv, event_type, obj, old))
        for watch in list(self._watches[rtype.key]):
            watch.offer(event_type, obj, old)
        for listener in self.listeners:
            listener(rtype, event_type, obj)

    def close_watches(self) -> None:
        for watches in self._watches.values():
            for watch in list(watches):
                watch.close()

    # ---- writes -----------------------------------------------------------------------------
    def _ns(self, rtype: ResourceType, namespace: str | None) -> str:
        return (namespace or "default") if rtype.namespaced else ""

    def _require_namespace(self, namespace: str) -> None:
        """A real API server (NamespaceLifecycle admission) refuses objects in a namespace that does
        not exist (404) or is being deleted (403); so does this one."""
        namespaces = self.types.get(("", "namespaces"))
        if namespaces is None:
            return  # a bare store without the Namespace kind (nothing to check against)
        found = self._objects[namespaces.key].get(("", namespace))
        if found is None:
            raise ApiError(
                404,
                "NotFound",
                f'namespaces "{namespace}" not found',
                details={"name": namespace, "kind": "namespaces"},
            )
        if _meta(found).get("deletionTimestamp"):
            raise ApiError(
                403,
                "Forbidden",
                f"unable to create new content in namespace {namespace} because it is being terminated",
                details={"name": namespace, "kind": "namespaces"},
            )

    def _next_rv(self) -> str:
        self.resource_version = next(self._counter)
        return str(self.resource_version)

    def create(self, rtype: ResourceType, namespace: str | None, body: JSON, *, dry_run: bool = False) -> JSON:
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the body of a create must be an object")
        obj = copy.deepcopy(body)
        meta = _meta(obj)
        if rtype.namespaced:
            body_ns = meta.get("namespace")
            if namespace and body_ns and body_ns != namespace:
                raise ApiError(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not match the namespace sent on the request",
                )
            meta["namespace"] = namespace or body_ns or "default"
            self._require_namespace(meta["namespace"])
        else:
            meta.pop("namespace", None)
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        name = meta.get("name")
        if not name:
            raise invalid(rtype, "", ["metadata.name: Required value: name or generateName is required"])
        key = (self._ns(rtype, meta.get("namespace")), name)
        if key in self._objects[rtype.key]:
            raise already_exists(rtype, name)
        obj["apiVersion"], obj["kind"] = rtype.api_version, rtype.kind
        for field in (
            "uid",
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
            "selfLink",
        ):
            meta.pop(field, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_rfc3339()
        meta["generation"] = 1
        if rtype.has_status:
            obj.pop("status", None)  # the status subresource is written only through /status
        admission.admit(rtype, obj, None, allocate_ip=self.allocate_cluster_ip)
        if dry_run:
            return obj
        meta["resourceVersion"] = self._next_rv()
        self._objects[rtype.key][key] = obj
        self._uids[meta["uid"]] = (rtype.key, key)
        self._emit(rtype, "ADDED", obj, None)
        return obj

    def update(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        body: JSON,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> JSON:
        """PUT: replace the object (or only its status, through /status)."""
        old = self.get(rtype, namespace, name)
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the body of an update must be an object")
        wanted_rv = (body.get("metadata") or {}).get("resourceVersion")
        if wanted_rv and wanted_rv != _meta(old)["resourceVersion"]:
            raise conflict(
                rtype,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            )
        return self._commit(rtype, old, copy.deepcopy(body), subresource=subresource, dry_run=dry_run)

    def patch(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        body: Any,
        *,
        patch_type: str = "merge",
        subresource: str | None = None,
        field_manager: str = "",
        dry_run: bool = False,
    ) -> JSON:
        """PATCH with `patch_type` json | merge | strategic | apply (apply creates a missing object)."""
        old = self.find(rtype, namespace, name)
        if old is None:
            if patch_type != "apply" or subresource:
                raise not_found(rtype, name)
            if not isinstance(body, dict):
                raise ApiError(400, "BadRequest", "an apply patch must be an object")
            created = dict(body, metadata=dict(body.get("metadata") or {}, name=name))
            if rtype.namespaced:
                created["metadata"]["namespace"] = self._ns(rtype, namespace)
            obj = self.create(rtype, namespace, created, dry_run=dry_run)
            if not dry_run:
                self._applied[(rtype.key, (self._ns(rtype, namespace), name), field_manager)] = body
            return obj
        if patch_type == "json":
            try:
                candidate = patching.json_patch(old, body)
            except patching.PatchConflict as exc:  # kopf's `test` of resourceVersion: retry later
                raise ApiError(
                    422, "Invalid", f"the server rejected our request due to an error in our request: {exc}"
                ) from exc
            except patching.PatchInvalid as exc:
                raise ApiError(400, "BadRequest", str(exc)) from exc
        elif not isinstance(body, dict):
            raise ApiError(400, "BadRequest", f"a {patch_type} patch must be an object")
        else:
            wanted_rv = (body.get("metadata") or {}).get("resourceVersion")
            if wanted_rv and wanted_rv != _meta(old)["resourceVersion"]:
                raise conflict(
                    rtype,
                    name,
                    "the object has been modified; please apply your changes to the latest version and try again",
                )
            if patch_type == "merge":
                candidate = patching.merge_patch(old, body)
            elif patch_type == "strategic":
                if not rtype.builtin:
                    raise ApiError(
                        415,
                        "UnsupportedMediaType",
                        "the body of the request was in an unknown "
                        "format - accepted media types include: application/json-patch+json, "
                        "application/merge-patch+json, application/apply-patch+yaml",
                    )
                candidate = patching.strategic_merge_patch(old, body)
            elif patch_type == "apply":
                applied_key = (rtype.key, (self._ns(rtype, namespace), name), field_manager)
                candidate = patching.apply_patch(
                    old, body, previous=self._applied.get(applied_key), keyed_lists=rtype.builtin
                )
                if not dry_run:
                    self._applied[applied_key] = body
            else:
                raise ApiError(415, "UnsupportedMediaType", f"unknown patch type {patch_type!r}")
        return self._commit(rtype, old, candidate, subresource=subresource, dry_run=dry_run)

    def _commit(
        self, rtype: ResourceType, old: JSON, candidate: JSON, *, subresource: str | None, dry_run: bool
    ) -> JSON:
        old_meta = old["metadata"]
        if subresource == "status":
            # A status write changes status only (metadata and spec come from the stored object).
            new = _without(old, "status")
            if candidate.get("status") is not None:
                new["status"] = candidate["status"]
            new["metadata"] = dict(old_meta)
        elif subresource is None:
            new = candidate
            new_meta = _meta(new)
            for field in (
                "uid",
                "creationTimestamp",
                "name",
                "namespace",
                "generation",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
            ):
                if field in old_meta:
                    new_meta[field] = old_meta[field]
                else:
                    new_meta.pop(field, None)
            if rtype.has_status:  # a main-resource write never changes status
                new.pop("status", None)
                if "status" in old:
                    new["status"] = old["status"]
            new["apiVersion"], new["kind"] = old.get("apiVersion", rtype.api_version), rtype.kind
        else:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({subresource})")
        new_meta = _meta(new)
        new_meta["resourceVersion"] = old_meta["resourceVersion"]
        admission.admit(rtype, new, old, allocate_ip=self.allocate_cluster_ip)
        if _without(new, "metadata", "status") != _without(old, "metadata", "status"):
            new_meta["generation"] = int(old_meta.get("generation", 1)) + 1
        if new == old or dry_run:
            return new if dry_run else old  # a no-op write: no new resourceVersion, no event
        new_meta["resourceVersion"] = self._next_rv()
        key = (self._ns(rtype, new_meta.get("namespace")), new_meta["name"])
        self._objects[rtype.key][key] = new
        self._emit(rtype, "MODIFIED", new, old)
        # Gone once its last finalizer is removed, unless it is a pod still in its grace period: the
        # kubelet removes that one itself (a delete with grace 0) after its containers stopped.
        in_grace = rtype.key == POD_KEY and int(new_meta.get("deletionGracePeriodSeconds") or 0) > 0
        if new_meta.get("deletionTimestamp") and not new_meta.get("finalizers") and not in_grace:
            self._remove(rtype, new)
        elif new_meta.get("deletionTimestamp"):
            self._collect_foreground(new)
        return new

    # ---- deletion and garbage collection --------------------------------------------------------
    def delete(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        *,
        propagation: str | None = None,
        grace_seconds: int | None = None,
        preconditions: JSON | None = None,
        dry_run: bool = False,
    ) -> JSON:
        """DELETE. Returns the object as it is after the call (marked, or the last state if removed).

        Pods bound to a node (spec.nodeName) are deleted gracefully: they get deletionTimestamp and
        stay until the kubelet has stopped them and deletes them again with grace 0, as in a cluster.
        """
        obj = self.get(rtype, namespace, name)
        meta = obj["metadata"]
        for field in ("uid", "resourceVersion"):
            wanted = (preconditions or {}).get(field)
            if wanted and wanted != meta.get(field):
                raise conflict(
                    rtype,
                    name,
                    f"Precondition failed: {field} in precondition: {wanted}, "
                    f"{field} in object meta: {meta.get(field)}",
                )
        if dry_run:
            return obj
        graceful = rtype.key == POD_KEY and bool((obj.get("spec") or {}).get("nodeName")) and grace_seconds != 0
        policy = propagation or ("Orphan" if ORPHAN in (meta.get("finalizers") or []) else "Background")
        if meta.get("deletionTimestamp"):
            if rtype.key == POD_KEY and grace_seconds == 0:
                if not meta.get("finalizers"):
                    self._remove(rtype, obj)
                elif meta.get("deletionGracePeriodSeconds"):
                    ended = dict(
                        obj, metadata=dict(meta, deletionGracePeriodSeconds=0, resourceVersion=self._next_rv())
                    )
                    self._objects[rtype.key][(self._ns(rtype, namespace), name)] = ended
                    self._emit(rtype, "MODIFIED", ended, obj)
                    return ended
            return obj
        extra: list[str] = []
        if policy == "Foreground" and self._dependents(meta["uid"]):
            extra = [FOREGROUND]
        if policy == "Orphan":
            self._orphan(meta["uid"])
        if meta.get("finalizers") or extra or graceful:
            grace = grace_seconds
            if graceful and grace is None:
                grace = int((obj.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
            marked = copy.deepcopy(obj)
            marked_meta = marked["metadata"]
            marked_meta["deletionTimestamp"] = now_rfc3339()
            marked_meta["finalizers"] = list(marked_meta.get("finalizers") or []) + extra
            if graceful:
                marked_meta["deletionGracePeriodSeconds"] = grace
            marked_meta["resourceVersion"] = self._next_rv()
            self._objects[rtype.key][(self._ns(rtype, namespace), name)] = marked
            self._emit(rtype, "MODIFIED", marked, obj)
            if extra:
                for dependent_type, dependent in self._dependents(meta["uid"]):
                    self._delete_quietly(dependent_type, dependent, propagation="Background")
                self._collect_foreground(marked)
            return marked
        self._remove(rtype, obj)
        return obj

    def _remove(self, rtype: ResourceType, obj: JSON) -> None:
        meta = obj["metadata"]
        key = (self._ns(rtype, meta.get("namespace")), meta["name"])
        if self._objects[rtype.key].get(key) is not obj:
            return
        del self._objects[rtype.key][key]
        self._uids.pop(meta["uid"], None)
        for applied_key in [k for k in self._applied if k[0] == rtype.key and k[1] == key]:
            del self._applied[applied_key]
        cluster_ip = (obj.get("spec") or {}).get("clusterIP") if rtype.key == ("", "services") else None
        if cluster_ip and cluster_ip != "None":
            self.release_cluster_ip(cluster_ip)
        gone = dict(obj, metadata=dict(meta, resourceVersion=self._next_rv()))
        self._emit(rtype, "DELETED", gone, obj)
        self._collect(meta["uid"])

    def _dependents(self, owner_uid: str) -> list[tuple[ResourceType, JSON]]:
        found = []
        for type_key, objects in self._objects.items():
            for obj in objects.values():
                refs = obj["metadata"].get("ownerReferences") or []
                if any(ref.get("uid") == owner_uid for ref in refs):
                    found.append((self.types[type_key], obj))
        return found

    def _collect(self, owner_uid: str) -> None:
        """The garbage collector's part: delete dependents whose owners are all gone (background)."""
        for rtype, dependent in self._dependents(owner_uid):
            refs = dependent["metadata"].get("ownerReferences") or []
            if all(self.by_uid(ref.get("uid", "")) is None for ref in refs):
                self._delete_quietly(rtype, dependent, propagation="Background")
        # An owner deleted in the foreground waits for its dependents; this may have been the last.
        for objects in list(self._objects.values()):
            for obj in list(objects.values()):
                if FOREGROUND in (obj["metadata"].get("finalizers") or []):
                    self._collect_foreground(obj)

    def _collect_foreground(self, owner: JSON) -> None:
        meta = owner["metadata"]
        if FOREGROUND not in (meta.get("finalizers") or []) or self._dependents(meta["uid"]):
            return
        where = self._uids.get(meta["uid"])
        if where is None:
            return
        rtype = self.types[where[0]]
        finalizers = [f for f in meta["finalizers"] if f != FOREGROUND]
        self.patch(rtype, meta.get("namespace"), meta["name"], {"metadata": {"finalizers": finalizers or None}})

    def _delete_quietly(self, rtype: ResourceType, obj: JSON, *, propagation: str) -> None:
        meta = obj["metadata"]
        try:
            self.delete(rtype, meta.get("namespace"), meta["name"], propagation=propagation)
        except ApiError:
            pass  # already gone: the collector raced another deletion

    def _orphan(self, owner_uid: str) -> None:
        for rtype, dependent in self._dependents(owner_uid):
            meta = dependent["metadata"]
            refs = [ref for ref in meta.get("ownerReferences") or [] if ref.get("uid") != owner_uid]
            self.patch(
                rtype,
                meta.get("namespace"),
                meta["name"],
                [{"op": "replace", "path": "/metadata/ownerReferences", "value": refs}],
                patch_type="json",
            )

    def delete_collection(
        self,
        rtype: ResourceType,
        namespace: str | None,
        *,
        labels: LabelPredicate | None = None,
        fields: ObjectPredicate | None = None,
        propagation: str | None = None,
    ) -> list[JSON]:
        deleted = []
        for obj in self.list_objects(rtype, namespace, labels=labels, fields=fields):
            meta = obj["metadata"]
            deleted.append(self.delete(rtype, meta.get("namespace"), meta["name"], propagation=propagation))
        return deleted
