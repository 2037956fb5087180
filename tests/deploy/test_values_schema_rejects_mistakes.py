"""values.schema.json turns a misspelt key or a wrong type into an install error, anywhere in the values."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

CHART = Path(__file__).resolve().parents[2] / "charts" / "modelfleet"


@pytest.mark.parametrize(
    ("setting", "complaint"),
    [
        # Misspelt keys at several depths.
        ("operater.replicas=2", "operater"),
        ("operator.replica=2", "replica"),
        ("operator.image.tags=v1", "tags"),
        ("operator.leaderElection.enable=true", "enable"),
        ("networkPolicy.apiserver.cidrs={10.0.0.0/8}", "apiserver"),
        ("tests.modelDeployment.nmae=x", "nmae"),
        # Wrong types and values.
        ("operator.replicas=two", "/operator/replicas"),
        ("operator.replicas=-1", "/operator/replicas"),
        ("operator.logLevel=LOUD", "/operator/logLevel"),
        ("operator.watchNamespaces={Team_A}", "/operator/watchNamespaces"),
        ("operator.image.digest=latest", "/operator/image/digest"),
        ("operator.image.pullPolicy=Sometimes", "/operator/image/pullPolicy"),
        ("operator.nodeSelector=gpu", "/operator/nodeSelector"),
        ("operator.tolerations.key=x", "/operator/tolerations"),
        ("operator.resources.limits.memory=lots", "/operator/resources/limits/memory"),
        ("networkPolicy.enabled=maybe", "/networkPolicy/enabled"),
        ("crds.install=yes please", "/crds/install"),
    ],
)
def test_a_wrong_value_fails_the_install_naming_it(helm: Callable[..., Any], setting: str, complaint: str) -> None:
    result = helm("template", "m", str(CHART), "--set", setting)
    assert result.returncode != 0, f"--set {setting} was accepted"
    assert "schema" in result.stderr and complaint in result.stderr, result.stderr


def test_a_values_file_with_a_typo_fails(helm: Callable[..., Any], tmp_path: Path) -> None:
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump({"operator": {"nodeSelecter": {"pool": "system"}}}))
    result = helm("template", "m", str(CHART), "-f", str(values))
    assert result.returncode != 0
    assert "nodeSelecter" in result.stderr


def _objects(schema: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(schema, dict):
        if schema.get("type") == "object" and "properties" in schema:
            yield path or "/", schema
        for key, value in schema.items():
            yield from _objects(value, f"{path}/{key}")
    elif isinstance(schema, list):
        for i, value in enumerate(schema):
            yield from _objects(value, f"{path}/{i}")


def test_every_object_with_named_keys_is_closed() -> None:
    """Typos fail at any depth only if no object with known keys accepts unknown ones."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    objects = list(_objects(schema))
    assert len(objects) > 10
    open_objects = [path for path, obj in objects if obj.get("additionalProperties") is not False]
    assert open_objects == []


def test_the_defaults_satisfy_the_schema_and_every_default_key_is_declared() -> None:
    import jsonschema

    schema = json.loads((CHART / "values.schema.json").read_text())
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    jsonschema.Draft7Validator(schema).validate(defaults)
