"""The `/scale` subresource: an autoscaling/v1 Scale view of a Deployment or a custom resource.

The HTTP layer (apiserver.py) serves GET/PUT/PATCH on `<plural>/<name>/scale` with these functions;
the replica paths come from the CRD's `subresources.scale` (or the built-in kinds' spec/status.replicas).
Pure functions over stored objects: writing goes through the store as a main-resource patch.
"""

from __future__ import annotations

from typing import Any

from modelfleet.local import patching
from modelfleet.local.apitypes import JSON, ApiError, ResourceType, ScalePaths


def _get_path(obj: JSON, path: str) -> Any:
    current: Any = obj
    for part in path.strip(".").split("."):
        if not isinstance(current, dict):
            return None
        current = current.get(part)
    return current


def _set_patch(path: str, value: Any) -> JSON:
    patch: JSON = {}
    node = patch
    parts = path.strip(".").split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return patch


def paths_of(rtype: ResourceType) -> ScalePaths:
    if rtype.scale is None or "scale" not in rtype.subresources:
        raise ApiError(404, "NotFound", f"the server could not find the requested resource ({rtype.describe()}/scale)")
    return rtype.scale


def _selector_string(rtype: ResourceType, obj: JSON, paths: ScalePaths) -> str | None:
    if paths.label_selector:
        selector = _get_path(obj, paths.label_selector)
        return selector if isinstance(selector, str) else None
    match_labels = ((obj.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    return ",".join(f"{key}={value}" for key, value in sorted(match_labels.items())) or None


def to_scale(rtype: ResourceType, obj: JSON) -> JSON:
    """The Scale object a client sees for `obj`."""
    paths = paths_of(rtype)
    meta = obj["metadata"]
    status: JSON = {"replicas": int(_get_path(obj, paths.status_replicas) or 0)}
    selector = _selector_string(rtype, obj, paths)
    if selector:
        status["selector"] = selector
    return {
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {
            key: meta[key]
            for key in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if key in meta
        },
        "spec": {"replicas": int(_get_path(obj, paths.spec_replicas) or 0)},
        "status": status,
    }


def replicas_patch(rtype: ResourceType, obj: JSON, body: Any, *, patch_type: str) -> JSON:
    """Turn a write to the Scale into a merge patch of the scaled object's spec replicas."""
    current = to_scale(rtype, obj)
    if patch_type == "put":
        scale = body
    elif patch_type == "json":
        try:
            scale = patching.json_patch(current, body)
        except (patching.PatchConflict, patching.PatchInvalid) as exc:
            raise ApiError(422, "Invalid", str(exc)) from exc
    else:
        scale = patching.merge_patch(current, body)
    replicas = (scale.get("spec") or {}).get("replicas") if isinstance(scale, dict) else None
    if not isinstance(replicas, int) or replicas < 0:
        raise ApiError(
            422,
            "Invalid",
            f'Scale.autoscaling "{obj["metadata"]["name"]}" is invalid: '
            "spec.replicas: Invalid value: must be greater than or equal to 0",
        )
    return _set_patch(paths_of(rtype).spec_replicas, replicas)
