"""spec.storage becomes the server's --storage-* flags and a read-only Secret volume: parsed with the
CRD's rules and clear messages, mounted whole (never subPath, so a rotated key reaches the running
server), and a change to the section rolls the pods while a change to the Secret's keys does not."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kubernetes_validate
import pytest

from modelfleet.operator import children
from modelfleet.operator.spec import InvalidSpec, StorageSpec, parse_spec

STORAGE = {
    "credentialsSecret": {"name": "model-store-credentials"},
    "endpoint": "http://minio.minio:9000",
    "region": "us-east-1",
    "addressingStyle": "path",
}


def _pod(spec: Any) -> dict[str, Any]:
    pod: dict[str, Any] = children.deployment(spec)["spec"]["template"]["spec"]
    return pod


def test_each_storage_field_becomes_its_server_flag_and_the_secret_a_read_only_volume(
    make_md: Callable[..., dict[str, Any]], k8s_versions: tuple[str, str]
) -> None:
    spec = parse_spec(make_md(storage=STORAGE, allowedSources=["s3://models/.*"]))
    assert spec.storage == StorageSpec("model-store-credentials", "http://minio.minio:9000", "us-east-1", "path")
    pod = _pod(spec)
    (server,) = pod["containers"]
    flags = [a for a in server["args"] if a.startswith(("--storage-", "--allowed-sources"))]
    assert flags == [
        "--allowed-sources=s3://models/.*",
        "--storage-endpoint-url=http://minio.minio:9000",
        "--storage-region=us-east-1",
        "--storage-addressing-style=path",
        "--storage-credentials-dir=/etc/modelfleet/storage-credentials",
    ]
    (mount,) = [m for m in server["volumeMounts"] if m["name"] == "storage-credentials"]
    assert mount == {
        "name": "storage-credentials",
        "mountPath": "/etc/modelfleet/storage-credentials",
        "readOnly": True,
    }
    (volume,) = [v for v in pod["volumes"] if v["name"] == "storage-credentials"]
    # Every key, not `items`: the server reads either layout; not optional: a pod without it waits.
    assert volume == {
        "name": "storage-credentials",
        "secret": {"secretName": "model-store-credentials", "defaultMode": 0o440},
    }
    for version in k8s_versions:
        kubernetes_validate.validate(children.deployment(spec), version, strict=True)


def test_without_a_storage_section_the_pods_get_no_storage_flag_or_volume(
    make_md: Callable[..., dict[str, Any]],
) -> None:
    pod = _pod(parse_spec(make_md()))
    assert not [a for a in pod["containers"][0]["args"] if a.startswith("--storage-")]
    assert "storage-credentials" not in {v["name"] for v in pod["volumes"]}


def test_only_the_fields_given_become_flags_so_the_servers_defaults_apply_to_the_rest(
    make_md: Callable[..., dict[str, Any]],
) -> None:
    pod = _pod(parse_spec(make_md(storage={"region": "eu-west-1"})))  # e.g. AWS with IRSA: no Secret
    assert [a for a in pod["containers"][0]["args"] if a.startswith("--storage-")] == ["--storage-region=eu-west-1"]
    assert "storage-credentials" not in {v["name"] for v in pod["volumes"]}


def test_a_storage_change_rolls_the_pods_and_nothing_about_the_secrets_content_is_in_the_template(
    make_md: Callable[..., dict[str, Any]],
) -> None:
    before = children.deployment(parse_spec(make_md(storage=STORAGE)))
    moved = children.deployment(parse_spec(make_md(storage={**STORAGE, "endpoint": "https://s3.example.com"})))
    assert moved["spec"]["template"] != before["spec"]["template"]  # a new ReplicaSet: a rolling update
    assert (
        before["spec"]["template"]
        == children.deployment(parse_spec(make_md(storage=dict(STORAGE))))["spec"]["template"]
    )


@pytest.mark.parametrize(
    ("storage", "where", "says"),
    [
        ({"addressingStyle": "sideways"}, "spec.storage.addressingStyle", "must be one of auto, virtual, path"),
        ({"endpoint": "minio:9000"}, "spec.storage.endpoint", "http:// or https:// URL"),
        (
            {"endpoint": "http://key:secret@minio:9000"},
            "spec.storage.endpoint",
            "credentials belong in credentialsSecret",
        ),
        ({"endpoint": "https://s3.example.com/?x=1"}, "spec.storage.endpoint", "no user name, password, query"),
        ({"credentialsSecret": {"name": "Model_Store"}}, "spec.storage.credentialsSecret.name", "must match"),
        ({"credentialsSecret": {}}, "spec.storage.credentialsSecret.name", "is required"),
        ({"region": "us east"}, "spec.storage.region", "must match"),
        ({"region": 1}, "spec.storage.region", "must be a string"),
        ("s3", "spec.storage", "must be an object"),
    ],
)
def test_a_bad_storage_field_is_an_invalid_spec_that_names_the_field(
    make_md: Callable[..., dict[str, Any]], storage: Any, where: str, says: str
) -> None:
    with pytest.raises(InvalidSpec) as refused:
        parse_spec(make_md(storage=storage))
    (problem,) = refused.value.problems
    assert problem.startswith(f"{where}: ") and says in problem, problem


@pytest.mark.parametrize(
    "endpoint",
    ["http://minio.minio:9000", "https://storage.googleapis.com", "http://127.0.0.1:9000/", "http://[::1]:9000/s3"],
)
def test_endpoints_of_common_stores_are_accepted(make_md: Callable[..., dict[str, Any]], endpoint: str) -> None:
    assert parse_spec(make_md(storage={"endpoint": endpoint})).storage.endpoint == endpoint
