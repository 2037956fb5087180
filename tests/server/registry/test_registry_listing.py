"""ListModels in the domain: sorted names, default versions only, pages chained by next_offset,
and the limit rules (unset or negative → 100, above 100 clamped to 100)."""

from __future__ import annotations

from typing import Any

import pytest

from modelfleet.server.models.contracts import RegisterSpec
from modelfleet.server.models.describe import ModelPage
from modelfleet.server.models.registry import ModelRegistry

NAMES = ["delta", "Alpha", "charlie", "bravo", "echo", "alpha-2"]


@pytest.fixture
async def six_models(registries: Any, tiny_model: Any) -> ModelRegistry:
    registry: ModelRegistry = registries.new()
    for name in NAMES:
        await registry.register(RegisterSpec(url="tiny.pt", model_name=name, initial_workers=1))
    return registry


def walk(registry: ModelRegistry, limit: int) -> list[list[str]]:
    """Follow next_offset as a client follows nextPageToken (bounded: one page per model at most, plus one)."""
    pages, offset = [], 0
    for _ in range(len(NAMES) + 1):
        page = registry.list_models(limit=limit, offset=offset)
        pages.append([m.name for m in page.models])
        if page.next_offset is None:
            return pages
        offset = page.next_offset
    raise AssertionError("next_offset never ended")


async def test_models_are_listed_sorted_by_name_with_their_default_url(six_models: ModelRegistry) -> None:
    page = six_models.list_models(limit=0, offset=0)
    assert [m.name for m in page.models] == sorted(NAMES)
    assert {m.url for m in page.models} == {"tiny.pt"}
    assert page.next_offset is None


async def test_pages_chain_through_next_page_token_without_gaps_or_repeats(six_models: ModelRegistry) -> None:
    assert walk(six_models, 4) == [sorted(NAMES)[:4], sorted(NAMES)[4:]]
    assert walk(six_models, 2) == [sorted(NAMES)[0:2], sorted(NAMES)[2:4], sorted(NAMES)[4:6]]
    assert six_models.list_models(limit=2, offset=0).next_offset == 2


async def test_an_offset_past_the_end_gives_an_empty_last_page(six_models: ModelRegistry) -> None:
    assert six_models.list_models(limit=3, offset=50) == ModelPage(models=(), next_offset=None)
    assert walk(six_models, 1)[-1] == [sorted(NAMES)[-1]]


async def test_unset_negative_and_oversized_limits_mean_a_page_of_100(registries: Any, tiny_model: Any) -> None:
    registry: ModelRegistry = registries.new()
    for index in range(101):
        # loaded once per name from one small file; one worker each keeps this cheap
        await registry.register(RegisterSpec(url="tiny.pt", model_name=f"m{index:03d}", initial_workers=1))
    first_hundred = [f"m{index:03d}" for index in range(100)]
    for limit in (0, -1, -100, 101, 10_000):
        page = registry.list_models(limit=limit, offset=0)
        assert [m.name for m in page.models] == first_hundred, limit
        assert page.next_offset == 100
        assert [m.name for m in registry.list_models(limit=limit, offset=100).models] == ["m100"]
    assert len(registry.list_models(limit=100, offset=0).models) == 100
    assert len(registry.list_models(limit=99, offset=0).models) == 99
