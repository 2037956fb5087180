"""Label and field selectors, as the Kubernetes API server evaluates them on lists and watches.

Used by the in-memory API (query parameters) and by the controllers (matchLabels/matchExpressions).
Supports the string syntax (`k=v,k!=v,k,!k,k in (a,b),k notin (a)`) and the LabelSelector object.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

Predicate = Callable[[Mapping[str, str]], bool]

_SET_TERM = re.compile(r"^\s*([^\s!=]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


def _split_terms(selector: str) -> list[str]:
    """Split on commas that are not inside `(...)`; set-based terms contain commas."""
    terms: list[str] = []
    depth = 0
    current = ""
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    terms.append(current)
    return [term.strip() for term in terms if term.strip()]


def _term(term: str) -> Predicate:
    set_match = _SET_TERM.match(term)
    if set_match:
        key, operator, raw_values = set_match.groups()
        values = {value.strip() for value in raw_values.split(",") if value.strip()}
        if operator == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    if "!=" in term:
        key, value = (part.strip() for part in term.split("!=", 1))
        return lambda labels: labels.get(key) != value
    if "=" in term:
        key, value = (part.strip() for part in term.replace("==", "=").split("=", 1))
        return lambda labels: labels.get(key) == value
    if term.startswith("!"):
        key = term[1:].strip()
        return lambda labels: key not in labels
    return lambda labels: term in labels


def parse_label_selector(selector: str) -> Predicate:
    """A predicate over a labels mapping for a `labelSelector` query string (empty: match all)."""
    predicates = [_term(term) for term in _split_terms(selector)]
    return lambda labels: all(predicate(labels) for predicate in predicates)


def selector_object_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Evaluate a LabelSelector object (matchLabels + matchExpressions); an empty one matches all."""
    if not selector:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = set(expression.get("values") or [])
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def parse_field_selector(selector: str) -> Callable[[Mapping[str, Any]], bool]:
    """A predicate over a whole object for a `fieldSelector` (`a.b=v`, `a.b!=v`, comma = AND).

    The API server supports only a few fields per kind (metadata.name, metadata.namespace,
    status.phase, spec.nodeName, ...); any dotted path is accepted here, which is a superset.
    """
    checks: list[tuple[list[str], str, bool]] = []
    for term in _split_terms(selector):
        negate = "!=" in term
        path, value = term.split("!=" if negate else "=", 1)
        checks.append((path.strip().lstrip("=").split("."), value.strip().lstrip("="), negate))

    def matches(obj: Mapping[str, Any]) -> bool:
        for path, value, negate in checks:
            current: Any = obj
            for part in path:
                current = current.get(part) if isinstance(current, Mapping) else None
            actual = "" if current is None else str(current)
            if (actual == value) == negate:
                return False
        return True

    return matches
