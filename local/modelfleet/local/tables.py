"""Server-side printing: the meta.k8s.io/v1 Table that `kubectl get` asks for.

Called by the API emulator when a GET, list or watch carries `Accept: ...;as=Table`. Custom resources
get their CRD's additionalPrinterColumns (simple JSONPath: `.a.b`, `.a[0]`, `.a[?(@.k=="v")].b`);
pods, Deployments, Services and Events get a real API server's columns; anything else NAME and AGE.
Pure functions: never changes the objects.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable
from typing import Any

from modelfleet.local.apitypes import JSON, ResourceType

_FILTER = re.compile(r"^\?\(@\.([\w.-]+)\s*==\s*['\"]?([^'\"]*)['\"]?\)$")


def jsonpath(obj: Any, path: str) -> Any:
    """Evaluate a simple JSONPath (the subset printer columns use); None when absent."""
    tokens = re.findall(r"\[[^\]]*\]|[^.\[\]]+", path.strip().lstrip("{").rstrip("}").lstrip("$"))
    current = obj
    for token in tokens:
        if current is None:
            return None
        if token.startswith("["):
            inner = token[1:-1]
            match = _FILTER.match(inner)
            if match and isinstance(current, list):
                key, value = match.groups()
                current = next(
                    (item for item in current if isinstance(item, dict) and str(jsonpath(item, "." + key)) == value),
                    None,
                )
            elif inner.lstrip("-").isdigit() and isinstance(current, list):
                index = int(inner)
                current = current[index] if -len(current) <= index < len(current) else None
            elif inner == "*":
                continue
            else:
                return None
        elif isinstance(current, dict):
            current = current.get(token)
        else:
            return None
    return current


def age(timestamp: str | None) -> str:
    if not timestamp:
        return "<unknown>"
    created = datetime.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC)
    seconds = int((datetime.datetime.now(datetime.UTC) - created).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


Column = tuple[str, str, int, Callable[[JSON], Any]]  # name, type, priority, cell


def _pod_status(pod: JSON) -> str:
    if pod["metadata"].get("deletionTimestamp"):
        return "Terminating"
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        waiting = (status.get("state") or {}).get("waiting") or {}
        if waiting.get("reason"):
            return str(waiting["reason"])
    return str((pod.get("status") or {}).get("phase", "Pending"))


def _pod_ready(pod: JSON) -> str:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    total = len((pod.get("spec") or {}).get("containers") or [])
    return f"{sum(1 for s in statuses if s.get('ready'))}/{total}"


def _ports(service: JSON) -> str:
    return ",".join(
        f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in (service.get("spec") or {}).get("ports") or []
    )


def _event_time(event: JSON) -> Any:
    return (
        event.get("lastTimestamp")
        or (event.get("series") or {}).get("lastObservedTime")
        or event.get("eventTime")
        or event.get("firstTimestamp")
        or event["metadata"].get("creationTimestamp")
    )


def _event_object(event: JSON) -> str:
    involved = event.get("involvedObject") or event.get("regarding") or {}
    return f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}"


def _short_time(timestamp: Any) -> str:
    # Events may carry MicroTime (fractional seconds); age() reads whole seconds.
    try:
        return age(str(timestamp).split(".")[0].rstrip("Z") + "Z") if timestamp else "<unknown>"
    except ValueError:
        return "<unknown>"


_EVENT_COLUMNS: list[Column] = [
    ("Last Seen", "string", 0, lambda e: _short_time(_event_time(e))),
    ("Type", "string", 0, lambda e: e.get("type", "")),
    ("Reason", "string", 0, lambda e: e.get("reason", "")),
    ("Object", "string", 0, _event_object),
    ("Subobject", "string", 1, lambda e: (e.get("involvedObject") or {}).get("fieldPath", "")),
    ("Source", "string", 1, lambda e: (e.get("source") or {}).get("component", "") or e.get("reportingComponent", "")),
    ("Message", "string", 0, lambda e: e.get("message", "") or e.get("note", "")),
    ("First Seen", "string", 1, lambda e: _short_time(e.get("firstTimestamp") or e.get("eventTime"))),
    ("Count", "integer", 1, lambda e: e.get("count") or (e.get("series") or {}).get("count") or 1),
    ("Name", "string", 1, lambda e: e["metadata"]["name"]),
]
# Kinds whose table does not start with the object's name (a real API server's event table).
_NO_NAME_COLUMN = frozenset({("", "events"), ("events.k8s.io", "events")})

_BUILTIN: dict[tuple[str, str], list[Column]] = {
    ("", "events"): _EVENT_COLUMNS,
    ("events.k8s.io", "events"): _EVENT_COLUMNS,
    ("", "pods"): [
        ("Ready", "string", 0, _pod_ready),
        ("Status", "string", 0, _pod_status),
        (
            "Restarts",
            "integer",
            0,
            lambda p: sum(
                int(s.get("restartCount", 0)) for s in (p.get("status") or {}).get("containerStatuses") or []
            ),
        ),
        ("Age", "string", 0, lambda p: age(p["metadata"].get("creationTimestamp"))),
        ("IP", "string", 1, lambda p: (p.get("status") or {}).get("podIP", "<none>")),
        ("Node", "string", 1, lambda p: (p.get("spec") or {}).get("nodeName", "<none>")),
    ],
    ("apps", "deployments"): [
        (
            "Ready",
            "string",
            0,
            lambda d: f"{(d.get('status') or {}).get('readyReplicas', 0)}/{(d.get('spec') or {}).get('replicas', 0)}",
        ),
        ("Up-to-date", "integer", 0, lambda d: (d.get("status") or {}).get("updatedReplicas", 0)),
        ("Available", "integer", 0, lambda d: (d.get("status") or {}).get("availableReplicas", 0)),
        ("Age", "string", 0, lambda d: age(d["metadata"].get("creationTimestamp"))),
    ],
    ("", "services"): [
        ("Type", "string", 0, lambda s: (s.get("spec") or {}).get("type", "ClusterIP")),
        ("Cluster-IP", "string", 0, lambda s: (s.get("spec") or {}).get("clusterIP", "<none>")),
        ("External-IP", "string", 0, lambda s: "<none>"),
        ("Port(s)", "string", 0, _ports),
        ("Age", "string", 0, lambda s: age(s["metadata"].get("creationTimestamp"))),
    ],
}


def _cell(path: str) -> Callable[[JSON], Any]:
    if path == ".metadata.creationTimestamp":
        return lambda obj: age(obj["metadata"].get("creationTimestamp"))

    def cell(obj: JSON) -> Any:
        value = jsonpath(obj, path)
        return "" if value is None else value

    return cell


def _columns(rtype: ResourceType) -> list[Column]:
    if rtype.key in _BUILTIN:
        return _BUILTIN[rtype.key]
    columns: list[Column] = []
    has_age = False
    for column in rtype.printer_columns:
        path = str(column.get("jsonPath", ""))
        has_age = has_age or path == ".metadata.creationTimestamp"
        columns.append(
            (
                str(column.get("name", "")),
                str(column.get("type", "string")),
                int(column.get("priority", 0)),
                _cell(path),
            )
        )
    if not has_age:
        columns.append(("Age", "string", 0, lambda o: age(o["metadata"].get("creationTimestamp"))))
    return columns


def render(rtype: ResourceType, payload: JSON) -> JSON:
    """A Table for one object or a list (the payload as the API would otherwise send it)."""
    items = payload.get("items") if "items" in payload else [payload]
    columns = _columns(rtype)
    named = rtype.key not in _NO_NAME_COLUMN
    definitions = [{"name": "Name", "type": "string", "format": "name", "description": "", "priority": 0}][: int(named)]
    definitions += [
        {"name": name, "type": kind, "format": "", "description": "", "priority": priority}
        for name, kind, priority, _ in columns
    ]
    rows = []
    for obj in items or []:
        rows.append(
            {
                "cells": [obj["metadata"]["name"]][: int(named)] + [cell(obj) for _, _, _, cell in columns],
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": obj["metadata"],
                },
            }
        )
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": str((payload.get("metadata") or {}).get("resourceVersion", ""))},
        "columnDefinitions": definitions,
        "rows": rows,
    }
