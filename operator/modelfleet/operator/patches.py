"""Compare before write: the JSON-patch operations that turn a live child into the desired one.

reconcile.py calls child_patch() with a child from children.py and the object read from the API;
kube.py sends the result. Only the fields children.OWNED_FIELDS names are overwritten; a child
whose hash annotation matches and whose owned fields still hold the desired values gets no patch,
so an idle pass writes nothing. JSON patch (not strategic merge) because it replaces a list
exactly, on a real API server and on the in-memory one alike. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .children import HASH_ANNOTATION, OWNED_FIELDS

Json = dict[str, Any]

# Subtrees a real API server rewrites into a canonical form (resource quantities: 0.5 → 500m), so
# comparing them would see drift forever; a change there still shows in the hash annotation.
_NORMALISED_KEYS = frozenset({"resources"})


def _pointer(*parts: str) -> str:
    return "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def _get(obj: Mapping[str, Any], dotted: str) -> Any:
    value: Any = obj
    for part in dotted.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _empty(value: Any) -> bool:
    # API servers drop empty/zero values of optional fields, so desired zeros match "absent".
    return value is None or value == {} or value == [] or value == "" or value is False or value == 0


def covers(current: Any, desired: Any, *, key: str = "") -> bool:
    """Whether `current` holds everything `desired` says (extra defaulted fields are fine)."""
    if key in _NORMALISED_KEYS:
        return True
    if isinstance(desired, Mapping):
        if not isinstance(current, Mapping):
            return current is None and all(_empty(v) for v in desired.values())
        return all(covers(current.get(k), v, key=str(k)) for k, v in desired.items())
    if isinstance(desired, list):
        if not isinstance(current, list):
            return current is None and not desired
        return len(current) == len(desired) and all(covers(c, d) for c, d in zip(current, desired))
    if current is None:
        return _empty(desired)
    return bool(current == desired or str(current) == str(desired))


def child_patch(desired: Mapping[str, Any], current: Mapping[str, Any]) -> list[Json]:
    """JSON-patch ops for labels, the owner reference, the hash and the owned fields; [] = in sync."""
    ops: list[Json] = []
    want_meta = desired.get("metadata", {})
    have_meta = current.get("metadata", {})
    for section in ("labels", "annotations"):
        want = want_meta.get(section) or {}
        have = have_meta.get(section)
        if not want:
            continue
        if not isinstance(have, Mapping):
            ops.append({"op": "add", "path": _pointer("metadata", section), "value": dict(want)})
            continue
        for k, v in want.items():
            if have.get(k) != v:
                ops.append({"op": "add", "path": _pointer("metadata", section, k), "value": v})
    for ref in want_meta.get("ownerReferences", []):
        refs = have_meta.get("ownerReferences")
        if not isinstance(refs, list):
            ops.append({"op": "add", "path": "/metadata/ownerReferences", "value": [ref]})
        elif not any(isinstance(r, Mapping) and r.get("uid") == ref["uid"] for r in refs):
            ops.append({"op": "add", "path": "/metadata/ownerReferences/-", "value": ref})
    rewrite = (have_meta.get("annotations") or {}).get(HASH_ANNOTATION) != (want_meta.get("annotations") or {}).get(
        HASH_ANNOTATION
    )
    for dotted in OWNED_FIELDS.get(str(desired.get("kind")), ()):
        want_value = _get(desired, dotted)
        have_value = _get(current, dotted)
        if not rewrite and covers(have_value, want_value):
            continue
        parts = dotted.split(".")
        if want_value is None:
            if have_value is not None:
                ops.append({"op": "remove", "path": _pointer(*parts)})
        else:
            for depth in range(1, len(parts)):  # a missing parent object (e.g. no .spec) is created
                if not isinstance(_get(current, ".".join(parts[:depth])), Mapping):
                    ops.append({"op": "add", "path": _pointer(*parts[:depth]), "value": {}})
            ops.append({"op": "add", "path": _pointer(*parts), "value": want_value})
    return ops


def status_changed(current: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> bool:
    """Whether writing `desired` as the status would change anything the operator owns."""
    current = current or {}
    return any(current.get(k) != v for k, v in desired.items())
