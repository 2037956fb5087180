"""CRD validation rules a structural schema cannot express: x-kubernetes-validations (CEL) and
x-kubernetes-list-type: map key uniqueness, checked as the API server checks them.

Called by admission.py for custom resources after pruning and defaulting. Rules see `self` (the value
at their schema node) and, for transition rules, `oldSelf` (the stored object's value there; such rules
are skipped on create, as in Kubernetes). Rules are compiled once (cel-python) and cached. An error
while evaluating a rule counts as a failure, with the rule's message.
"""

from __future__ import annotations

import functools
from typing import Any

import celpy
from celpy.adapter import json_to_cel

_MISSING = object()


@functools.cache
def _environment() -> Any:
    return celpy.Environment()


@functools.cache
def _program(rule: str) -> Any:
    environment = _environment()
    return environment.program(environment.compile(rule))


def _passes(rule: str, value: Any, old: Any) -> bool:
    activation = {"self": json_to_cel(value)}
    if old is not _MISSING:
        activation["oldSelf"] = json_to_cel(old)
    try:
        result = _program(rule).evaluate(activation)
    except Exception:  # noqa: BLE001 - any evaluation error rejects, as the API server does
        return False
    return isinstance(result, celpy.celtypes.BoolType) and bool(result)


def rule_errors(schema: dict[str, Any], value: Any, old: Any = _MISSING, path: str = "") -> list[str]:
    """Every failing rule under `schema` for `value` (old: the stored value, or missing on create)."""
    errors: list[str] = []
    for rule in schema.get("x-kubernetes-validations") or []:
        text = str(rule.get("rule", ""))
        if "oldSelf" in text and old is _MISSING:
            continue  # a transition rule: only on update
        if not _passes(text, value, old):
            message = rule.get("message") or f"failed rule: {text}"
            errors.append(f"{path or '<root>'}: Invalid value: {message}")
    if schema.get("x-kubernetes-list-type") == "map" and isinstance(value, list):
        keys = [
            tuple(item.get(k) for k in schema.get("x-kubernetes-list-map-keys") or [])
            for item in value
            if isinstance(item, dict)
        ]
        if len(keys) != len(set(keys)):
            errors.append(f"{path}: Duplicate value: list-map keys must be unique")
    if isinstance(value, dict):
        for key, sub in (schema.get("properties") or {}).items():
            if key in value and isinstance(sub, dict):
                child_old = old.get(key, _MISSING) if isinstance(old, dict) else _MISSING
                errors += rule_errors(sub, value[key], child_old, f"{path}.{key}" if path else key)
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            errors += rule_errors(schema["items"], item, _MISSING, f"{path}[{index}]")
    return errors


def old_value(old: Any) -> Any:
    """The stored object as rule_errors' `old` (missing on create)."""
    return _MISSING if old is None else old
