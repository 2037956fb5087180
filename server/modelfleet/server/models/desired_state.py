"""Desired state at start: the JSON file a Kubernetes ConfigMap carries, and TorchServe's --models.

Read once by the app before the server reports ready, so a new or restarted pod loads its models
by itself. The operator writes the same format (modelfleet.protos.contract.DesiredStateDocument);
the version rule is the registry's: manifest version, else `#version=` fragment, else 1.0. `version` entries here
are checked against what the source really holds (expected_version). Names and versions are
full matches (names.py); an entry beyond the registry's limits is refused before any of its versions
is registered.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelfleet.protos.contract import DesiredIntField

from ..errors import ErrorKind, ModelFleetError, Reason
from ..names import check_model_name, check_version
from . import signature as signatures
from .contracts import ModelSignature, RegisterSpec

if TYPE_CHECKING:
    from .registry import ModelRegistry

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DesiredVersion:
    url: str
    version: str | None = None


@dataclass(frozen=True)
class DesiredModel:
    name: str | None
    versions: tuple[DesiredVersion, ...]
    default_version: str | None = None
    min_workers: int = 0
    max_workers: int = 0
    batch_size: int = 0
    max_batch_delay_ms: int = 0
    response_timeout_s: int = 0
    handler: str = ""
    signature: ModelSignature | None = None
    """Declared tensors for the Open Inference metadata (signature.py checks it here, at read)."""


@dataclass(frozen=True)
class DesiredState:
    models: tuple[DesiredModel, ...] = ()


def _invalid(message: str) -> ModelFleetError:
    return ModelFleetError(ErrorKind.INVALID_ARGUMENT, Reason.BAD_INPUT, f"desired state: {message}")


def _int(entry: dict[str, Any], key: DesiredIntField, where: str) -> int:
    value = entry.get(key, 0)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _invalid(f"{where}.{key} must be a non-negative integer, got {value!r}")
    return value


def parse_desired_state(document: Any) -> DesiredState:
    """Validate the decoded JSON document; errors name the offending path."""
    if not isinstance(document, dict) or not isinstance(document.get("models", []), list):
        raise _invalid('top level must be an object with a "models" array')
    models: list[DesiredModel] = []
    seen: set[str] = set()
    for index, entry in enumerate(document.get("models", [])):
        where = f"models[{index}]"
        if not isinstance(entry, dict):
            raise _invalid(f"{where} must be an object")
        name = entry.get("name")
        if not isinstance(name, str):
            raise _invalid(f"{where}.name must be a string")
        check_model_name(name)
        if name in seen:
            raise _invalid(f"{where}.name {name!r} appears twice")
        seen.add(name)
        raw_versions = entry.get("versions")
        if not isinstance(raw_versions, list) or not raw_versions:
            raise _invalid(f"{where}.versions must be a non-empty array")
        versions: list[DesiredVersion] = []
        for v_index, raw in enumerate(raw_versions):
            if not isinstance(raw, dict) or not isinstance(raw.get("url"), str) or not raw["url"]:
                raise _invalid(f"{where}.versions[{v_index}].url must be a non-empty string")
            version = raw.get("version")
            if version is not None:
                if not isinstance(version, str):
                    raise _invalid(f"{where}.versions[{v_index}].version must be a string")
                check_version(version)
            versions.append(DesiredVersion(raw["url"], version))
        default = entry.get("defaultVersion")
        if default is not None and default not in {v.version for v in versions}:
            raise _invalid(f"{where}.defaultVersion {default!r} is not one of its versions")
        handler = entry.get("handler", "")
        if not isinstance(handler, str):
            raise _invalid(f"{where}.handler must be a string")
        signature = None
        if entry.get("signature") is not None:
            try:
                signature = signatures.parse(
                    entry["signature"], where=f"{where}.signature", origin=signatures.DESIRED_STATE
                )
            except ModelFleetError as exc:
                raise _invalid(exc.message) from None
        models.append(
            DesiredModel(
                name=name,
                versions=tuple(versions),
                default_version=default,
                min_workers=_int(entry, "minWorkers", where),
                max_workers=_int(entry, "maxWorkers", where),
                batch_size=_int(entry, "batchSize", where),
                max_batch_delay_ms=_int(entry, "maxBatchDelayMs", where),
                response_timeout_s=_int(entry, "responseTimeoutS", where),
                handler=handler,
                signature=signature,
            )
        )
    return DesiredState(tuple(models))


def read_desired_state(path: Path) -> DesiredState:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise _invalid(f"cannot read {path}: {exc.strerror}") from None
    except (UnicodeDecodeError, ValueError) as exc:  # ValueError: also an integer of over 4,300 digits
        raise _invalid(f"{path} is not valid UTF-8 JSON: {exc}") from None
    return parse_desired_state(document)


def parse_startup_models(entries: Sequence[str]) -> DesiredState:
    """TorchServe's `--models name=url` (or a bare url: the name comes from the source)."""
    models = []
    for entry in entries:
        name, sep, url = entry.partition("=")
        if not sep:
            name, url = "", entry
        if not url:
            raise _invalid(f"--models entry {entry!r} has no url")
        if name:
            check_model_name(name)
        models.append(DesiredModel(name=name or None, versions=(DesiredVersion(url),)))
    return DesiredState(tuple(models))


async def apply_desired_state(registry: ModelRegistry, state: DesiredState) -> list[str]:
    """Load every model; return one message per failure (the pod then stays not ready).

    Idempotent: versions already registered count as loaded, so a retry only does what is missing.
    """
    failures: list[str] = []
    for model in state.models:
        try:
            await _apply_model(registry, model)
        except ModelFleetError as exc:
            log.error("desired state: model %s failed: %s", model.name, exc.message)
            failures.append(f"{model.name or model.versions[0].url}: {exc.message}")
    return failures


def missing_models(registry: ModelRegistry, state: DesiredState) -> DesiredState:
    """The part of the desired state the registry does not hold (by name, version and default)."""
    missing = []
    for model in state.models:
        if model.name is None:
            continue  # a bare --models url: its name is only known once loaded
        try:
            loaded = {v.key.version for v in registry.versions() if v.key.name == model.name}
            default = registry.get(model.name).key.version
        except ModelFleetError:
            missing.append(model)
            continue
        wanted = {v.version for v in model.versions if v.version is not None}
        if not wanted <= loaded or (model.default_version and default != model.default_version):
            missing.append(model)
    return DesiredState(tuple(missing))


def _check_limits(registry: ModelRegistry, model: DesiredModel) -> None:
    """The whole entry against the registry's limits, so a refused entry registers no version at all."""
    limits = registry.limits
    limits.check_values(
        batch_size=model.batch_size,
        max_batch_delay_ms=model.max_batch_delay_ms,
        response_timeout_s=model.response_timeout_s,
    )
    limits.check_version_workers(model.min_workers, what="minWorkers")
    limits.check_version_workers(model.max_workers, what="maxWorkers")
    limits.check_versions(len(model.versions), model=model.name or model.versions[0].url)


async def _apply_model(registry: ModelRegistry, model: DesiredModel) -> None:
    _check_limits(registry, model)
    loaded: list[str] = []
    for version in model.versions:
        spec = RegisterSpec(
            url=version.url,
            model_name=model.name or "",
            handler=model.handler,
            batch_size=model.batch_size,
            max_batch_delay_ms=model.max_batch_delay_ms,
            initial_workers=model.min_workers,
            response_timeout_s=model.response_timeout_s,
            synchronous=True,
            expected_version=version.version,
            signature=model.signature,
        )
        try:
            result = await registry.register(spec, at_startup=True)
        except ModelFleetError as exc:
            if exc.reason is not Reason.ALREADY_EXISTS:
                raise
            loaded.append(exc.metadata.get("version", version.version or ""))
            continue
        loaded.append(result.key.version)
        if model.max_workers > model.min_workers > 0:
            await registry.scale(
                result.key.name,
                result.key.version,
                min_workers=model.min_workers,
                max_workers=model.max_workers,
                synchronous=True,
                timeout_s=None,
            )
    if model.default_version and loaded and model.name:
        registry.set_default(model.name, model.default_version)
