"""In-process access to the local API's store for the controllers and the kubelet, audited.

The controllers run in the API server's event loop, so they call the store directly (no HTTP, no
serialization) but still leave an audit record with their own user agent, as their requests would in
a cluster (tests that count the operator's writes filter these out by user agent). Writes are
synchronous and atomic with respect to the event loop.
"""

from __future__ import annotations

from typing import Any

from modelfleet.local.apistore import Store
from modelfleet.local.apitypes import JSON, ApiError, ApiRequest, AuditLog, ResourceType
from modelfleet.local.apiwatch import LabelPredicate, Watch


class LocalClient:
    """The store's operations for one component (`user_agent`), each recorded in the audit log."""

    def __init__(self, store: Store, audit: AuditLog, *, user_agent: str) -> None:
        self.store = store
        self.audit = audit
        self.user_agent = user_agent

    def type(self, group: str, plural: str) -> ResourceType:
        return self.store.type_of(group, plural)

    def _record(
        self,
        verb: str,
        rtype: ResourceType,
        namespace: str | None,
        name: str | None,
        subresource: str | None,
        code: int,
    ) -> None:
        self.audit.add(
            ApiRequest(
                verb=verb,
                group=rtype.group,
                resource=rtype.plural,
                namespace=namespace,
                name=name,
                subresource=subresource,
                code=code,
                user_agent=self.user_agent,
            )
        )

    # Reads are not recorded: a real controller reads its informer cache, not the API server.
    def get(self, rtype: ResourceType, namespace: str | None, name: str) -> JSON | None:
        """The stored object (a snapshot: do not mutate) or None."""
        return self.store.find(rtype, namespace, name)

    def list(
        self, rtype: ResourceType, namespace: str | None = None, *, labels: LabelPredicate | None = None
    ) -> list[JSON]:
        return self.store.list_objects(rtype, namespace, labels=labels)

    def watch(self, rtype: ResourceType, namespace: str | None = None) -> Watch:
        self._record("watch", rtype, namespace, None, None, 200)
        return self.store.watch(rtype, namespace)

    def create(self, rtype: ResourceType, namespace: str | None, body: JSON) -> JSON:
        try:
            obj = self.store.create(rtype, namespace, body)
        except ApiError as exc:
            self._record("create", rtype, namespace, (body.get("metadata") or {}).get("name"), None, exc.code)
            raise
        self._record("create", rtype, namespace, obj["metadata"]["name"], None, 201)
        return obj

    def patch(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        body: Any,
        *,
        subresource: str | None = None,
        patch_type: str = "merge",
    ) -> JSON:
        try:
            obj = self.store.patch(rtype, namespace, name, body, patch_type=patch_type, subresource=subresource)
        except ApiError as exc:
            self._record("patch", rtype, namespace, name, subresource, exc.code)
            raise
        self._record("patch", rtype, namespace, name, subresource, 200)
        return obj

    def delete(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        *,
        grace_seconds: int | None = None,
        propagation: str | None = None,
    ) -> JSON | None:
        """Delete; None when it was already gone."""
        try:
            obj = self.store.delete(rtype, namespace, name, grace_seconds=grace_seconds, propagation=propagation)
        except ApiError as exc:
            self._record("delete", rtype, namespace, name, None, exc.code)
            if exc.code == 404:
                return None
            raise
        self._record("delete", rtype, namespace, name, None, 200)
        return obj
