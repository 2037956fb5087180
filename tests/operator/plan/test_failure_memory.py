"""Failed registrations are paced, survive their pod and an operator restart, and are forgotten
when the spec moves on."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from modelfleet.operator import actions, failures
from modelfleet.operator.observed import PodRef
from modelfleet.operator.settings import ReconcileSettings
from modelfleet.operator.spec import DeploymentSpec, parse_spec

V2 = {"version": "2.0", "url": "tiny2.pt#version=2.0"}
SPEC: dict[str, Any] = {
    "models": [{"name": "tiny", "versions": [{"version": "1.0", "url": "a"}, V2], "defaultVersion": "2.0"}]
}
POD = PodRef("p", "uid-p", "10.0.0.1", ready=True)
SETTINGS = ReconcileSettings(failure_backoff_initial_s=5.0, failure_backoff_max_s=30.0)


def _register(spec: DeploymentSpec) -> actions.Register:
    model = spec.model("tiny")
    assert model is not None and (entry := model.version("2.0")) is not None
    return actions.register(POD, model, entry)


def test_transient_failures_back_off_exponentially_up_to_the_cap(make_md: Callable[..., dict[str, Any]]) -> None:
    spec = parse_spec(make_md(**SPEC))
    previous = None
    delays = []
    for _ in range(5):
        previous = failures.record(
            spec,
            _register(spec),
            reason="SOURCE_FETCH_FAILED",
            message="x",
            permanent=False,
            previous=previous,
            now=100.0,
            settings=SETTINGS,
        )
        delays.append(previous.retry_at - 100.0)
    assert delays == [5.0, 10.0, 20.0, 30.0, 30.0]


def test_a_permanent_failure_outlives_its_pod_as_a_fleet_failure(make_md: Callable[..., dict[str, Any]]) -> None:
    spec = parse_spec(make_md(**SPEC))
    book = {
        ("uid-p", "tiny", "2.0"): failures.record(
            spec,
            _register(spec),
            reason="LOAD_FAILED",
            message="bad",
            permanent=True,
            previous=None,
            now=0.0,
            settings=SETTINGS,
        )
    }
    assert math.isinf(book[("uid-p", "tiny", "2.0")].retry_at)
    failures.forget_stale(book, spec, live_uids=set())
    assert list(book) == [(failures.FLEET, "tiny", "2.0")]


def test_failures_are_forgotten_when_the_spec_changes(make_md: Callable[..., dict[str, Any]]) -> None:
    spec = parse_spec(make_md(**SPEC))
    book = {
        ("uid-p", "tiny", "2.0"): failures.record(
            spec,
            _register(spec),
            reason="LOAD_FAILED",
            message="bad",
            permanent=True,
            previous=None,
            now=0.0,
            settings=SETTINGS,
        )
    }
    changed = make_md(**SPEC)
    changed["metadata"]["generation"] = 2
    failures.forget_stale(book, parse_spec(changed), live_uids={"uid-p"})
    assert book == {}


def test_the_status_of_this_generation_seeds_failures_after_a_restart(make_md: Callable[..., dict[str, Any]]) -> None:
    spec = parse_spec(make_md(**SPEC))
    status = {
        "observedGeneration": 1,
        "models": [
            {
                "name": "tiny",
                "versions": [
                    {"version": "1.0", "state": "Loaded"},
                    {"version": "2.0", "state": "FailedToLoad", "message": "no such file"},
                ],
            }
        ],
    }
    book: dict[Any, Any] = {}
    failures.seed_from_status(book, spec, current=status)
    (failure,) = book.values()
    assert (failure.version, failure.permanent, failure.url, failure.message) == (
        "2.0",
        True,
        V2["url"],
        "no such file",
    )
    older: dict[Any, Any] = {}
    failures.seed_from_status(older, spec, current={**status, "observedGeneration": 0})
    assert older == {}
