"""The only module that imports the `kubernetes` client or talks to the Kubernetes API.

reconcile.py and leader.py call it; handlers.py asks it for kopf's connection info. Requests go
through the client's ApiClient with plain JSON bodies (no generated models: no pydantic checks on
our dicts, and one code path for every kind) and run in threads, because the client is
synchronous and the event loop must stay free (in tests it also serves the API). Writes are JSON
patches and merge patches only: strategic merge is not what the in-memory API implements.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import socket
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import kubernetes

from .settings import KubeSettings

log = logging.getLogger(__name__)

Json = dict[str, Any]
USER_AGENT = "modelfleet-operator/0.1"

# kind → (API path prefix, plural, namespaced); every kind the operator reads or writes.
KINDS: dict[str, tuple[str, str]] = {
    "ModelDeployment": ("/apis/modelfleet.io/v1alpha1", "modeldeployments"),
    "Deployment": ("/apis/apps/v1", "deployments"),
    "Service": ("/api/v1", "services"),
    "ConfigMap": ("/api/v1", "configmaps"),
    "Secret": ("/api/v1", "secrets"),
    "Pod": ("/api/v1", "pods"),
    "Event": ("/api/v1", "events"),
    "NetworkPolicy": ("/apis/networking.k8s.io/v1", "networkpolicies"),
    "PodDisruptionBudget": ("/apis/policy/v1", "poddisruptionbudgets"),
    "Lease": ("/apis/coordination.k8s.io/v1", "leases"),
}


class KubeError(Exception):
    """An API request failed; `status` is the HTTP status (0 when no answer came)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        self.status = status
        self.reason = reason
        self.message = message
        super().__init__(f"{status} {reason}: {message}")


@dataclass(frozen=True)
class Connection:
    """What kopf needs to log in with the same credentials (handlers.py turns it into ConnectionInfo)."""

    server: str
    ca_path: str | None
    insecure: bool
    token: str | None
    certificate_path: str | None
    private_key_path: str | None


def load_configuration(settings: KubeSettings) -> kubernetes.client.Configuration:
    """A client configuration: an explicit server URL, else in-cluster, else kubeconfig."""
    config = kubernetes.client.Configuration()
    if settings.server:
        config.host = settings.server.rstrip("/")
        return config
    # The config loaders carry no annotations; typed aliases keep mypy --strict meaningful here.
    incluster: Callable[..., None] = kubernetes.config.load_incluster_config
    kubeconfig: Callable[..., None] = kubernetes.config.load_kube_config
    if settings.kubeconfig is None:
        try:
            incluster(client_configuration=config)
            return config
        except kubernetes.config.ConfigException:
            pass
    kubeconfig(config_file=settings.kubeconfig, context=settings.context, client_configuration=config)
    return config


class Kube:
    """Async facade over one ApiClient; create it on any thread, call it from the event loop."""

    def __init__(self, config: kubernetes.client.Configuration, *, timeout_s: float = 30.0, identity: str = "") -> None:
        self._config = config
        self._client = kubernetes.client.ApiClient(config)
        # Tells the reconciler's requests (and which replica made them) apart in audit logs.
        self._client.user_agent = f"{USER_AGENT} {identity}".strip()
        self._timeout_s = timeout_s

    @classmethod
    def from_settings(cls, settings: KubeSettings, *, identity: str = "") -> Kube:
        return cls(load_configuration(settings), timeout_s=settings.request_timeout_s, identity=identity)

    def connection(self) -> Connection:
        config = self._config
        header = config.get_api_key_with_prefix("BearerToken") or config.get_api_key_with_prefix("authorization")
        token = header.split(" ", 1)[-1] if header else None
        return Connection(
            server=config.host,
            ca_path=config.ssl_ca_cert,
            insecure=not config.verify_ssl,
            token=token,
            certificate_path=config.cert_file,
            private_key_path=config.key_file,
        )

    def close(self) -> None:
        close: Callable[[], None] = self._client.close
        close()

    # Raw requests ---------------------------------------------------------------------------

    def _request_sync(
        self, method: str, path: str, *, query: Mapping[str, str] | None, body: Any, content_type: str | None
    ) -> Any:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        if query:
            path = f"{path}?{urlencode(query)}"
        method, url, headers, _body, _post = self._client.param_serialize(
            method, path, header_params=headers, auth_settings=["BearerToken"]
        )
        try:
            response = self._client.call_api(
                method, url, header_params=headers, body=body, _request_timeout=self._timeout_s
            )
            read: Callable[[], Any] = response.read
            read()
        except kubernetes.client.ApiException as exc:
            raise _api_error(exc.status or 0, exc.body) from None
        except Exception as exc:  # connection refused, timeouts: no HTTP answer at all
            raise KubeError(0, type(exc).__name__, str(exc)) from None
        if not 200 <= response.status < 300:
            raise _api_error(response.status, response.data)
        return json.loads(response.data) if response.data else None

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str | None = None,
    ) -> Any:
        return await asyncio.to_thread(
            self._request_sync, method, path, query=query, body=body, content_type=content_type
        )

    # Objects --------------------------------------------------------------------------------

    @staticmethod
    def path(kind: str, namespace: str | None, name: str | None = None, subresource: str | None = None) -> str:
        prefix, plural = KINDS[kind]
        path = prefix + (f"/namespaces/{quote(namespace)}" if namespace else "") + f"/{plural}"
        if name:
            path += f"/{quote(name)}"
        if subresource:
            path += f"/{subresource}"
        return path

    async def get(self, kind: str, namespace: str, name: str) -> Json | None:
        try:
            result: Json = await self.request("GET", self.path(kind, namespace, name))
            return result
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    async def list_objects(self, kind: str, namespace: str | None, *, label_selector: str | None = None) -> list[Json]:
        query = {"labelSelector": label_selector} if label_selector else None
        result = await self.request("GET", self.path(kind, namespace), query=query)
        return [item for item in (result or {}).get("items", []) if isinstance(item, dict)]

    async def create(self, obj: Mapping[str, Any]) -> Json:
        meta = obj.get("metadata", {})
        result: Json = await self.request(
            "POST", self.path(str(obj["kind"]), meta.get("namespace")), body=dict(obj), content_type="application/json"
        )
        return result

    async def patch_json(
        self, kind: str, namespace: str, name: str, ops: list[Json], *, subresource: str | None = None
    ) -> Json:
        result: Json = await self.request(
            "PATCH", self.path(kind, namespace, name, subresource), body=ops, content_type="application/json-patch+json"
        )
        return result

    async def patch_merge(
        self, kind: str, namespace: str, name: str, body: Mapping[str, Any], *, subresource: str | None = None
    ) -> Json:
        result: Json = await self.request(
            "PATCH",
            self.path(kind, namespace, name, subresource),
            body=dict(body),
            content_type="application/merge-patch+json",
        )
        return result

    async def delete(self, kind: str, namespace: str, name: str) -> None:
        try:
            await self.request("DELETE", self.path(kind, namespace, name))
        except KubeError as exc:
            if exc.status != 404:
                raise

    async def event(
        self,
        involved: Mapping[str, Any],
        *,
        type: str,
        reason: str,
        message: str,
        component: str = "modelfleet-operator",
    ) -> None:
        """Post a core/v1 Event about `involved`; a failure is logged, never raised (events are advisory)."""
        meta = involved.get("metadata", {})
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{meta.get('name')}.{uuid.uuid4().hex[:16]}", "namespace": meta.get("namespace")},
            "involvedObject": {
                "apiVersion": involved.get("apiVersion"),
                "kind": involved.get("kind"),
                "name": meta.get("name"),
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
            },
            "type": type,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": component},
            "reportingComponent": component,
            "reportingInstance": socket.gethostname(),
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            await self.create(event)
        except KubeError as exc:
            log.warning("Could not post event %s for %s: %s", reason, meta.get("name"), exc)


def _api_error(status: int, body: Any) -> KubeError:
    reason, message = "", ""
    try:
        document = json.loads(body) if body else {}
        reason, message = str(document.get("reason", "")), str(document.get("message", ""))
    except (ValueError, TypeError, AttributeError):
        message = str(body)[:500]
    return KubeError(status, reason or f"HTTP{status}", message)
