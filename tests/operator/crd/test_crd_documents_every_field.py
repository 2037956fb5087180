"""The CRD is the single, self-documenting source: names, structural schema, descriptions, columns,
subresources, and name/version patterns identical to the server's."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import kubernetes_validate
import pytest

from modelfleet.operator import spec as spec_module
from modelfleet.server import names


def _schema(doc: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = doc["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _nodes(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for key, child in node.get("properties", {}).items():
        yield from _nodes(child, f"{path}.{key}")
    if isinstance(node.get("items"), dict):
        yield from _nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _nodes(node["additionalProperties"], f"{path}{{}}")


def test_names_are_ours_and_do_not_collide_with_other_modeldeployment_kinds(crd_doc: dict[str, Any]) -> None:
    doc = crd_doc
    assert doc["metadata"]["name"] == "modeldeployments.modelfleet.io"
    assert doc["spec"]["group"] == "modelfleet.io"
    assert doc["spec"]["scope"] == "Namespaced"
    names_ = doc["spec"]["names"]
    assert (names_["kind"], names_["plural"], names_["singular"]) == (
        "ModelDeployment",
        "modeldeployments",
        "modeldeployment",
    )
    assert "md" not in names_["shortNames"]
    assert {"mdep", "modeldep"} <= set(names_["shortNames"])
    assert [v["name"] for v in doc["spec"]["versions"]] == ["v1alpha1"]


def test_every_field_has_a_description_for_kubectl_explain(crd_doc: dict[str, Any]) -> None:
    missing = [
        path or "<root>" for path, node in _nodes(_schema(crd_doc)) if not str(node.get("description", "")).strip()
    ]
    assert missing == []


def test_schema_is_structural(crd_doc: dict[str, Any]) -> None:
    problems = []
    for path, node in _nodes(_schema(crd_doc)):
        if node.get("x-kubernetes-int-or-string"):
            if node.get("anyOf") != [{"type": "integer"}, {"type": "string"}]:
                problems.append(f"{path}: int-or-string needs anyOf integer/string")
        elif "type" not in node:
            problems.append(f"{path}: no type")
        if node.get("x-kubernetes-list-type") == "map":
            keys = node["x-kubernetes-list-map-keys"]
            if not set(keys) <= set(node["items"].get("required", [])):
                problems.append(f"{path}: list-map keys must be required")
    assert problems == []


def test_crd_object_is_valid_for_oldest_and_newest_kubernetes(
    crd_doc: dict[str, Any], k8s_versions: tuple[str, str]
) -> None:
    for version in k8s_versions:
        kubernetes_validate.validate(crd_doc, version, strict=True)


def test_status_and_scale_subresources_make_kubectl_scale_and_hpa_work(crd_doc: dict[str, Any]) -> None:
    version = crd_doc["spec"]["versions"][0]
    assert version["subresources"]["status"] == {}
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }


def test_printer_columns_show_ready_models_replicas_and_age(crd_doc: dict[str, Any]) -> None:
    columns = {c["name"]: c for c in crd_doc["spec"]["versions"][0]["additionalPrinterColumns"]}
    assert list(columns) == ["Ready", "Models", "Replicas", "Ready Replicas", "Age"]
    assert columns["Ready"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    assert columns["Models"]["jsonPath"] == ".status.modelsSummary"
    assert columns["Age"]["type"] == "date"


def test_name_and_version_patterns_are_the_servers(crd_doc: dict[str, Any]) -> None:
    model = _schema(crd_doc)["properties"]["spec"]["properties"]["models"]["items"]
    version = model["properties"]["versions"]["items"]["properties"]["version"]
    assert model["properties"]["name"]["pattern"] == names.NAME_PATTERN == spec_module.NAME_PATTERN.pattern
    assert version["pattern"] == names.VERSION_PATTERN == spec_module.VERSION_PATTERN.pattern
    assert model["properties"]["defaultVersion"]["pattern"] == names.VERSION_PATTERN
    assert names.RESERVED_VERSIONS == spec_module.RESERVED_VERSIONS


@pytest.mark.parametrize(
    "field",
    [
        "replicas",
        "image",
        "imagePullPolicy",
        "models",
        "resources",
        "nodeSelector",
        "tolerations",
        "affinity",
        "topologySpreadConstraints",
        "runtimeClassName",
        "priorityClassName",
        "resourceClaims",
        "modelLoadTimeoutSeconds",
        "tokenSecretRef",
        "modelStore",
        "allowedSources",
        "strategy",
    ],
)
def test_spec_covers_what_the_issue_lists(field: str, crd_doc: dict[str, Any]) -> None:
    assert field in _schema(crd_doc)["properties"]["spec"]["properties"]


def test_model_fields_cover_versions_default_workers_batching_and_timeout(crd_doc: dict[str, Any]) -> None:
    model = _schema(crd_doc)["properties"]["spec"]["properties"]["models"]["items"]["properties"]
    assert {
        "name",
        "versions",
        "defaultVersion",
        "minWorkers",
        "maxWorkers",
        "batchSize",
        "maxBatchDelayMs",
        "responseTimeoutS",
    } <= set(model)
    assert set(model["versions"]["items"]["properties"]) == {"version", "url"}
