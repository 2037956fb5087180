"""Kubernetes protobuf request bodies → JSON objects, for the kinds kubectl's typed clients send.

`kubectl create namespace|configmap|secret|serviceaccount` posts `application/vnd.kubernetes.protobuf`
and does not fall back to JSON on 415, so the local API (apiserver.py) decodes these kinds. The
field numbers are transcribed from k8s.io/api and k8s.io/apimachinery's generated.proto. Any other
kind raises ApiError 415 naming the JSON route (`kubectl apply -f`). Pure functions, no I/O.
"""

from __future__ import annotations

import base64
import datetime
from collections.abc import Iterator
from typing import Any

from modelfleet.local.apitypes import JSON, ApiError

PROTOBUF = "application/vnd.kubernetes.protobuf"
_MAGIC = b"k8s\x00"

# A message schema: field number -> (JSON name, kind). Kinds: "string", "bytes" (base64 in JSON),
# "int", "bool", "time", "strings" (repeated string), "map" (string->string), "bytesmap"
# (string->base64), or a nested schema name; a trailing "[]" means repeated.
Schema = dict[int, tuple[str, str]]
_SCHEMAS: dict[str, Schema] = {
    "ObjectMeta": {
        1: ("name", "string"),
        2: ("generateName", "string"),
        3: ("namespace", "string"),
        5: ("uid", "string"),
        6: ("resourceVersion", "string"),
        7: ("generation", "int"),
        8: ("creationTimestamp", "time"),
        11: ("labels", "map"),
        12: ("annotations", "map"),
        13: ("ownerReferences", "OwnerReference[]"),
        14: ("finalizers", "strings"),
    },
    "OwnerReference": {
        1: ("kind", "string"),
        3: ("name", "string"),
        4: ("uid", "string"),
        5: ("apiVersion", "string"),
        6: ("controller", "bool"),
        7: ("blockOwnerDeletion", "bool"),
    },
    "Namespace": {1: ("metadata", "ObjectMeta"), 2: ("spec", "NamespaceSpec")},
    "NamespaceSpec": {1: ("finalizers", "strings")},
    "ConfigMap": {
        1: ("metadata", "ObjectMeta"),
        2: ("data", "map"),
        3: ("binaryData", "bytesmap"),
        4: ("immutable", "bool"),
    },
    "Secret": {
        1: ("metadata", "ObjectMeta"),
        2: ("data", "bytesmap"),
        3: ("type", "string"),
        4: ("stringData", "map"),
        5: ("immutable", "bool"),
    },
    "ServiceAccount": {
        1: ("metadata", "ObjectMeta"),
        2: ("secrets", "ObjectReference[]"),
        3: ("imagePullSecrets", "LocalObjectReference[]"),
        4: ("automountServiceAccountToken", "bool"),
    },
    "ObjectReference": {
        1: ("kind", "string"),
        2: ("namespace", "string"),
        3: ("name", "string"),
        4: ("uid", "string"),
        5: ("apiVersion", "string"),
    },
    "LocalObjectReference": {1: ("name", "string")},
    "Time": {1: ("seconds", "int"), 2: ("nanos", "int")},
}
DECODABLE = frozenset({("v1", "Namespace"), ("v1", "ConfigMap"), ("v1", "Secret"), ("v1", "ServiceAccount")})


def _fields(data: bytes) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) for each field: ints for varints, bytes for length-delimited."""
    pos = 0

    def varint() -> int:
        nonlocal pos
        result, shift = 0, 0
        while True:
            if pos >= len(data):
                raise ValueError("truncated varint")
            byte = data[pos]
            pos += 1
            result |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return result
            shift += 7

    while pos < len(data):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            yield number, wire, varint()
        elif wire == 2:
            size = varint()
            if pos + size > len(data):
                raise ValueError("truncated field")
            yield number, wire, data[pos : pos + size]
            pos += size
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            yield number, wire, data[pos : pos + width]
            pos += width
        else:
            raise ValueError(f"unsupported wire type {wire}")


def _decode(data: bytes, schema_name: str) -> JSON:
    schema = _SCHEMAS[schema_name]
    out: JSON = {}
    for number, _, value in _fields(data):
        if number not in schema:
            continue  # a field this decoder does not know: dropped, as the API prunes unknown fields
        name, kind = schema[number]
        repeated = kind.endswith("[]")
        kind = kind.removesuffix("[]")
        if kind in ("map", "bytesmap"):
            entry = {n: v for n, _, v in _fields(value)}
            raw = entry.get(2, b"")
            text = base64.b64encode(raw).decode() if kind == "bytesmap" else raw.decode()
            out.setdefault(name, {})[entry.get(1, b"").decode()] = text
        elif kind == "strings":
            out.setdefault(name, []).append(value.decode())
        elif kind == "string":
            if value:  # Go's omitempty: kubectl sends "" for every unset string
                out[name] = value.decode()
        elif kind == "bytes":
            out[name] = base64.b64encode(value).decode()
        elif kind == "int":
            if value:
                out[name] = value
        elif kind == "bool":
            out[name] = bool(value)
        elif kind == "time":
            seconds = _decode(value, "Time").get("seconds", 0)
            if seconds:
                out[name] = datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        elif repeated:
            out.setdefault(name, []).append(_decode(value, kind))
        else:
            out[name] = _decode(value, kind)
    return out


def decode(body: bytes) -> JSON:
    """The JSON object a protobuf body carries; ApiError 415 for kinds this decoder does not know."""
    if not body.startswith(_MAGIC):
        raise ApiError(400, "BadRequest", "cannot decode the request body: protobuf without the k8s envelope")
    try:
        unknown = {n: v for n, _, v in _fields(body[len(_MAGIC) :])}
        type_meta = {n: v.decode() for n, _, v in _fields(unknown.get(1, b""))}
        api_version, kind = type_meta.get(1, ""), type_meta.get(2, "")
        if (api_version, kind) not in DECODABLE:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                f"the local API decodes protobuf only for {', '.join(sorted(k for _, k in DECODABLE))}; "
                f"send {kind or 'this object'} as JSON (kubectl apply -f / kubectl create -f)",
            )
        obj = _decode(unknown.get(2, b""), kind)
    except ValueError as exc:
        raise ApiError(400, "BadRequest", f"cannot decode the request body: {exc}") from exc
    return {"apiVersion": api_version, "kind": kind, **obj}
