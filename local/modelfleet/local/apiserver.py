"""The local Kubernetes API: kmock 0.8's emulator over real HTTP, with a real API server's semantics.

`FleetApiEmulator` keeps kmock for the HTTP server, discovery data and `emulator.objects` (a mirror
for assertions), and routes every object request to the store (apistore.py), which fixes what kmock
0.8 lacks (see docs/test-infrastructure.md): metadata stamping, resourceVersion/generation, 201 on
create, 422 on a failed JSON-patch test, lists with kind and selectors, watches that subscribe before
the snapshot and resume from a resourceVersion, the status and scale subresources, PUT, deletecollection,
Namespaces, CRD registration, garbage collection. Every request lands in `emulator.audit`.
Used by `modelfleet-local`, by the tests (`run_apiserver`), and as `python -m modelfleet.local.apiserver`.
Must not start processes or controllers: it is only the API.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import importlib.resources
import json
import queue
import signal
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp.web
import attrs
import kmock
import yaml

from modelfleet.local import crds, fieldvalidation, openapi, portforward, protobody, scale, selectors, tables
from modelfleet.local.apistore import Store
from modelfleet.local.apitypes import JSON, ApiError, ApiRequest, AuditLog, ResourceType, ScalePaths
from modelfleet.local.apiwatch import Watch

CRD_TYPE = ("apiextensions.k8s.io", "customresourcedefinitions")
_PATCH_TYPES = {
    "application/json-patch+json": "json",
    "application/merge-patch+json": "merge",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
    "application/apply-patch+cbor": "apply",
}


@dataclass(frozen=True)
class Route:
    """An object request's address: /api/v1/... or /apis/<group>/<version>/..."""

    group: str
    version: str
    plural: str
    namespace: str | None
    name: str | None
    subresource: str | None


def parse_route(path: str, known: dict[tuple[str, str], ResourceType]) -> Route | None:
    """The object address in `path`, or None for discovery and non-API paths."""
    parts = [part for part in path.split("/") if part]
    if len(parts) >= 3 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 4 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace = None
    # /namespaces/<ns>/<plural>... unless <plural> is not a resource (then it is a Namespace's subresource).
    if len(rest) >= 3 and rest[0] == "namespaces" and (group, rest[2]) in known:
        namespace, rest = rest[1], rest[2:]
    if len(rest) > 3:
        return None
    return Route(
        group, version, rest[0], namespace, rest[1] if len(rest) > 1 else None, rest[2] if len(rest) > 2 else None
    )


def _bool_param(value: str | None) -> bool:
    return value in ("true", "1", "True")


def _int_param(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


@attrs.define(kw_only=True)
class FleetApiEmulator(kmock.KubernetesEmulator):
    """kmock's emulator with the store behind every object request (see the module docstring)."""

    store: Store = attrs.field(factory=Store, init=False)
    audit: AuditLog = attrs.field(factory=AuditLog, init=False)
    # kmock matches each request against its whole request log (O(n)); keep the log short.
    keep_requests: int = 40
    # The longest a watch stays open without ?timeoutSeconds (clients re-watch from their version).
    max_watch_seconds: float = 1800.0
    _kmock_resources: dict[tuple[str, str], Any] = attrs.field(factory=dict, init=False)
    # Set by the local kubelet: (namespace, pod, container or None) -> the container's log file.
    pod_logs: Callable[[str, str, str | None], Path | None] | None = attrs.field(default=None, init=False)
    # OpenAPI v3 documents by group/version key, built on first request; dropped when a CRD changes.
    _openapi: dict[str, JSON] | None = attrs.field(default=None, init=False)
    # "websocket" or "spdy" per port-forward request, for tests and the audit of what kubectl used.
    port_forwards: list[str] = attrs.field(factory=list, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        # kmock's load_bundled() uses the deprecated importlib.resources.read_binary (a warning,
        # which our tests turn into an error); read the same bundled file the current way.
        bundled = importlib.resources.files("kmock._internal").joinpath("resources.json.gz").read_bytes()
        self.resources.load_data(gzip.decompress(bundled))
        for resource in self._served():
            info = self.resources[resource]
            if not info.singular and info.kind:
                info.singular = info.kind.lower()
            if (resource.group, resource.plural) in self.store.types:
                continue  # a second version of the same kind (autoscaling v1/v2): keep the first
            self.store.register(
                ResourceType(
                    group=resource.group or "",
                    version=resource.version or "",
                    plural=resource.plural or "",
                    kind=info.kind or "",
                    namespaced=bool(info.namespaced),
                    subresources=frozenset(info.subresources),
                    scale=ScalePaths() if "scale" in info.subresources else None,
                    singular=info.singular or "",
                    short_names=frozenset(info.shortnames),
                )
            )
            self._kmock_resources[(resource.group or "", resource.plural or "")] = resource
        self.store.listeners.append(self._mirror)
        self.store.listeners.append(self._on_crd_change)
        namespaces = self.store.type_of("", "namespaces")
        for name in ("default", "kube-system", "kube-public"):
            self.store.create(namespaces, None, {"metadata": {"name": name}, "status": {"phase": "Active"}})

    def _served(self) -> list[kmock.resource]:
        """kmock's discovery keys, copied (CRD changes edit the array while callers iterate)."""
        return [resource for resource in self.resources]

    # ---- bookkeeping hooks ---------------------------------------------------------------------
    def _mirror(self, rtype: ResourceType, event_type: str, obj: JSON) -> None:
        """Keep kmock's `objects` (what tests assert on) in step with the store (no history kept)."""
        resource = self._kmock_resources.get(rtype.key) or kmock.resource(rtype.group, rtype.version, rtype.plural)
        meta = obj["metadata"]
        key = (resource, meta.get("namespace") if rtype.namespaced else None, meta["name"])
        if event_type == "DELETED":
            with contextlib.suppress(KeyError):
                del self.objects[key]
        else:
            self.objects[key] = obj

    def _on_crd_change(self, rtype: ResourceType, event_type: str, obj: JSON) -> None:
        if rtype.key != CRD_TYPE:
            return
        self._openapi = None
        if event_type == "DELETED":
            for served in crds.resource_types(obj):
                for item in list(self.store.list_objects(served)):
                    self.store._remove(served, item)  # the API server drops every CR of a deleted CRD
                self.store.types.pop(served.key, None)
                resource = self._kmock_resources.pop(served.key, None)
                if resource is not None:
                    with contextlib.suppress(KeyError):
                        del self.resources[resource]
            return
        for index, served in enumerate(crds.resource_types(obj)):
            if index == 0:  # the storage version: every version shares its objects
                self.store.register(served)
            resource = kmock.resource(served.group, served.version, served.plural)
            self._kmock_resources.setdefault(served.key, resource)
            self.resources[resource] = kmock.ResourceInfo(
                kind=served.kind,
                singular=served.singular,
                namespaced=served.namespaced,
                shortnames=set(served.short_names),
                subresources=set(served.subresources),
                verbs={"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"},
            )
        status = crds.established_status(obj)
        if obj.get("status") != status:
            crd_type = self.store.types[CRD_TYPE]
            self.store.patch(crd_type, None, obj["metadata"]["name"], {"status": status}, subresource="status")

    # ---- discovery -----------------------------------------------------------------------------
    async def _serve_version(self, request: kmock.Request) -> Any:
        """APIResourceList for /api/v1 and /apis/<group>/<version>, with proper subresource entries.

        kmock 0.8 says groupVersion "/v1" for the core group (kubectl then knows no core kind) and
        lists `<plural>/scale` as the parent kind (kubectl scale then fails); both fixed here."""
        assert request.resource is not None
        group, version = request.resource.group or "", request.resource.version or ""
        entries: list[JSON] = []
        for resource in self._served():
            if (resource.group or "") != group or resource.version != version:
                continue
            rtype = self.store.types.get((group, resource.plural or ""))
            if rtype is None:
                continue
            info = self.resources[resource]
            verbs = sorted(info.verbs) or [
                "create",
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "update",
                "watch",
            ]
            entries.append(
                {
                    "name": rtype.plural,
                    "singularName": rtype.singular,
                    "namespaced": rtype.namespaced,
                    "kind": rtype.kind,
                    "verbs": verbs,
                    "shortNames": sorted(rtype.short_names),
                    "categories": sorted(info.categories),
                }
            )
            for sub in sorted(rtype.subresources):
                entry: JSON = {
                    "name": f"{rtype.plural}/{sub}",
                    "singularName": "",
                    "namespaced": rtype.namespaced,
                    "kind": rtype.kind,
                    "verbs": ["get", "patch", "update"],
                }
                if sub == "scale":
                    entry.update(group="autoscaling", version="v1", kind="Scale")
                entries.append(entry)
        if not entries and group:
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({group}/{version})")
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": entries,
        }

    async def _render_error(self, exc: Exception) -> aiohttp.web.StreamResponse:
        if isinstance(exc, ApiError):
            return aiohttp.web.json_response(exc.status(), status=exc.code)
        return await super()._render_error(exc)

    # ---- HTTP entry --------------------------------------------------------------------------
    # ---- OpenAPI -------------------------------------------------------------------------------
    def openapi_documents(self) -> dict[str, JSON]:
        if self._openapi is None:
            self._openapi = openapi.v3_documents(list(self.store.types.values()))
        return self._openapi

    def _serve_openapi(self, raw: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        """/openapi/v2 (JSON only: kubectl asks for protobuf there, gets 406 and uses v3) and /openapi/v3."""
        path = raw.path.rstrip("/")
        accept = raw.headers.get("Accept", "")
        if path == "/openapi/v2":
            if "json" not in accept and accept not in ("", "*/*"):
                error = ApiError(406, "NotAcceptable", "only application/json is served here; kubectl uses /openapi/v3")
                return aiohttp.web.json_response(error.status(), status=406)
            return _json(openapi.v2_document(self.openapi_documents()))
        documents = self.openapi_documents()
        if path == "/openapi/v3":
            return _json(openapi.v3_discovery(self.store.types.values(), documents))
        document = documents.get(path.removeprefix("/openapi/v3/"))
        if document is None:
            error = ApiError(404, "NotFound", f"no OpenAPI document at {path}")
            return aiohttp.web.json_response(error.status(), status=404)
        return _json(document, headers={"Cache-Control": "public, immutable"} if raw.query.get("hash") else {})

    def _check_fields(self, raw: aiohttp.web.BaseRequest, rtype: ResourceType, verb: str, body: Any) -> list[str]:
        """fieldValidation=Strict: ApiError 400 on unknown fields; Warn: the warnings to send."""
        directive = raw.query.get("fieldValidation", "")
        if directive not in ("Strict", "Warn") or not isinstance(body, dict):
            return []
        if verb == "patch" and "json-patch" in raw.headers.get("Content-Type", ""):
            return []
        found = openapi.schema_for(rtype)
        if found is None:
            return []
        schema, components = found
        unknown = fieldvalidation.unknown_fields(body, schema, components)
        if unknown and directive == "Strict":
            raise ApiError(400, "BadRequest", fieldvalidation.strict_error_message(rtype.kind, rtype.version, unknown))
        return [f'unknown field "{field}"' for field in unknown]

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        if raw_request.path.startswith("/openapi/"):
            return self._serve_openapi(raw_request)
        route = parse_route(raw_request.path, self.store.types)
        if route is None:
            if len(self._requests) > self.keep_requests:
                del self._requests[: -self.keep_requests // 2]
            if raw_request.path == "/version/":  # the kubernetes client's VersionApi asks this
                raw_request = raw_request.clone(rel_url=raw_request.rel_url.with_path("/version"))
            return await super().__call__(raw_request)
        user_agent = raw_request.headers.get("User-Agent", "")
        verb = _verb(raw_request, route)
        record = ApiRequest(
            verb=verb,
            group=route.group,
            resource=route.plural,
            namespace=route.namespace,
            name=route.name,
            subresource=route.subresource,
            user_agent=user_agent,
        )
        try:
            rtype = self.store.type_of(route.group, route.plural)
            if verb == "watch":
                self.audit.add(record)
                return await self._serve_watch_stream(raw_request, rtype, route)
            if route.subresource == "portforward" and rtype.key == ("", "pods"):
                self.audit.add(record)
                return await self._port_forward(raw_request, route)
            if route.subresource == "log" and rtype.key == ("", "pods") and verb == "get":
                text = self._pod_log(route, raw_request.query)
                self.audit.add(record)
                return aiohttp.web.Response(text=text, content_type="text/plain")
            body = await _read_body(raw_request)
            warnings = (
                self._check_fields(raw_request, rtype, verb, body) if verb in ("create", "update", "patch") else []
            )
            code, payload = self._dispatch(raw_request, rtype, route, verb, body)
            if verb in ("get", "list") and "as=Table" in raw_request.headers.get("Accept", ""):
                payload = tables.render(rtype, payload)
        except ApiError as exc:
            code, payload, warnings = exc.code, exc.status(), []
        self.audit.add(attrs_evolve(record, code=code))
        headers = [("Warning", '299 - "{}"'.format(w.replace('"', '\\"'))) for w in warnings]
        return aiohttp.web.Response(
            body=json.dumps(payload).encode(), status=code, headers=headers, content_type="application/json"
        )

    async def _port_forward(self, raw: aiohttp.web.BaseRequest, route: Route) -> aiohttp.web.StreamResponse:
        """pods/<name>/portforward: to the pod's loopback address (status.podIP), as the kubelet would."""
        pod = self.store.get(self.store.type_of("", "pods"), route.namespace, route.name or "")
        status = pod.get("status") or {}
        if status.get("phase") != "Running" or not status.get("podIP"):
            raise ApiError(400, "BadRequest", f"pod {route.name} is not running (phase {status.get('phase')})")
        self.port_forwards.append("websocket" if portforward.wants_websocket(raw) else "spdy")
        return await portforward.serve(raw, str(status["podIP"]))

    def _pod_log(self, route: Route, query: Any) -> str:
        """`kubectl logs`: the container's output as the local kubelet captured it."""
        pod = self.store.get(self.store.type_of("", "pods"), route.namespace, route.name or "")
        path = (
            None
            if self.pod_logs is None
            else self.pod_logs(pod["metadata"]["namespace"], pod["metadata"]["name"], query.get("container"))
        )
        if path is None or not path.exists():
            raise ApiError(400, "BadRequest", f'container in pod "{route.name}" is waiting to start')
        text = path.read_text(errors="replace")
        tail = _int_param(query.get("tailLines"))
        if tail is not None:
            text = "".join(text.splitlines(keepends=True)[-tail:]) if tail > 0 else ""
        return text

    def _dispatch(
        self, raw: aiohttp.web.BaseRequest, rtype: ResourceType, route: Route, verb: str, body: Any
    ) -> tuple[int, JSON]:
        store, query = self.store, raw.query
        namespace, name, sub = route.namespace, route.name, route.subresource
        dry_run = query.get("dryRun") == "All"
        labels = selectors.parse_label_selector(query.get("labelSelector", "")) if query.get("labelSelector") else None
        fields = selectors.parse_field_selector(query.get("fieldSelector", "")) if query.get("fieldSelector") else None
        if rtype.namespaced is False:
            namespace = None
        if sub not in (None, "status", "scale"):
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({sub})")
        if sub == "scale":
            return self._dispatch_scale(rtype, namespace, name or "", verb, body, raw, dry_run=dry_run)
        if verb == "get":
            return 200, store.get(rtype, namespace, name or "")
        if verb == "list":
            items = store.list_objects(rtype, namespace, labels=labels, fields=fields)
            return 200, {
                "apiVersion": rtype.api_version,
                "kind": f"{rtype.kind}List",
                "metadata": {"resourceVersion": str(store.resource_version)},
                "items": items,
            }
        if verb == "create":
            return 201, store.create(rtype, namespace, body, dry_run=dry_run)
        if verb == "update":
            return 200, store.update(rtype, namespace, name or "", body, subresource=sub, dry_run=dry_run)
        if verb == "patch":
            content_type = raw.headers.get("Content-Type", "").split(";")[0].strip()
            patch_type = _PATCH_TYPES.get(content_type)
            if patch_type is None:
                raise ApiError(
                    415, "UnsupportedMediaType", f"the body of the request was in an unknown format: {content_type}"
                )
            exists = store.find(rtype, namespace, name or "") is not None
            obj = store.patch(
                rtype,
                namespace,
                name or "",
                body,
                patch_type=patch_type,
                subresource=sub,
                field_manager=query.get("fieldManager", ""),
                dry_run=dry_run,
            )
            return (200 if exists else 201), obj
        if verb == "delete":
            options = body if isinstance(body, dict) else {}
            grace = _int_param(query.get("gracePeriodSeconds"))
            if grace is None and isinstance(options.get("gracePeriodSeconds"), int):
                grace = options["gracePeriodSeconds"]
            propagation = query.get("propagationPolicy") or options.get("propagationPolicy")
            if propagation is None and "orphanDependents" in options:
                propagation = "Orphan" if options["orphanDependents"] else "Background"
            obj = store.delete(
                rtype,
                namespace,
                name or "",
                propagation=propagation,
                grace_seconds=grace,
                preconditions=options.get("preconditions"),
                dry_run=dry_run,
            )
            return 200, obj
        if verb == "deletecollection":
            deleted = store.delete_collection(
                rtype, namespace, labels=labels, fields=fields, propagation=query.get("propagationPolicy")
            )
            return 200, {
                "apiVersion": rtype.api_version,
                "kind": f"{rtype.kind}List",
                "metadata": {"resourceVersion": str(store.resource_version)},
                "items": deleted,
            }
        raise ApiError(405, "MethodNotAllowed", f"{raw.method} is not supported here")

    def _dispatch_scale(
        self,
        rtype: ResourceType,
        namespace: str | None,
        name: str,
        verb: str,
        body: Any,
        raw: aiohttp.web.BaseRequest,
        *,
        dry_run: bool,
    ) -> tuple[int, JSON]:
        obj = self.store.get(rtype, namespace, name)
        if verb == "get":
            return 200, scale.to_scale(rtype, obj)
        if verb not in ("update", "patch"):
            raise ApiError(405, "MethodNotAllowed", f"{verb} is not supported on scale")
        content_type = raw.headers.get("Content-Type", "").split(";")[0].strip()
        patch_type = "put" if verb == "update" else _PATCH_TYPES.get(content_type, "merge")
        patch = scale.replicas_patch(rtype, obj, body, patch_type=patch_type)
        updated = self.store.patch(rtype, namespace, name, patch, patch_type="merge", dry_run=dry_run)
        return 200, scale.to_scale(rtype, updated)

    async def _serve_watch_stream(
        self, raw: aiohttp.web.BaseRequest, rtype: ResourceType, route: Route
    ) -> aiohttp.web.StreamResponse:
        query = raw.query
        labels = selectors.parse_label_selector(query["labelSelector"]) if query.get("labelSelector") else None
        fields = selectors.parse_field_selector(query["fieldSelector"]) if query.get("fieldSelector") else None
        since = _int_param(query.get("resourceVersion"))
        initial = _bool_param(query.get("sendInitialEvents"))
        watch = self.store.watch(
            rtype,
            route.namespace if rtype.namespaced else None,
            name=route.name,
            labels=labels,
            fields=fields,
            since=None if initial else since,
        )
        if initial:
            watch.send(
                {
                    "type": "BOOKMARK",
                    "object": {
                        "apiVersion": rtype.api_version,
                        "kind": rtype.kind,
                        "metadata": {
                            "resourceVersion": str(self.store.resource_version),
                            "annotations": {"k8s.io/initial-events-end": "true"},
                        },
                    },
                }
            )
        response = aiohttp.web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        timeout = _int_param(query.get("timeoutSeconds"))
        try:
            await response.prepare(raw)
            as_table = rtype if "as=Table" in raw.headers.get("Accept", "") else None
            await _pump(
                watch, response, timeout=float(timeout) if timeout else self.max_watch_seconds, as_table=as_table
            )
            await response.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            watch.close()
        return response


async def _pump(
    watch: Watch, response: aiohttp.web.StreamResponse, *, timeout: float, as_table: ResourceType | None
) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        left = deadline - loop.time()
        if left <= 0:
            return
        event = await watch.next(timeout=left)
        if event is None:
            return
        if as_table is not None and event["type"] in ("ADDED", "MODIFIED", "DELETED"):
            event = {"type": event["type"], "object": tables.render(as_table, event["object"])}
        await response.write(json.dumps(event).encode() + b"\n")


def attrs_evolve(record: ApiRequest, *, code: int) -> ApiRequest:
    from dataclasses import replace

    return replace(record, code=code)


def _verb(raw: aiohttp.web.BaseRequest, route: Route) -> str:
    method = raw.method.upper()
    if method == "GET":
        if _bool_param(raw.query.get("watch")):
            return "watch"
        return "get" if route.name else "list"
    if method == "POST":
        return "create"
    if method == "PUT":
        return "update"
    if method == "PATCH":
        return "patch"
    if method == "DELETE":
        return "delete" if route.name else "deletecollection"
    return method.lower()


def _json(document: JSON, *, headers: dict[str, str] | None = None) -> aiohttp.web.Response:
    return aiohttp.web.Response(body=json.dumps(document).encode(), content_type="application/json", headers=headers)


async def _read_body(raw: aiohttp.web.BaseRequest) -> Any:
    data = await raw.read()
    if raw.headers.get("Content-Type", "").startswith(protobody.PROTOBUF):
        return protobody.decode(data)  # kubectl's typed clients (kubectl create namespace ...)
    text = data.decode("utf-8", errors="replace")
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        try:
            return yaml.safe_load(text)  # apply-patch+yaml bodies and hand-written YAML
        except yaml.YAMLError as exc:
            raise ApiError(400, "BadRequest", f"cannot decode the request body: {exc}") from exc


# ---- running it ---------------------------------------------------------------------------------
@dataclass
class RunningApi:
    """A started API server: its base URL (no trailing slash) and the emulator behind it."""

    url: str
    emulator: FleetApiEmulator
    host: str
    port: int

    @property
    def store(self) -> Store:
        return self.emulator.store

    def kubeconfig(self, *, namespace: str = "default") -> str:
        """A kubeconfig document (YAML) that points kubectl, kopf and the kubernetes client here."""
        return kubeconfig_text(self.url, namespace=namespace)


def kubeconfig_text(url: str, *, namespace: str = "default") -> str:
    return str(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "modelfleet-local",
                "clusters": [{"name": "modelfleet-local", "cluster": {"server": url}}],
                "users": [{"name": "modelfleet-local", "user": {}}],
                "contexts": [
                    {
                        "name": "modelfleet-local",
                        "context": {"cluster": "modelfleet-local", "user": "modelfleet-local", "namespace": namespace},
                    }
                ],
            },
            sort_keys=False,
        )
    )


@contextlib.asynccontextmanager
async def run_apiserver(host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[RunningApi]:
    """Serve the API on host:port (0 picks a free port) for the duration of the block."""
    emulator = FleetApiEmulator()
    async with emulator, kmock.Server(emulator, host=host, port=port or None) as server:
        url = str(server.url).rstrip("/")
        try:
            yield RunningApi(url=url, emulator=emulator, host=server.host, port=server.port)
        finally:
            emulator.store.close_watches()


@contextlib.contextmanager
def apiserver_thread(host: str = "127.0.0.1", port: int = 0) -> Iterator[RunningApi]:
    """The API served from its own thread and event loop, for blocking clients (kubernetes, kubectl).

    Read `api.emulator` from the caller's thread only between requests (it is not locked)."""
    started: queue.Queue[RunningApi | BaseException] = queue.Queue()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def serve() -> None:
        try:
            async with run_apiserver(host=host, port=port) as api:
                started.put(api)
                await stop.wait()
        except BaseException as exc:  # handed to the caller's thread
            started.put(exc)

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), name="local-apiserver", daemon=True)
    thread.start()
    result = started.get(timeout=30)
    if isinstance(result, BaseException):
        raise result
    try:
        yield result
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=30)
        loop.close()


async def _main(host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with run_apiserver(host=host, port=port) as api:
        print(f"READY {api.url}/", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m modelfleet.local.apiserver", description="An in-memory Kubernetes API on loopback."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args(argv)
    asyncio.run(_main(args.host, args.port))


if __name__ == "__main__":
    main()
