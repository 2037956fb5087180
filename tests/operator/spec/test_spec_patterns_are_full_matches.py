"""Spec patterns are full matches: a model name or version ending in a newline is an invalid spec.

Issue 10, finding 7: with re.match, `$` also matches before a final newline, so "tiny\\n" passed the
operator's copy of the server's name pattern and reached the pod's desired state.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from modelfleet.operator.spec import InvalidSpec, parse_spec


def models(name: str = "tiny", version: str = "1.0", default: str | None = None) -> list[dict[str, Any]]:
    model: dict[str, Any] = {"name": name, "versions": [{"version": version, "url": "tiny.pt"}]}
    if default is not None:
        model["defaultVersion"] = default
    return [model]


@pytest.mark.parametrize(
    "changes",
    [
        {"models": models(name="tiny\n")},
        {"models": models(version="1.0\n")},
        {"models": [{**models()[0], "handler": "acme.handler\n"}]},
        {"resources": {"limits": {"cpu": "2\n"}}},
        {"disruptionBudget": {"maxUnavailable": "25%\n"}},
    ],
    ids=["name", "version", "handler", "quantity", "percent"],
)
def test_a_trailing_newline_makes_the_spec_invalid(
    make_md: Callable[..., dict[str, Any]], changes: dict[str, Any]
) -> None:
    with pytest.raises(InvalidSpec):
        parse_spec(make_md(**changes))


def test_the_same_values_without_the_newline_are_valid(make_md: Callable[..., dict[str, Any]]) -> None:
    parse_spec(make_md(models=models(default="1.0"), resources={"limits": {"cpu": "2"}}))
