"""batch_size, max_batch_delay and response_timeout have upper bounds; values <= 0 keep their meaning.

Issue 10, finding 2. Checked on RegisterModel and on desired-state entries, where a refused
entry registers none of its versions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest

from modelfleet.server.errors import ErrorKind, ModelFleetError, Reason
from modelfleet.server.models.contracts import RegisterSpec
from modelfleet.server.models.desired_state import apply_desired_state, parse_desired_state
from modelfleet.server.models.registry import ModelRegistry
from modelfleet.server.settings import ModelSettings

OVER = [
    ("batch_size", {"batch_size": 1025}, "--batch-size-limit"),
    ("max_batch_delay", {"max_batch_delay_ms": 60_001}, "--batch-delay-limit"),
    ("response_timeout", {"response_timeout_s": 3601}, "--response-timeout-limit"),
    ("batch_size int32 max", {"batch_size": 2**31 - 1}, "--batch-size-limit"),
]


@pytest.mark.parametrize(("case", "fields", "flag"), OVER, ids=[case for case, _, _ in OVER])
async def test_a_value_above_its_default_limit_is_refused_before_anything_loads(
    registries: Any, tiny_model: Any, case: str, fields: dict[str, int], flag: str
) -> None:
    registry: ModelRegistry = registries.new()
    with pytest.raises(ModelFleetError) as raised:
        await registry.register(RegisterSpec(url="tiny.pt", initial_workers=1, **fields))
    error = raised.value
    assert (error.kind, error.reason) == (ErrorKind.RESOURCE_EXHAUSTED, Reason.LIMIT_EXCEEDED)
    assert flag in error.message
    assert registry.versions() == []


async def test_values_at_the_limits_and_unset_values_are_accepted(registries: Any, make_model: Any) -> None:
    make_model("tiny.pt")
    registry: ModelRegistry = registries.new()
    at_limits = RegisterSpec(
        url="tiny.pt", initial_workers=1, batch_size=1024, max_batch_delay_ms=60_000, response_timeout_s=3600
    )
    await registry.register(at_limits)
    unset = RegisterSpec(
        url="tiny.pt#version=2.0", initial_workers=1, batch_size=0, max_batch_delay_ms=0, response_timeout_s=-1
    )
    await registry.register(unset)
    described = {v.key.version: (v.batch_size, v.max_batch_delay_ms, v.response_timeout_s) for v in registry.versions()}
    assert described == {"1.0": (1024, 60_000, 3600), "2.0": (1, 100, 120)}


async def test_the_limits_are_settings(registries: Any, tiny_model: Any) -> None:
    registry: ModelRegistry = registries.new(batch_size_limit=8, batch_delay_limit_ms=50, response_timeout_limit_s=5)
    for fields in ({"batch_size": 9}, {"max_batch_delay_ms": 51}, {"response_timeout_s": 6}):
        with pytest.raises(ModelFleetError) as raised:
            await registry.register(RegisterSpec(url="tiny.pt", initial_workers=1, **fields))
        assert raised.value.reason is Reason.LIMIT_EXCEEDED
    await registry.register(
        RegisterSpec(url="tiny.pt", initial_workers=1, batch_size=8, max_batch_delay_ms=50, response_timeout_s=5)
    )


async def test_a_desired_state_entry_beyond_a_limit_registers_none_of_its_versions(
    registries: Any, tiny_model: Any
) -> None:
    registry: ModelRegistry = registries.new(cpus=2, version_limit=2)
    versions = [{"url": "tiny.pt#version=1.0", "version": "1.0"}, {"url": "tiny.pt#version=2.0", "version": "2.0"}]
    entries = [
        {"name": "batchy", "versions": versions[:1], "batchSize": 10**30},
        {"name": "wide", "versions": versions[:1], "minWorkers": 1, "maxWorkers": 2**31 - 1},
        {"name": "busy", "versions": versions, "minWorkers": 9},
        {"name": "many", "versions": [*versions, {"url": "tiny.pt#version=3.0", "version": "3.0"}]},
        {"name": "fine", "versions": versions, "minWorkers": 1, "maxWorkers": 8},
    ]
    failures = await apply_desired_state(registry, parse_desired_state({"models": entries}))
    assert [f.split(":")[0] for f in failures] == ["batchy", "wide", "busy", "many"]
    assert all("limit" in f for f in failures), failures
    assert registry.model_names() == ["fine"]


async def test_register_model_above_a_limit_is_resource_exhausted_in_both_modes(
    start_api: Callable[..., Any], make_model: Callable[..., Any], mode: str
) -> None:
    make_model("tiny.pt")
    async with start_api(status_mode=mode, models=ModelSettings(default_workers=1)) as api:
        for fields in ({"batch_size": 1025}, {"max_batch_delay": 2**31 - 1}, {"response_timeout": 2**31 - 1}):
            got = await api.failure(api.register("tiny.pt", **fields))
            assert (got.code, got.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "LIMIT_EXCEEDED"), fields
        assert (await api.list_models())["models"] == []


def test_every_limit_message_names_a_real_flag_and_its_setting() -> None:
    from modelfleet.server.cli import FLAGS as CLI_FLAGS
    from modelfleet.server.cli import parse_settings
    from modelfleet.server.models.limits import FLAGS

    names = {f"--{flag.name}": flag for flag in CLI_FLAGS}
    for field, flag in FLAGS.items():
        assert flag in names, flag
        settings = parse_settings([flag, "7"], {})
        assert getattr(settings.models, field) == 7, flag
        assert names[flag].env == "MODELFLEET_" + flag.removeprefix("--").replace("-", "_").upper()
