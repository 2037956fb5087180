"""Names and versions ending in a newline are refused everywhere they enter the server.

Issue 10, finding 7: the patterns were applied with re.match, and `$` also matches before a final
newline, so "tiny\\n" and "1.0\\n" passed: on RegisterModel, in manifests and in the desired state.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from modelfleet.server.errors import ErrorKind, ModelFleetError, Reason
from modelfleet.server.models.contracts import RegisterSpec
from modelfleet.server.models.desired_state import parse_desired_state, parse_startup_models
from modelfleet.server.models.registry import ModelRegistry
from modelfleet.server.names import check_model_name, check_version


def invalid_name(call: Callable[[], Any]) -> ModelFleetError:
    with pytest.raises(ModelFleetError) as raised:
        call()
    assert (raised.value.kind, raised.value.reason) == (ErrorKind.INVALID_ARGUMENT, Reason.INVALID_NAME)
    return raised.value


def test_the_name_and_version_checks_refuse_a_trailing_newline() -> None:
    invalid_name(lambda: check_model_name("tiny\n"))
    invalid_name(lambda: check_version("1.0\n"))
    assert check_model_name("tiny") == "tiny" and check_version("1.0") == "1.0"


def test_the_desired_state_refuses_a_name_or_version_with_a_trailing_newline() -> None:
    version = {"url": "tiny.pt", "version": "1.0"}
    invalid_name(lambda: parse_desired_state({"models": [{"name": "tiny\n", "versions": [version]}]}))
    bad_version = {**version, "version": "1.0\n"}
    invalid_name(lambda: parse_desired_state({"models": [{"name": "tiny", "versions": [bad_version]}]}))
    invalid_name(lambda: parse_startup_models(["tiny\n=tiny.pt"]))


def write_manifest(model: dict[str, str]) -> bytes:
    return json.dumps(
        {"runtime": "python", "model": {"serializedFile": "model.pt", "handler": "default", **model}}
    ).encode()


async def test_register_refuses_a_trailing_newline_in_the_request_and_in_manifests(
    registries: Any, model_store: Path, make_model: Callable[..., Path]
) -> None:
    weights = make_model("tiny.pt")
    registry: ModelRegistry = registries.new()
    sources: list[str] = []
    for index, model in enumerate(({"modelName": "tiny\n"}, {"modelName": "tiny", "modelVersion": "1.0\n"})):
        folder = model_store / f"folder{index}"
        (folder / "MAR-INF").mkdir(parents=True)
        (folder / "model.pt").write_bytes(weights.read_bytes())
        (folder / "MAR-INF" / "MANIFEST.json").write_bytes(write_manifest(model))
        with zipfile.ZipFile(model_store / f"archive{index}.mar", "w") as mar:
            mar.writestr("MAR-INF/MANIFEST.json", write_manifest(model))
            mar.writestr("model.pt", weights.read_bytes())
        sources += [folder.name, f"archive{index}.mar"]
    for url in sources:
        with pytest.raises(ModelFleetError) as raised:
            await registry.register(RegisterSpec(url=url, initial_workers=1))
        assert raised.value.reason is Reason.INVALID_NAME, url
    for spec in (
        RegisterSpec(url="tiny.pt", model_name="tiny\n", initial_workers=1),
        RegisterSpec(url="tiny.pt#version=1.0%0A", initial_workers=1),
        RegisterSpec(url="tiny.pt#version=1.0\n", initial_workers=1),
    ):
        with pytest.raises(ModelFleetError) as raised:
            await registry.register(spec)
        assert raised.value.kind is ErrorKind.INVALID_ARGUMENT, spec
    assert registry.versions() == []


async def test_register_model_with_a_trailing_newline_is_invalid_argument_in_both_modes(
    api: Any, make_model: Callable[..., Any]
) -> None:
    make_model("tiny.pt")
    got = await api.failure(api.register("tiny.pt", model_name="tiny\n"))
    assert (got.code, got.reason) == (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_NAME")
    assert (await api.list_models())["models"] == []
