"""Several versions per model: SetDefault decides what unversioned calls see; the default cannot be
removed while others exist; removing the last version removes the model; unknown names are NOT_FOUND."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import torch

from modelfleet.server.errors import ErrorKind, ModelFleetError, Reason
from modelfleet.server.models.contracts import RegisterSpec
from modelfleet.server.models.describe import ListedModel, ModelPage
from modelfleet.server.models.registry import ModelRegistry

import mf_domain_harness as h

SEEDS = {"1.0": 11, "2.0": 22, "3.0": 33}


@pytest.fixture
async def three_versions(registries: Any, make_model: Any) -> ModelRegistry:
    """`tiny` in versions 1.0, 2.0, 3.0, each a differently seeded model (so answers tell them apart)."""
    registry: ModelRegistry = registries.new()
    for version, seed in SEEDS.items():
        make_model(f"tiny-{version}.pt", seed=seed)
        await registry.register(
            RegisterSpec(
                url=f"tiny-{version}.pt#version={version}", model_name="tiny", synchronous=True, initial_workers=1
            )
        )
    return registry


async def answered_by(registry: ModelRegistry, version: str | None) -> str:
    """Which seeded version answered an unversioned (None) or versioned prediction."""
    rows = h.seeded_rows(1, seed=5)
    answer = h.as_tensor(await h.predict(registry, "tiny", h.rows_json(rows), version=version))
    matches = [v for v, seed in SEEDS.items() if torch.allclose(answer, h.eager(seed=seed)(rows), atol=1e-6)]
    assert len(matches) == 1
    return matches[0]


async def test_each_version_answers_by_itself_and_the_first_is_the_default(three_versions: ModelRegistry) -> None:
    for version in SEEDS:
        assert await answered_by(three_versions, version) == version
    assert await answered_by(three_versions, None) == "1.0"
    assert [d.version for d in three_versions.describe("tiny", "all")] == ["1.0", "2.0", "3.0"]


async def test_set_default_switches_predict_describe_and_list(three_versions: ModelRegistry) -> None:
    three_versions.set_default("tiny", "2.0")
    assert await answered_by(three_versions, None) == "2.0"
    assert await answered_by(three_versions, "") == "2.0"
    assert three_versions.describe("tiny", None)[0].version == "2.0"
    assert three_versions.list_models(limit=10, offset=0).models == (ListedModel("tiny", "tiny-2.0.pt#version=2.0"),)


async def test_the_default_version_cannot_be_unregistered_while_others_exist(three_versions: ModelRegistry) -> None:
    for version in ("1.0", None):  # named, or implied by an unversioned call
        with pytest.raises(ModelFleetError) as caught:
            await three_versions.unregister("tiny", version)
        assert (caught.value.kind, caught.value.reason) == (
            ErrorKind.FAILED_PRECONDITION,
            Reason.DEFAULT_VERSION_IN_USE,
        )
    assert [d.version for d in three_versions.describe("tiny", "all")] == ["1.0", "2.0", "3.0"]
    assert await answered_by(three_versions, None) == "1.0"


async def test_unregistering_every_version_removes_the_model(three_versions: ModelRegistry) -> None:
    assert (await three_versions.unregister("tiny", "3.0")).version == "3.0"
    with pytest.raises(ModelFleetError) as caught:
        await answered_by(three_versions, "3.0")
    assert caught.value.reason is Reason.VERSION_NOT_FOUND
    await three_versions.unregister("tiny", "2.0")
    assert three_versions.model_names() == ["tiny"]
    await three_versions.unregister("tiny", None)  # the last one, the default
    assert three_versions.model_names() == []
    assert three_versions.list_models(limit=0, offset=0) == ModelPage(models=(), next_offset=None)
    assert three_versions.health_view() == {}


async def test_a_version_can_be_registered_again_after_it_was_unregistered(three_versions: ModelRegistry) -> None:
    await three_versions.unregister("tiny", "2.0")
    await three_versions.register(
        RegisterSpec(url="tiny-2.0.pt#version=2.0", model_name="tiny", synchronous=True, initial_workers=1)
    )
    assert await answered_by(three_versions, "2.0") == "2.0"


async def test_a_queued_request_of_an_unregistered_version_fails_with_not_found(
    registries: Any, tiny_model: Any, handler_module: Any
) -> None:
    handler = handler_module(h.HOLDING_HANDLER)
    registry = registries.new(trusted_handlers=(handler.__name__,))
    await registry.register(RegisterSpec(url="tiny.pt", handler=handler.__name__, synchronous=True, initial_workers=1))
    rows = h.seeded_rows(1, seed=1)
    running = asyncio.ensure_future(h.predict(registry, "tiny", h.held(rows)))
    await h.in_thread(lambda: handler.ENTERED.acquire(timeout=h.WAIT_S))
    waiting = asyncio.ensure_future(h.predict(registry, "tiny", h.rows_json(rows)))
    await h.eventually(lambda: len(registry.get("tiny").pool.queue) == 1, what="second request queued")
    await registry.unregister("tiny", None)
    with pytest.raises(ModelFleetError) as caught:
        await waiting
    assert caught.value.reason is Reason.VERSION_NOT_FOUND
    handler.GATE.set()
    # the request already running when the version went away still gets its answer
    assert torch.allclose(h.as_tensor(await running), h.eager()(rows), atol=1e-6)


async def _scale(registry: ModelRegistry, name: str, version: str | None) -> Any:
    return await registry.scale(name, version, min_workers=1, max_workers=1, synchronous=False, timeout_s=None)


@pytest.mark.parametrize(
    "call",
    [
        lambda r, n, v: h.predict(r, n, h.rows_json(h.seeded_rows(1, seed=0)), version=v),
        lambda r, n, v: r.unregister(n, v),
        _scale,
        lambda r, n, v: r.set_default(n, v or "1.0"),
        lambda r, n, v: r.describe(n, v),
        lambda r, n, v: r.get(n, v),
    ],
    ids=["predict", "unregister", "scale", "set_default", "describe", "get"],
)
async def test_unknown_models_and_versions_are_not_found_on_every_call(
    three_versions: ModelRegistry, call: Callable[..., Any]
) -> None:
    for name, version, reason in (("nope", None, Reason.MODEL_NOT_FOUND), ("tiny", "9.0", Reason.VERSION_NOT_FOUND)):
        with pytest.raises(ModelFleetError) as caught:
            result = call(three_versions, name, version)
            if asyncio.iscoroutine(result):
                await result
        assert (caught.value.kind, caught.value.reason) == (ErrorKind.NOT_FOUND, reason)
        assert caught.value.metadata["model"] == name
    assert [d.version for d in three_versions.describe("tiny", "all")] == ["1.0", "2.0", "3.0"]


async def test_requests_racing_an_unregister_are_each_answered(registries: Any, tiny_model: Any) -> None:
    registry: ModelRegistry = registries.new()
    await registry.register(RegisterSpec(url="tiny.pt", synchronous=True, initial_workers=1))
    rows = h.seeded_rows(1, seed=6)
    # submitted in the same loop iteration as the unregister that follows them
    calls = [
        asyncio.ensure_future(registry.predict("tiny", None, {"data": h.rows_json(rows)}, deadline=None))
        for _ in range(5)
    ]
    removal = asyncio.ensure_future(registry.unregister("tiny", None))
    outcomes = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), h.WAIT_S)
    await removal
    for outcome in outcomes:  # answered by the model, or told the version is gone: never left hanging
        if isinstance(outcome, ModelFleetError):
            assert outcome.reason is Reason.VERSION_NOT_FOUND
        else:
            assert torch.allclose(h.as_tensor(outcome), h.eager()(rows), atol=1e-6)
