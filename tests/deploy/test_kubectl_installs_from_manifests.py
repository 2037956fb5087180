"""`kubectl apply -f manifests/` installs ModelFleet, and the examples then apply, against the local
in-memory Kubernetes API (modelfleet.local.apiserver; real HTTP, real kubectl 1.37).

kubectl runs as users type it (default --validate=strict: the local API serves OpenAPI v3 and checks
unknown fields itself); the API validates custom resources against the CRD's schema, which is what
makes a bad ModelDeployment fail here.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
Kubectl = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def kubectl(kubectl_binary: str, tmp_path: Path) -> Iterator[Kubectl]:
    from modelfleet.local.apiserver import apiserver_thread

    with apiserver_thread() as api:
        (tmp_path / "kubeconfig").write_text(api.kubeconfig())
        env = {**os.environ, "KUBECONFIG": str(tmp_path / "kubeconfig"), "HOME": str(tmp_path)}

        def run(*args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
            result = subprocess.run(
                [kubectl_binary, *args], input=stdin, capture_output=True, text=True, env=env, timeout=60
            )
            if check:
                assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
            return result

        yield run


def _get(kubectl: Kubectl, *args: str) -> Any:
    return json.loads(kubectl("get", *args, "-o", "json").stdout)


def test_kubectl_apply_of_the_manifests_creates_every_object(kubectl: Kubectl) -> None:
    kubectl("apply", "-f", str(ROOT / "manifests"))
    expected = [
        (doc["kind"], doc["metadata"].get("namespace"), doc["metadata"]["name"])
        for path in sorted((ROOT / "manifests").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]
    assert len(expected) >= 10
    for kind, namespace, name in expected:
        args = [kind.lower(), name, *(["-n", namespace] if namespace else [])]
        assert _get(kubectl, *args)["metadata"]["name"] == name
    operator = _get(kubectl, "deployment", "modelfleet-operator", "-n", "modelfleet-system")
    assert operator["spec"]["template"]["spec"]["serviceAccountName"] == "modelfleet-operator"
    # A second apply of unchanged files is a no-op, as an upgrade with nothing new must be.
    again = kubectl("apply", "-f", str(ROOT / "manifests")).stdout
    assert "configured" not in again and "created" not in again, again


def test_examples_apply_and_get_the_crd_defaults(kubectl: Kubectl) -> None:
    kubectl("apply", "-f", str(ROOT / "manifests" / "00-crds.yaml"))
    kubectl("apply", "-f", str(ROOT / "examples"))
    names = {
        doc["metadata"]["name"]
        for p in (ROOT / "examples").glob("*.yaml")
        for doc in yaml.safe_load_all(p.read_text())
        if doc and doc["kind"] == "ModelDeployment"
    }
    listed = _get(kubectl, "modeldeployments")
    assert {item["metadata"]["name"] for item in listed["items"]} == names
    cpu = _get(kubectl, "mdep", "cpu-tiny")  # the short name works
    model = cpu["spec"]["models"][0]
    assert model["responseTimeoutS"] == 120 and cpu["spec"]["modelLoadTimeoutSeconds"] == 600  # CRD defaults
    # The object-store example's Secret went in with it (stringData folded into data) and its storage
    # section and signature were stored as written.
    secret = _get(kubectl, "secret", "model-store-credentials")
    assert set(secret["data"]) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    s3 = _get(kubectl, "mdep", "s3-tiny")
    written = yaml.safe_load_all((ROOT / "examples" / "s3.yaml").read_text())
    example = [doc for doc in written if doc["kind"] == "ModelDeployment"][0]
    assert s3["spec"]["storage"] == example["spec"]["storage"]
    assert s3["spec"]["models"][0]["signature"] == example["spec"]["models"][0]["signature"]


def test_kubectl_refuses_a_storage_section_the_crd_does_not_allow(kubectl: Kubectl) -> None:
    kubectl("apply", "-f", str(ROOT / "manifests" / "00-crds.yaml"))
    *_, good = yaml.safe_load_all((ROOT / "examples" / "s3.yaml").read_text())
    for field, value, said in [
        ("addressingStyle", "sideways", "spec.storage.addressingStyle"),
        ("endpoint", "ftp://minio:9000", "spec.storage.endpoint"),
        ("endpoint", "http://user:password@minio:9000", "spec.storage.endpoint"),
        ("credentialsSecret", {"name": "Not_A_Name"}, "spec.storage.credentialsSecret.name"),
    ]:
        broken = json.loads(json.dumps(good))
        broken["spec"]["storage"][field] = value
        result = kubectl("apply", "-f", "-", stdin=yaml.safe_dump(broken), check=False)
        assert result.returncode != 0 and said in result.stderr, (field, value, result.stderr)
    assert kubectl("get", "mdep", "-o", "name").stdout == ""


def test_a_broken_modeldeployment_is_refused_by_the_api(kubectl: Kubectl) -> None:
    kubectl("apply", "-f", str(ROOT / "manifests" / "00-crds.yaml"))
    broken = yaml.safe_load((ROOT / "examples" / "cpu.yaml").read_text())
    broken["spec"]["replicas"] = -1
    result = kubectl("apply", "-f", "-", stdin=yaml.safe_dump(broken), check=False)
    assert result.returncode != 0
    assert "replicas" in result.stderr


def test_a_modeldeployment_with_a_typoed_field_is_refused_by_strict_validation(kubectl: Kubectl) -> None:
    kubectl("apply", "-f", str(ROOT / "manifests" / "00-crds.yaml"))
    typo = yaml.safe_load((ROOT / "examples" / "cpu.yaml").read_text())
    typo["spec"]["replicaz"] = typo["spec"].pop("replicas", 2)
    result = kubectl("apply", "-f", "-", stdin=yaml.safe_dump(typo), check=False)
    assert result.returncode != 0
    assert 'strict decoding error: unknown field "spec.replicaz"' in result.stderr, result.stderr
