"""Desired state at start (the operator's ConfigMap, TorchServe's --models) applied to a real registry:
versions load with their settings, the default is set, workers are scaled, and one failing entry is
reported while the others still load."""

from __future__ import annotations

from typing import Any

import torch

from modelfleet.server.models.desired_state import (
    apply_desired_state,
    missing_models,
    parse_desired_state,
    parse_startup_models,
)

import mf_domain_harness as h


async def test_versions_default_and_settings_are_applied(registries: Any, make_model: Any) -> None:
    make_model("tiny-v1.pt", seed=1)
    make_model("tiny-v2.pt", seed=2)
    state = parse_desired_state(
        {
            "models": [
                {
                    "name": "tiny",
                    "defaultVersion": "2.0",
                    "versions": [
                        {"version": "1.0", "url": "tiny-v1.pt#version=1.0"},
                        {"version": "2.0", "url": "tiny-v2.pt#version=2.0"},
                    ],
                    "minWorkers": 1,
                    "maxWorkers": 3,
                    "batchSize": 4,
                    "maxBatchDelayMs": 7,
                    "responseTimeoutS": 30,
                }
            ]
        }
    )
    registry = registries.new()
    assert await apply_desired_state(registry, state) == []
    described = {d.version: d for d in registry.describe("tiny", "all")}
    assert sorted(described) == ["1.0", "2.0"]
    for version in described.values():
        assert (version.min_workers, version.max_workers) == (1, 3)
        assert (version.batch_size, version.max_batch_delay_ms, version.response_timeout_s) == (4, 7, 30)
        assert version.loaded_at_startup is True
        assert [w.status for w in version.workers] == ["READY"]  # loaded synchronously
    assert registry.describe("tiny", None)[0].version == "2.0"
    rows = h.seeded_rows(1, seed=4)
    answer = h.as_tensor(await h.predict(registry, "tiny", h.rows_json(rows)))
    assert torch.allclose(answer, h.eager(seed=2)(rows), atol=1e-6)
    assert registry.healthy() is True


async def test_a_failing_entry_is_reported_and_the_others_still_load(registries: Any, make_model: Any) -> None:
    make_model("tiny.pt")
    state = parse_desired_state(
        {
            "models": [
                {"name": "missing", "versions": [{"url": "nowhere.pt"}]},
                {"name": "mismatch", "versions": [{"version": "3.0", "url": "tiny.pt"}]},  # the file is 1.0
                {"name": "good", "versions": [{"url": "tiny.pt"}], "minWorkers": 2},
            ]
        }
    )
    registry = registries.new()
    failures = await apply_desired_state(registry, state)
    assert len(failures) == 2
    assert failures[0].startswith("missing: ") and "nowhere.pt" in failures[0]
    assert failures[1].startswith("mismatch: ") and "3.0" in failures[1]
    assert registry.model_names() == ["good"]
    assert len(registry.describe("good", None)[0].workers) == 2
    await h.predict(registry, "good", h.rows_json(h.seeded_rows(1, seed=0)))


async def test_startup_models_take_the_name_given_or_the_file_stem(registries: Any, make_model: Any) -> None:
    make_model("tiny.pt")
    registry = registries.new()
    failures = await apply_desired_state(registry, parse_startup_models(["tiny.pt", "renamed=tiny.pt#version=2.0"]))
    assert failures == []
    assert registry.model_names() == ["renamed", "tiny"]
    assert registry.describe("renamed", None)[0].version == "2.0"


async def test_applying_again_changes_nothing_and_a_retry_loads_only_what_was_missing(
    registries: Any, make_model: Any, model_store: Any
) -> None:
    make_model("tiny-v1.pt", seed=1)
    document = {
        "models": [
            {
                "name": "tiny",
                "defaultVersion": "2.0",
                "versions": [
                    {"version": "1.0", "url": "tiny-v1.pt#version=1.0"},
                    {"version": "2.0", "url": "tiny-v2.pt#version=2.0"},  # not in the store yet
                ],
            },
            {"name": "other", "versions": [{"url": "tiny-v1.pt"}], "minWorkers": 1},
        ]
    }
    state = parse_desired_state(document)
    registry = registries.new()
    first = await apply_desired_state(registry, state)
    assert len(first) == 1 and first[0].startswith("tiny: ")
    assert [m.name for m in missing_models(registry, state).models] == ["tiny"]
    workers_before = {v.key: [w.id for w in v.pool.workers] for v in registry.versions()}

    make_model("tiny-v2.pt", seed=2)  # the missing source appears (e.g. a volume finished syncing)
    assert await apply_desired_state(registry, state) == []
    assert missing_models(registry, state).models == ()
    assert [d.version for d in registry.describe("tiny", "all")] == ["1.0", "2.0"]
    assert registry.describe("tiny", None)[0].version == "2.0"
    # what was already loaded was left alone: same workers
    for key, ids in workers_before.items():
        assert [w.id for w in registry.get(key.name, key.version).pool.workers] == ids

    assert await apply_desired_state(registry, state) == []  # and once more: nothing to do
    assert len(registry.versions()) == 3
