"""OpenAPI v2 and v3 documents for the local API, built from installed schemas, for kubectl.

kubectl needs OpenAPI v3 to validate (`--validate=strict`: it checks that PATCH takes the
`fieldValidation` parameter, then leaves the check to the server), to compute apply patches and for
`kubectl explain`. Built-in kinds come from the Kubernetes definitions that the `kubernetes_validate`
package ships (JSON Schema, converted back to OpenAPI); custom resources from their CRD's
openAPIV3Schema. Called by apiserver.py; documents are cached per set of served types. No network.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import importlib.resources
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from modelfleet.local.apitypes import JSON, ResourceType

_V3_REF = "#/components/schemas/"
_V2_REF = "#/definitions/"
_SPECIAL = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {"type": "string", "format": "int-or-string"},
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {"type": "string"},
}
_PATCH_TYPES_BUILTIN = (
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
)
_PATCH_TYPES_CUSTOM = ("application/apply-patch+yaml", "application/json-patch+json", "application/merge-patch+json")


def _definitions_file() -> Path:
    root = Path(str(importlib.resources.files("kubernetes_validate"))) / "kubernetes-json-schema"
    versions = [p for p in root.iterdir() if re.fullmatch(r"v\d+\.\d+\.\d+-local", p.name)]
    newest = max(versions, key=lambda p: tuple(int(x) for x in p.name[1:].removesuffix("-local").split(".")))
    return newest / "_definitions.json"


def _to_openapi(schema: Any, ref_prefix: str, *, name: str = "") -> Any:
    """kubernetes_validate's JSON Schema back to OpenAPI: single types, OpenAPI refs, no kind enums."""
    if isinstance(schema, list):
        return [_to_openapi(item, ref_prefix) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: JSON = {}
    for key, value in schema.items():
        if key == "$ref" and isinstance(value, str):
            out["$ref"] = ref_prefix + value.rsplit("/", 1)[-1]
        elif key == "type" and isinstance(value, list):
            types = [t for t in value if t != "null"]
            if types:
                out["type"] = types[0]
        elif key == "oneOf":
            out["x-kubernetes-int-or-string"] = True
        elif key == "properties":
            out[key] = {prop: _to_openapi(sub, ref_prefix, name=prop) for prop, sub in value.items()}
        elif key == "enum" and name in ("apiVersion", "kind"):
            continue  # the JSON Schema pins them; a real API server's document does not
        else:
            out[key] = _to_openapi(value, ref_prefix)
    return out


@functools.lru_cache(maxsize=1)
def builtin_definitions() -> dict[str, JSON]:
    """Every built-in definition in OpenAPI v3 form (refs to #/components/schemas/), read once."""
    raw = json.loads(_definitions_file().read_text())["$defs"]
    return {
        name: copy.deepcopy(_SPECIAL[name]) if name in _SPECIAL else _to_openapi(schema, _V3_REF)
        for name, schema in raw.items()
    }


@functools.lru_cache(maxsize=1)
def _builtin_by_gvk() -> dict[tuple[str, str, str], str]:
    found: dict[tuple[str, str, str], str] = {}
    for name, schema in builtin_definitions().items():
        for gvk in schema.get("x-kubernetes-group-version-kind") or []:
            found.setdefault((gvk.get("group", ""), gvk.get("version", ""), gvk.get("kind", "")), name)
    return found


def builtin_definition_name(group: str, version: str, kind: str) -> str | None:
    return _builtin_by_gvk().get((group, version, kind))


def _refs(schema: Any) -> Iterable[str]:
    if isinstance(schema, dict):
        for key, value in schema.items():
            if key == "$ref" and isinstance(value, str):
                yield value.rsplit("/", 1)[-1]
            else:
                yield from _refs(value)
    elif isinstance(schema, list):
        for item in schema:
            yield from _refs(item)


def _closure(roots: dict[str, JSON]) -> dict[str, JSON]:
    """`roots` plus every built-in definition they reference, transitively."""
    defs = builtin_definitions()
    out = dict(roots)
    pending = [ref for schema in roots.values() for ref in _refs(schema)]
    while pending:
        name = pending.pop()
        if name in out or name not in defs:
            continue
        out[name] = defs[name]
        pending.extend(_refs(defs[name]))
    return out


def custom_definition_name(rtype: ResourceType) -> str:
    """`io.modelfleet.v1alpha1.ModelDeployment`: reversed group, version, kind, as the API server names it."""
    return ".".join([*reversed(rtype.group.split(".")), rtype.version, rtype.kind])


def custom_schema(rtype: ResourceType) -> JSON:
    """A CRD version's openAPIV3Schema as a component: with metadata, apiVersion, kind and its GVK."""
    schema: JSON = copy.deepcopy(rtype.schema or {"type": "object", "x-kubernetes-preserve-unknown-fields": True})
    properties = schema.setdefault("properties", {})
    common = builtin_definitions()["io.k8s.api.core.v1.Pod"]["properties"]
    properties["apiVersion"] = copy.deepcopy(common["apiVersion"])
    properties["kind"] = copy.deepcopy(common["kind"])
    properties["metadata"] = copy.deepcopy(common["metadata"])
    schema.setdefault("type", "object")
    schema["x-kubernetes-group-version-kind"] = [{"group": rtype.group, "version": rtype.version, "kind": rtype.kind}]
    return schema


def schema_for(rtype: ResourceType) -> tuple[JSON, dict[str, JSON]] | None:
    """(the kind's schema, the components its refs resolve against), or None when none is known."""
    if not rtype.builtin:
        return custom_schema(rtype), builtin_definitions()
    name = builtin_definition_name(rtype.group, rtype.version, rtype.kind)
    return None if name is None else (builtin_definitions()[name], builtin_definitions())


# ---- paths ------------------------------------------------------------------------------------------
def _param(name: str, kind: str = "string") -> JSON:
    return {"name": name, "in": "query", "schema": {"type": kind, "uniqueItems": True}}


def _operation(rtype: ResourceType, action: str, ref: str, *, body: tuple[str, ...] = ()) -> JSON:
    params = [_param("dryRun"), _param("fieldManager")]
    if action in ("post", "put", "patch"):
        params.append(_param("fieldValidation"))
    if action == "patch":
        params.append(_param("force", "boolean"))
    operation: JSON = {
        "operationId": f"{action}{rtype.kind}",
        "parameters": params if action in ("post", "put", "patch") else [],
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": ref}}}}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": rtype.group, "version": rtype.version, "kind": rtype.kind},
    }
    if body:
        operation["requestBody"] = {"content": {media: {"schema": {"$ref": ref}} for media in body}, "required": True}
    return operation


def _paths(rtype: ResourceType, ref: str) -> JSON:
    prefix = f"/apis/{rtype.group}/{rtype.version}" if rtype.group else f"/api/{rtype.version}"
    collection = f"{prefix}/namespaces/{{namespace}}/{rtype.plural}" if rtype.namespaced else f"{prefix}/{rtype.plural}"
    patch_types = _PATCH_TYPES_BUILTIN if rtype.builtin else _PATCH_TYPES_CUSTOM
    item_ops = {
        "get": _operation(rtype, "get", ref),
        "put": _operation(rtype, "put", ref, body=("*/*",)),
        "patch": _operation(rtype, "patch", ref, body=patch_types),
        "delete": _operation(rtype, "delete", ref),
    }
    paths: JSON = {
        collection: {"get": _operation(rtype, "list", ref), "post": _operation(rtype, "post", ref, body=("*/*",))},
        f"{collection}/{{name}}": item_ops,
    }
    for sub in sorted(rtype.subresources & {"status"}):
        paths[f"{collection}/{{name}}/{sub}"] = {key: item_ops[key] for key in ("get", "put", "patch")}
    return paths


def _group_version_key(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def v3_document(types: Iterable[ResourceType], group: str, version: str) -> JSON | None:
    """The OpenAPI v3 document of one group/version, or None when nothing is served there."""
    roots: dict[str, JSON] = {}
    paths: JSON = {}
    for rtype in types:
        if rtype.group != group or rtype.version != version:
            continue
        if rtype.builtin:
            name = builtin_definition_name(group, version, rtype.kind)
            if name is None:
                continue
            roots[name] = builtin_definitions()[name]
        else:
            name = custom_definition_name(rtype)
            roots[name] = custom_schema(rtype)
        paths.update(_paths(rtype, _V3_REF + name))
    if not paths:
        return None
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (modelfleet local)", "version": "v1.37.0"},
        "paths": paths,
        "components": {"schemas": _closure(roots)},
    }


def v3_discovery(types: Iterable[ResourceType], documents: dict[str, JSON]) -> JSON:
    """`/openapi/v3`: each group/version's document address, with a hash that changes with it."""
    del types
    return {
        "paths": {
            key: {"serverRelativeURL": f"/openapi/v3/{key}?hash={digest(doc)}"}
            for key, doc in sorted(documents.items())
        }
    }


def digest(document: JSON) -> str:
    return hashlib.sha512(json.dumps(document, sort_keys=True).encode()).hexdigest()[:64].upper()


def v3_documents(types: Iterable[ResourceType]) -> dict[str, JSON]:
    """Every served group/version's v3 document, keyed as `/openapi/v3` lists them (`apis/apps/v1`)."""
    listed = list(types)
    out: dict[str, JSON] = {}
    for group, version in sorted({(t.group, t.version) for t in listed}):
        document = v3_document(listed, group, version)
        if document is not None:
            out[_group_version_key(group, version)] = document
    return out


def _to_v2(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: (v.replace(_V3_REF, _V2_REF) if k == "$ref" and isinstance(v, str) else _to_v2(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_to_v2(v) for v in value]
    return value


def v2_document(documents: dict[str, JSON]) -> JSON:
    """`/openapi/v2` as JSON (Swagger 2.0): every definition and path of the v3 documents."""
    definitions: JSON = {}
    paths: JSON = {}
    for document in documents.values():
        definitions.update(_to_v2(document["components"]["schemas"]))
        for path, operations in document["paths"].items():
            converted: JSON = {}
            for method, operation in operations.items():
                op = {k: v for k, v in operation.items() if k not in ("requestBody", "responses", "parameters")}
                op["parameters"] = [
                    {"name": p["name"], "in": "query", "type": p["schema"]["type"], "uniqueItems": True}
                    for p in operation.get("parameters", [])
                ]
                op["consumes"] = sorted((operation.get("requestBody") or {}).get("content", {})) or ["*/*"]
                op["produces"] = ["application/json"]
                ref = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
                op["responses"] = {"200": {"description": "OK", "schema": {"$ref": ref.replace(_V3_REF, _V2_REF)}}}
                converted[method] = op
            paths[path] = converted
    return {
        "swagger": "2.0",
        "info": {"title": "Kubernetes (modelfleet local)", "version": "v1.37.0"},
        "paths": paths,
        "definitions": definitions,
    }
