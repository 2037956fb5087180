"""A server holds a bounded number of models and versions per model, loading ones included.

Issue 10, finding 10: 150 versions registered concurrently in 0.9 s, one thread each, no limit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest

from modelfleet.server.errors import ErrorKind, ModelFleetError, Reason
from modelfleet.server.models.contracts import RegisterSpec
from modelfleet.server.models.registry import ModelRegistry
from modelfleet.server.settings import ModelSettings

import mf_domain_harness as h

CONCURRENT = 30


def refusals(outcomes: list[Any]) -> list[ModelFleetError]:
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert all(
        isinstance(e, ModelFleetError) and (e.kind, e.reason) == (ErrorKind.RESOURCE_EXHAUSTED, Reason.LIMIT_EXCEEDED)
        for e in errors
    ), errors
    return [e for e in errors if isinstance(e, ModelFleetError)]


async def test_concurrent_registrations_of_one_model_stop_at_the_version_limit(
    registries: Any, tiny_model: Any
) -> None:
    registry: ModelRegistry = registries.new(version_limit=4)
    outcomes = await h.gather_outcomes(
        [
            registry.register(RegisterSpec(url=f"tiny.pt#version=1.{i}", model_name="tiny", initial_workers=1))
            for i in range(CONCURRENT)
        ]
    )
    refused = refusals(outcomes)
    assert len(refused) == CONCURRENT - 4
    assert len(registry.versions()) == 4
    assert "--version-limit" in refused[0].message and "the server's limit is 4" in refused[0].message
    assert refused[0].metadata == {"limit": "version_limit", "max": "4"}


async def test_concurrent_registrations_of_new_models_stop_at_the_model_limit(registries: Any, tiny_model: Any) -> None:
    registry: ModelRegistry = registries.new(model_limit=5)
    outcomes = await h.gather_outcomes(
        [
            registry.register(RegisterSpec(url="tiny.pt", model_name=f"m{i}", initial_workers=1))
            for i in range(CONCURRENT)
        ]
    )
    refused = refusals(outcomes)
    assert len(refused) == CONCURRENT - 5
    assert len(registry.model_names()) == 5
    assert "--model-limit" in refused[0].message


async def test_a_full_server_still_takes_versions_of_models_it_holds_and_frees_room_on_unregister(
    registries: Any, tiny_model: Any
) -> None:
    registry: ModelRegistry = registries.new(model_limit=2, version_limit=2)
    for name in ("a", "b"):
        await registry.register(RegisterSpec(url="tiny.pt", model_name=name, initial_workers=1))
    before = [(v.key, v.min_workers) for v in registry.versions()]
    with pytest.raises(ModelFleetError) as raised:
        await registry.register(RegisterSpec(url="tiny.pt", model_name="c", initial_workers=1))
    assert raised.value.reason is Reason.LIMIT_EXCEEDED
    assert [(v.key, v.min_workers) for v in registry.versions()] == before
    await registry.register(RegisterSpec(url="tiny.pt#version=2.0", model_name="a", initial_workers=1))
    with pytest.raises(ModelFleetError) as raised:
        await registry.register(RegisterSpec(url="tiny.pt#version=3.0", model_name="a", initial_workers=1))
    assert raised.value.reason is Reason.LIMIT_EXCEEDED
    await registry.unregister("b", None)
    await registry.register(RegisterSpec(url="tiny.pt", model_name="c", initial_workers=1))
    assert registry.model_names() == ["a", "c"]


async def test_the_limit_refusal_is_resource_exhausted_over_the_wire_in_both_modes(
    start_api: Callable[..., Any], make_model: Callable[..., Any], mode: str
) -> None:
    make_model("tiny.pt")
    models = ModelSettings(default_workers=1, model_limit=1)
    async with start_api(status_mode=mode, models=models) as api:
        await api.register("tiny.pt", model_name="one")
        before = await api.snapshot()
        got = await api.failure(api.register("tiny.pt", model_name="two"))
        assert (got.code, got.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "LIMIT_EXCEEDED")
        assert "--model-limit" in got.details
        assert await api.snapshot() == before
