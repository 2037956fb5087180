"""Server-side field validation (`?fieldValidation=Strict|Warn`): unknown fields in a request body.

kubectl's `--validate=strict` (its default) asks the server to refuse fields the schema does not
declare, once the OpenAPI document (openapi.py) says PATCH takes `fieldValidation`. Called by
apiserver.py on create, update and merge/strategic/apply patches; json-patch bodies are not checked.
Pure functions over the body and an OpenAPI v3 schema; never changes the body.
"""

from __future__ import annotations

from typing import Any

from modelfleet.local.apitypes import JSON

_OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


def _resolve(schema: JSON, components: dict[str, JSON]) -> JSON:
    for _ in range(20):
        ref = schema.get("$ref")
        if ref is None and len(schema.get("allOf") or []) == 1:
            ref = schema["allOf"][0].get("$ref")
        if ref is None:
            return schema
        schema = components.get(str(ref).rsplit("/", 1)[-1], {})
    return schema


def unknown_fields(body: Any, schema: JSON, components: dict[str, JSON]) -> list[str]:
    """Dotted paths (`spec.replicaz`, `spec.containers[0].imagez`) of fields `schema` does not declare.

    Patch directives (`$patch`, `$setElementOrder/...`, `$retainKeys`) are not fields and are skipped."""
    found: list[str] = []
    _walk(body, schema, components, "", found)
    return found


def _walk(value: Any, schema: JSON, components: dict[str, JSON], path: str, found: list[str]) -> None:
    schema = _resolve(schema, components)
    if schema.get("x-kubernetes-preserve-unknown-fields") or schema.get("x-kubernetes-embedded-resource"):
        return
    if isinstance(value, dict):
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        if path == "metadata" and properties is None:  # a CRD's schema says only `type: object`
            _walk(value, components.get(_OBJECT_META, {}), components, path, found)
            return
        for key, item in value.items():
            if key.startswith("$"):
                continue
            where = f"{path}.{key}" if path else key
            if properties is not None and key in properties:
                _walk(item, properties[key], components, where, found)
            elif isinstance(extra, dict):
                _walk(item, extra, components, where, found)
            elif properties is not None and extra is not True:
                found.append(where)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            _walk(item, schema["items"], components, f"{path}[{index}]", found)


def strict_error_message(kind: str, version: str, fields: list[str]) -> str:
    """The message a real API server gives for fieldValidation=Strict."""
    listed = ", ".join(f'unknown field "{field}"' for field in fields)
    return f'{kind} in version "{version}" cannot be handled as a {kind}: strict decoding error: {listed}'
