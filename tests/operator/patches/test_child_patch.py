"""Compare before write: an in-sync child gets no patch, drift and spec changes get exact ones."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import jsonpatch

from modelfleet.operator import children
from modelfleet.operator.patches import child_patch, covers
from modelfleet.operator.spec import parse_spec


def _as_stored(obj: dict[str, Any]) -> dict[str, Any]:
    """What an API server gives back: extra metadata, defaulted fields, empty values dropped."""
    stored = copy.deepcopy(obj)
    stored["metadata"].update(uid="x", resourceVersion="5", creationTimestamp="2026-01-01T00:00:00Z")
    stored["metadata"]["labels"]["added-by-someone"] = "yes"
    if stored["kind"] == "Deployment":
        stored["spec"]["progressDeadlineSeconds"] = 600
        container = stored["spec"]["template"]["spec"]["containers"][0]
        container["terminationMessagePath"] = "/dev/termination-log"
        container["securityContext"].pop("allowPrivilegeEscalation")  # False dropped as a zero value
    if stored["kind"] == "Service" and "clusterIP" not in stored["spec"]:
        stored["spec"]["clusterIP"] = "10.96.0.10"
    return stored


def test_a_stored_child_with_server_defaults_needs_no_patch(make_md: Callable[..., dict[str, Any]]) -> None:
    spec = parse_spec(make_md())
    for child in (children.deployment(spec), children.service(spec), children.configmap(spec, {"models": []})):
        assert child_patch(child, _as_stored(child)) == []


def test_a_spec_change_rewrites_owned_fields_and_removes_what_was_dropped(
    make_md: Callable[..., dict[str, Any]],
) -> None:
    old = children.deployment(parse_spec(make_md(nodeSelector={"gpu": "a100"})))
    new = children.deployment(parse_spec(make_md()))
    stored = _as_stored(old)
    patched = jsonpatch.apply_patch(stored, child_patch(new, stored))
    assert "nodeSelector" not in patched["spec"]["template"]["spec"]
    assert (
        patched["metadata"]["annotations"][children.HASH_ANNOTATION]
        == new["metadata"]["annotations"][children.HASH_ANNOTATION]
    )
    assert patched["metadata"]["labels"]["added-by-someone"] == "yes"  # others' labels survive
    assert child_patch(new, patched) == []


def test_drift_by_someone_else_is_corrected(make_md: Callable[..., dict[str, Any]]) -> None:
    desired = children.deployment(parse_spec(make_md(replicas=3)))
    stored = _as_stored(desired)
    stored["spec"]["replicas"] = 1
    ops = child_patch(desired, stored)
    assert ops == [{"op": "add", "path": "/spec/replicas", "value": 3}]


def test_a_missing_owner_reference_is_added_and_others_are_kept(make_md: Callable[..., dict[str, Any]]) -> None:
    desired = children.service(parse_spec(make_md()))
    stored = _as_stored(desired)
    stored["metadata"]["ownerReferences"] = [{"apiVersion": "v1", "kind": "Other", "name": "o", "uid": "o-1"}]
    patched = jsonpatch.apply_patch(stored, child_patch(desired, stored))
    assert [r["uid"] for r in patched["metadata"]["ownerReferences"]] == ["o-1", "uid-demo"]


def test_covers_treats_dropped_zero_values_as_equal_but_not_real_differences() -> None:
    assert covers({"a": 1}, {"a": 1, "b": False, "c": {}, "d": []})
    assert covers({"port": "7070"}, {"port": 7070})
    assert not covers({"a": 1}, {"a": 2})
    assert not covers({"l": [1, 2]}, {"l": [1]})
