"""RegisterModel in the domain: the version rule, defaults, duplicates, synchronous loads and timeouts,
driven through the real resolver and loader on seeded TorchScript models in a model store."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from modelfleet.server.demo import build_module
from modelfleet.server.errors import ErrorKind, ModelFleetError, Reason
from modelfleet.server.models.contracts import RegisterSpec
from modelfleet.server.models.describe import ListedModel

import mf_domain_harness as h


async def test_a_bare_pt_is_version_1_0_and_a_fragment_names_another(registries: Any, make_model: Any) -> None:
    registry = registries.new()
    make_model("tiny.pt")
    plain = await registry.register(RegisterSpec(url="tiny.pt", synchronous=True, initial_workers=1))
    tagged = await registry.register(RegisterSpec(url="tiny.pt#version=2.0-rc1", synchronous=True, initial_workers=1))
    assert (plain.key.name, plain.key.version) == ("tiny", "1.0")
    assert (tagged.key.name, tagged.key.version) == ("tiny", "2.0-rc1")
    described = registry.describe("tiny", "all")
    assert [(d.version, d.url) for d in described] == [
        ("1.0", "tiny.pt"),
        ("2.0-rc1", "tiny.pt#version=2.0-rc1"),
    ]


async def test_a_model_folder_takes_its_version_from_the_manifest_not_the_fragment(
    registries: Any, model_store: Path, make_model: Any
) -> None:
    folder = model_store / "scorer"
    (folder / "MAR-INF").mkdir(parents=True)
    make_model("scorer/model.pt")
    (folder / "MAR-INF" / "MANIFEST.json").write_text(
        json.dumps(
            {"runtime": "python", "model": {"modelName": "scorer", "modelVersion": "3.1", "serializedFile": "model.pt"}}
        )
    )
    registry = registries.new()
    result = await registry.register(RegisterSpec(url="scorer#version=9.9", synchronous=True, initial_workers=1))
    assert (result.key.name, result.key.version) == ("scorer", "3.1")


async def test_the_first_registered_version_stays_the_default(registries: Any, make_model: Any) -> None:
    make_model("tiny.pt", seed=1)
    make_model("tiny2.pt", seed=2)
    registry = registries.new()
    await registry.register(RegisterSpec(url="tiny.pt#version=1.0", synchronous=True, initial_workers=1))
    await registry.register(
        RegisterSpec(url="tiny2.pt#version=2.0", model_name="tiny", synchronous=True, initial_workers=1)
    )
    rows = h.seeded_rows(2, seed=7)
    answer = h.as_tensor(await h.predict(registry, "tiny", h.rows_json(rows)))
    assert torch.allclose(answer, h.eager(seed=1)(rows), atol=1e-6)
    assert registry.describe("tiny", None)[0].version == "1.0"
    assert registry.list_models(limit=0, offset=0).models == (ListedModel("tiny", "tiny.pt#version=1.0"),)


async def test_a_duplicate_name_and_version_is_refused_and_leaves_the_first_untouched(
    registries: Any, make_model: Any
) -> None:
    make_model("tiny.pt", seed=1)
    make_model("other.pt", seed=2)
    registry = registries.new()
    await registry.register(RegisterSpec(url="tiny.pt", synchronous=True, initial_workers=1, batch_size=4))
    before = registry.describe("tiny", None)[0]
    with pytest.raises(ModelFleetError) as caught:
        # same name (override) and same version (1.0 by the rule), different file and settings
        await registry.register(RegisterSpec(url="other.pt", model_name="tiny", initial_workers=3, batch_size=8))
    assert (caught.value.kind, caught.value.reason) == (ErrorKind.ALREADY_EXISTS, Reason.ALREADY_EXISTS)
    assert caught.value.metadata == {"model": "tiny", "version": "1.0"}
    after = registry.describe("tiny", None)[0]
    for field in ("url", "batch_size", "min_workers", "max_workers"):
        assert getattr(after, field) == getattr(before, field)
    assert [w.id for w in after.workers] == [w.id for w in before.workers]
    rows = h.seeded_rows(1, seed=3)
    assert torch.allclose(
        h.as_tensor(await h.predict(registry, "tiny", h.rows_json(rows))), h.eager(seed=1)(rows), atol=1e-6
    )


async def test_concurrent_registrations_of_one_version_load_it_once(registries: Any, make_model: Any) -> None:
    make_model("tiny.pt")
    registry = registries.new()
    loads: list[str] = []
    real_load = registry.loader.load

    def counting_load(*args: Any) -> Any:
        loads.append("load")
        return real_load(*args)

    registry.loader.load = counting_load  # count only; the real loader still does the work
    outcomes = await h.gather_outcomes(
        [registry.register(RegisterSpec(url="tiny.pt", synchronous=True, initial_workers=1)) for _ in range(3)]
    )
    refused = [o for o in outcomes if isinstance(o, ModelFleetError)]
    assert len(refused) == 2 and all(e.reason is Reason.ALREADY_EXISTS for e in refused)
    assert loads == ["load"]
    assert [d.version for d in registry.describe("tiny", "all")] == ["1.0"]
    await h.predict(registry, "tiny", h.rows_json(h.seeded_rows(1, seed=0)))


async def test_synchronous_registration_returns_with_every_worker_ready(registries: Any, make_model: Any) -> None:
    make_model("tiny.pt")
    registry = registries.new()
    result = await registry.register(RegisterSpec(url="tiny.pt", synchronous=True, initial_workers=3))
    assert result.workers == 3
    workers = registry.describe("tiny", None)[0].workers
    assert [w.status for w in workers] == ["READY"] * 3
    assert registry.health_view()["tiny"] is True


async def test_zero_initial_workers_means_the_default_worker_count(registries: Any, make_model: Any) -> None:
    make_model("tiny.pt")
    make_model("tiny2.pt")
    from_cpus = registries.new(cpus=3)  # TorchServe's default: one worker per usable CPU (no GPU here)
    configured = registries.new(default_workers=2)
    one = await from_cpus.register(RegisterSpec(url="tiny.pt", synchronous=True, initial_workers=0))
    two = await configured.register(RegisterSpec(url="tiny2.pt", synchronous=True, initial_workers=0))
    assert one.workers == 3 and len(from_cpus.describe("tiny", None)[0].workers) == 3
    assert two.workers == 2 and len(configured.describe("tiny2", None)[0].workers) == 2
    assert from_cpus.describe("tiny", None)[0].min_workers == 3


async def test_a_load_slower_than_the_startup_timeout_fails_with_load_timeout(
    registries: Any, model_store: Path, handler_module: Any
) -> None:
    # A real slow load: .safetensors weights whose trusted handler's build_model() waits at a gate.
    save_file(build_module("tiny").state_dict(), str(model_store / "slow.safetensors"))
    handler = handler_module(h.SLOW_BUILD_HANDLER)
    registry = registries.new(trusted_handlers=(handler.__name__,))
    spec = RegisterSpec(url="slow.safetensors", handler=handler.__name__, startup_timeout_s=1, initial_workers=1)
    try:
        with pytest.raises(ModelFleetError) as caught:
            await asyncio.wait_for(registry.register(spec), h.WAIT_S)
        assert (caught.value.kind, caught.value.reason) == (ErrorKind.DEADLINE_EXCEEDED, Reason.LOAD_TIMEOUT)
        assert registry.model_names() == []
    finally:
        handler.GATE.set()
    # the timed-out attempt left nothing behind: the same version registers once the build is fast
    result = await asyncio.wait_for(registry.register(spec), h.WAIT_S)
    assert (result.key.name, result.key.version) == ("slow", "1.0")
    assert len(handler.BUILDS) == 2


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        (RegisterSpec(url=""), Reason.MISSING_FIELD),
        (RegisterSpec(url="tiny.pt", model_name="bad/name"), Reason.INVALID_NAME),
        (RegisterSpec(url="tiny.pt", batch_size=-1), Reason.BAD_INPUT),
        (RegisterSpec(url="tiny.pt", initial_workers=-2), Reason.BAD_INPUT),
        (RegisterSpec(url="missing.pt"), Reason.SOURCE_NOT_FOUND),
        (RegisterSpec(url="tiny.pt#version=all"), Reason.INVALID_NAME),
    ],
)
async def test_bad_registrations_are_refused_and_register_nothing(
    registries: Any, tiny_model: Path, spec: RegisterSpec, reason: Reason
) -> None:
    registry = registries.new()
    with pytest.raises(ModelFleetError) as caught:
        await registry.register(spec)
    assert caught.value.reason is reason
    assert registry.model_names() == []
