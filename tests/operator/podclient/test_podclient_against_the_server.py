"""The pod client against a real `python -m modelfleet.server` process: observation, the four
management writes, per-version health, and the server's ErrorInfo reasons as the operator sees them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from modelfleet.operator.observed import PodRef
from modelfleet.operator.podclient import PodCallError, PodClient
from modelfleet.operator.settings import PodClientSettings
from modelfleet.operator.spec import ModelSpec, ModelVersionSpec

DESIRED = {
    "models": [
        {
            "name": "tiny",
            "defaultVersion": "1.0",
            "versions": [{"version": "1.0", "url": "tiny.pt#version=1.0"}],
            "minWorkers": 1,
            "maxWorkers": 1,
        }
    ]
}
TOKEN = "test-management-token"


@pytest.fixture
async def server(start_server: Callable[..., Any], poll: Callable[..., Any]) -> AsyncIterator[Any]:
    process = start_server("127.0.0.21", desired_state=json.dumps(DESIRED), extra=("--pod-uid", "u"))
    client = PodClient(process.management, TOKEN, pod_uid="u", settings=PodClientSettings(attempts=1))

    async def up() -> bool:
        try:
            return await client.health("") == "SERVING"
        except PodCallError:
            return False

    await poll(up, timeout=60, interval=0.1)
    yield process, client
    await client.close()


async def test_observe_reads_models_versions_defaults_workers_and_health(server: Any) -> None:
    process, client = server
    observed = await client.observe(PodRef("p", "u", "127.0.0.21", ready=True))
    assert observed.reachable
    tiny = observed.models["tiny"]
    assert tiny.default_version == "1.0"
    version = tiny.versions["1.0"]
    assert (version.serving, version.ready_workers, version.min_workers) == (True, 1, 1)


async def test_register_set_default_and_unregister_do_a_cutover_on_one_pod(server: Any) -> None:
    process, client = server
    model = ModelSpec(name="tiny", versions=(ModelVersionSpec("2.0", "tiny2.pt#version=2.0"),), default_version="2.0")
    await client.register(model, model.versions[0], load_timeout_s=60)
    await client.register(model, model.versions[0], load_timeout_s=60)  # idempotent: ALREADY_EXISTS is done
    assert await client.health("tiny/2.0") == "SERVING"
    await client.set_default("tiny", "2.0")
    await client.unregister("tiny", "1.0")
    await client.unregister("tiny", "1.0")  # already gone: done
    observed = await client.observe(PodRef("p", "u", "127.0.0.21", ready=True))
    assert observed.models["tiny"].default_version == "2.0"
    assert set(observed.models["tiny"].versions) == {"2.0"}
    assert await client.health("tiny/1.0") == "UNKNOWN"


async def test_a_refused_source_is_a_permanent_failure(server: Any) -> None:
    process, client = server
    model = ModelSpec(name="evil", versions=(ModelVersionSpec("1.0", "file:///etc/passwd"),), default_version="1.0")
    with pytest.raises(PodCallError) as failed:
        await client.register(model, model.versions[0], load_timeout_s=10)
    assert failed.value.reason == "SOURCE_NOT_ALLOWED" and failed.value.permanent


async def test_a_missing_source_is_a_permanent_failure(server: Any) -> None:
    process, client = server
    model = ModelSpec(name="gone", versions=(ModelVersionSpec("1.0", "nope.pt#version=1.0"),), default_version="1.0")
    with pytest.raises(PodCallError) as failed:
        await client.register(model, model.versions[0], load_timeout_s=10)
    assert failed.value.reason == "SOURCE_NOT_FOUND" and failed.value.permanent


async def test_a_wrong_token_is_refused_with_token_invalid(server: Any) -> None:
    process, _ = server
    client = PodClient(process.management, "wrong", pod_uid="u", settings=PodClientSettings(attempts=1))
    with pytest.raises(PodCallError) as failed:
        await client.set_default("tiny", "1.0")
    await client.close()
    assert failed.value.reason == "TOKEN_INVALID"
