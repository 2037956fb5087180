"""The four PATCH flavours of the Kubernetes API, as pure functions over JSON-like dicts.

The in-memory API server (apiserver.py) picks one by Content-Type. Merge patch is RFC 7386; JSON patch
is RFC 6902 (a failed `test` raises PatchConflict, answered 422); strategic merge merges lists of
objects by the merge keys of the built-in kinds (table below) instead of replacing them; server-side
apply is approximated as a strategic merge that also removes fields the same field manager applied
before and no longer applies (no managedFields, no conflicts between managers).
Must not touch the store: callers pass copies and keep the result.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import jsonpatch

JSON = dict[str, Any]


class PatchConflict(Exception):
    """A JSON-patch `test` op failed or a path was missing: the API answers 422."""


class PatchInvalid(Exception):
    """A malformed patch body: the API answers 400."""


# Strategic-merge keys of the built-in kinds, by field name (the API uses the Go struct tags;
# field names are unique enough across the kinds this product writes). Lists not named here are
# replaced as a whole, as the API does for lists without a patch strategy.
MERGE_KEYS: Mapping[str, tuple[str, ...]] = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "env": ("name",),
    "volumes": ("name",),
    "volumeMounts": ("mountPath",),
    "volumeDevices": ("devicePath",),
    "ports": ("containerPort", "port"),
    "conditions": ("type",),
    "ownerReferences": ("uid",),
    "imagePullSecrets": ("name",),
    "hostAliases": ("ip",),
    "topologySpreadConstraints": ("topologyKey",),
    "resourceClaims": ("name",),
}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: dicts merge recursively, None deletes a key, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_patch(target: JSON, operations: Any) -> JSON:
    """RFC 6902 over a copy of the object."""
    if not isinstance(operations, list):
        raise PatchInvalid("a JSON patch must be a list of operations")
    try:
        result = jsonpatch.apply_patch(target, operations, in_place=False)
    except (jsonpatch.JsonPatchConflict, jsonpatch.JsonPatchTestFailed) as exc:
        raise PatchConflict(str(exc)) from exc
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
        raise PatchInvalid(str(exc)) from exc
    if not isinstance(result, dict):
        raise PatchInvalid("a JSON patch must leave an object")
    return result


def _merge_key(field: str, items: list[Any]) -> str | None:
    for key in MERGE_KEYS.get(field, ()):
        if items and all(isinstance(item, dict) and key in item for item in items):
            return key
    return None


def _strategic_list(field: str, target: list[Any], patch: list[Any]) -> list[Any]:
    key = _merge_key(field, patch)
    if key is None or not all(isinstance(item, dict) for item in target):
        return [_strip_directives(item) for item in patch]
    result = [copy.deepcopy(item) for item in target]
    for item in patch:
        index = next((i for i, old in enumerate(result) if old.get(key) == item.get(key)), None)
        if item.get("$patch") == "delete":
            if index is not None:
                del result[index]
        elif index is None:
            result.append(_strip_directives(item))
        else:
            result[index] = strategic_merge_patch(result[index], item)
    return result


def _strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_directives(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [_strip_directives(item) for item in value]
    return value


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """A strategic merge patch: merge-patch semantics, plus keyed list merging and `$` directives.

    Directives handled: `$patch: replace|delete` on maps, `$patch: delete` on list items,
    `$deleteFromPrimitiveList/<field>`; `$setElementOrder/<field>` and `$retainKeys` (sent by
    `kubectl apply`) are accepted and ignored.
    """
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return _strip_directives({k: v for k, v in patch.items() if k != "$patch"})
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(result.get(field), list):
                result[field] = [item for item in result[field] if item not in value]
        elif key.startswith("$"):
            continue
        elif value is None or isinstance(value, dict) and value.get("$patch") == "delete":
            result.pop(key, None)
        elif isinstance(value, list) and isinstance(result.get(key), list):
            result[key] = _strategic_list(key, result[key], value)
        elif isinstance(value, dict):
            result[key] = strategic_merge_patch(result.get(key), value)
        else:
            result[key] = _strip_directives(value)
    return result


def _removed_paths(previous: Any, current: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Dict paths the previous applied configuration set and the current one no longer sets."""
    if not isinstance(previous, dict):
        return []
    if not isinstance(current, dict):
        return []
    removed: list[tuple[str, ...]] = []
    for key, value in previous.items():
        if key not in current:
            removed.append(prefix + (key,))
        else:
            removed.extend(_removed_paths(value, current[key], prefix + (key,)))
    return removed


def apply_patch(target: JSON, applied: JSON, *, previous: JSON | None, keyed_lists: bool) -> JSON:
    """Server-side apply, approximated (see the module docstring).

    `previous` is what the same field manager applied last time (None on its first apply);
    `keyed_lists` is False for custom resources, whose lists are atomic unless the schema says
    otherwise.
    """
    result = copy.deepcopy(target)
    for path in _removed_paths(previous or {}, applied):
        if path[:1] == ("metadata",) and path[1:2] in (("name",), ("namespace",)):
            continue
        node: Any = result
        for part in path[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(path[-1], None)
    if keyed_lists:
        merged = strategic_merge_patch(result, applied)
    else:
        merged = merge_patch(result, applied)
    assert isinstance(merged, dict)
    return merged
