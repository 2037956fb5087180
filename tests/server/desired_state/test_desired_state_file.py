"""The desired-state file (a mounted ConfigMap) and --models entries parse strictly with clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelfleet.server.errors import ErrorKind, ModelFleetError
from modelfleet.server.models.desired_state import (
    DesiredVersion,
    parse_desired_state,
    parse_startup_models,
    read_desired_state,
)


def test_a_full_entry_is_read_with_every_setting(tmp_path: Path) -> None:
    path = tmp_path / "models.json"
    path.write_text(
        json.dumps(
            {
                "models": [
                    {
                        "name": "tiny",
                        "defaultVersion": "2.0",
                        "versions": [
                            {"version": "1.0", "url": "tiny-v1.pt#version=1.0"},
                            {"version": "2.0", "url": "tiny-v2.pt#version=2.0"},
                        ],
                        "minWorkers": 2,
                        "maxWorkers": 3,
                        "batchSize": 8,
                        "maxBatchDelayMs": 5,
                        "responseTimeoutS": 30,
                    }
                ]
            }
        )
    )
    (model,) = read_desired_state(path).models
    assert model.name == "tiny" and model.default_version == "2.0"
    assert model.versions == (
        DesiredVersion("tiny-v1.pt#version=1.0", "1.0"),
        DesiredVersion("tiny-v2.pt#version=2.0", "2.0"),
    )
    assert (
        model.min_workers,
        model.max_workers,
        model.batch_size,
        model.max_batch_delay_ms,
        model.response_timeout_s,
    ) == (2, 3, 8, 5, 30)


@pytest.mark.parametrize(
    ("document", "fragment"),
    [
        ([], "top level"),
        ({"models": [{"versions": [{"url": "a.pt"}]}]}, "models[0].name"),
        ({"models": [{"name": "bad/name", "versions": [{"url": "a.pt"}]}]}, "invalid model name"),
        ({"models": [{"name": "a", "versions": []}]}, "models[0].versions"),
        ({"models": [{"name": "a", "versions": [{"url": ""}]}]}, "versions[0].url"),
        ({"models": [{"name": "a", "versions": [{"url": "a.pt", "version": "all"}]}]}, "invalid model version"),
        (
            {"models": [{"name": "a", "defaultVersion": "9", "versions": [{"url": "a.pt", "version": "1"}]}]},
            "defaultVersion",
        ),
        ({"models": [{"name": "a", "minWorkers": -1, "versions": [{"url": "a.pt"}]}]}, "minWorkers"),
        (
            {"models": [{"name": "a", "versions": [{"url": "a.pt"}]}, {"name": "a", "versions": [{"url": "b.pt"}]}]},
            "twice",
        ),
    ],
)
def test_invalid_documents_are_refused_naming_the_problem(document: object, fragment: str) -> None:
    with pytest.raises(ModelFleetError) as caught:
        parse_desired_state(document)
    assert caught.value.kind is ErrorKind.INVALID_ARGUMENT
    assert fragment in caught.value.message


def test_unreadable_or_non_json_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelFleetError, match="cannot read"):
        read_desired_state(tmp_path / "missing.json")
    garbage = tmp_path / "garbage.json"
    garbage.write_bytes(b"\xff{not json")
    with pytest.raises(ModelFleetError, match="not valid UTF-8 JSON"):
        read_desired_state(garbage)


def test_torchserve_style_models_flag_accepts_named_and_bare_urls() -> None:
    state = parse_startup_models(["tiny=tiny.pt", "squeeze.mar"])
    assert [(m.name, m.versions[0].url) for m in state.models] == [("tiny", "tiny.pt"), (None, "squeeze.mar")]
    with pytest.raises(ModelFleetError):
        parse_startup_models(["tiny="])
