"""Every example is a valid ModelDeployment: CRD schema (unknown fields included), the CRD's CEL rules
(as the operator's parser re-checks them), and the children the operator writes for it are valid
Kubernetes for the oldest and newest supported versions. The set covers what the README promises.
An example file may put the objects its ModelDeployment needs (a Secret) before it; those must be
valid Kubernetes too."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))


def _documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _load(path: Path) -> dict[str, Any]:
    """The file's ModelDeployment: its last document (what it needs comes first, as kubectl applies in order)."""
    return _documents(path)[-1]


def _errors(validator: Any, doc: dict[str, Any]) -> list[str]:
    return [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_matches_the_crd_schema(cr_validator: Any, path: Path) -> None:
    doc = _load(path)
    assert (doc["apiVersion"], doc["kind"]) == ("modelfleet.io/v1alpha1", "ModelDeployment")
    assert _errors(cr_validator, doc) == []


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_objects_before_the_modeldeployment_are_valid_kubernetes_in_its_namespace(path: Path, k8s_version: str) -> None:
    *needed, _ = _documents(path)
    for doc in needed:
        assert "namespace" not in doc["metadata"], "applied with `-n`, like the ModelDeployment"
        kubernetes_validate.validate(doc, k8s_version, strict=True)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_starts_with_a_comment_saying_what_it_shows(path: Path) -> None:
    head = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        head.append(line.lstrip("# "))
    assert len(" ".join(head).split()) >= 15, f"{path.name}: say what it shows in a leading comment"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_operator_accepts_example_and_its_children_are_valid_kubernetes(path: Path, k8s_version: str) -> None:
    from modelfleet.operator import children
    from modelfleet.operator.settings import FleetSettings
    from modelfleet.operator.spec import parse_spec

    doc = _load(path)
    doc["metadata"].update(namespace="default", uid="00000000-0000-0000-0000-000000000001", generation=1)
    spec = parse_spec(doc)  # raises InvalidSpec listing every CEL-rule violation
    objects = [
        children.deployment(spec),
        children.service(spec),
        children.headless_service(spec),
        children.network_policy(spec, FleetSettings()),
        children.pod_disruption_budget(spec),
    ]
    for obj in objects:
        kubernetes_validate.validate(obj, k8s_version, strict=True)


def test_examples_cover_cpu_one_gpu_a_mig_slice_and_several_versioned_models() -> None:
    docs = {path.name: _load(path) for path in EXAMPLES}

    def extended(doc: dict[str, Any]) -> set[str]:
        limits = doc["spec"].get("resources", {}).get("limits", {})
        return {name for name in limits if "/" in name}

    assert any(not extended(d) for d in docs.values()), "a CPU-only example"
    assert any(d["spec"].get("resources", {}).get("limits", {}).get("nvidia.com/gpu") == 1 for d in docs.values())
    assert any(any(n.startswith("nvidia.com/mig-") for n in extended(d)) for d in docs.values())
    assert any(
        len(d["spec"]["models"]) >= 2 and any(len(m["versions"]) >= 2 for m in d["spec"]["models"])
        for d in docs.values()
    ), "an example with several models, one with several versions"


def test_the_object_store_example_mounts_its_own_secret_and_allows_its_own_urls() -> None:
    """What makes examples/s3.yaml work once its endpoint and keys are real: the Secret it creates is
    the one the pods mount, in a layout the server reads, and every URL passes the allow-list."""
    from modelfleet.operator import children, storage
    from modelfleet.operator.spec import parse_spec

    secret, doc = _documents(EXAMPLES[0].parent / "s3.yaml")
    doc["metadata"].update(namespace="default", uid="00000000-0000-0000-0000-000000000001", generation=1)
    spec = parse_spec(doc)
    assert spec.storage.credentials_secret == secret["metadata"]["name"]
    stored = {"metadata": secret["metadata"], "data": dict.fromkeys(secret["stringData"], "eA==")}
    assert storage.problem_of(spec, stored) is None  # the API folds stringData into data
    urls = [v.url.split("#", 1)[0] for m in spec.models for v in m.versions]
    assert urls and all(u.startswith("s3://") for u in urls)
    assert all(any(re.fullmatch(p, u) for p in spec.allowed_sources) for u in urls)
    pod = children.deployment(spec)["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "storage-credentials"]
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    args = pod["containers"][0]["args"]
    assert f"--storage-endpoint-url={doc['spec']['storage']['endpoint']}" in args
    assert f"--storage-credentials-dir={children.STORAGE_CREDENTIALS_DIR}" in args


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (lambda s: s.update(replicas=-1), "spec.replicas"),
        (lambda s: s.update(replica=2), "spec"),  # a typo: pruned by the API server, refused by kubectl
        (lambda s: s["models"][0].update(name="has space"), "spec.models.0.name"),
        (lambda s: s["models"][0]["versions"][0].update(version=""), "spec.models.0.versions.0.version"),
        (lambda s: s["resources"]["limits"].update({"nvidia.com/gpu": "one"}), "spec.resources.limits.nvidia.com/gpu"),
    ],
)
def test_the_schema_check_catches_a_broken_example(cr_validator: Any, mutate: Any, where: str) -> None:
    doc = copy.deepcopy(_load(EXAMPLES[0].parent / "cpu.yaml"))
    mutate(doc["spec"])
    errors = _errors(cr_validator, doc)
    assert any(e.startswith(where + ":") for e in errors), errors
