"""Objects go only into namespaces that exist, as on a real API server (NamespaceLifecycle): a missing
namespace is NotFound (`namespaces "x" not found`), one being deleted is Forbidden, and the three a
cluster starts with (default, kube-system, kube-public) exist from the start."""

from __future__ import annotations

import json

import kubernetes
import pytest


def test_a_configmap_in_a_missing_namespace_is_refused_as_not_found(core: kubernetes.client.CoreV1Api) -> None:
    with pytest.raises(kubernetes.client.ApiException) as refused:
        core.create_namespaced_config_map("nowhere", {"metadata": {"name": "settings"}})
    assert refused.value.status == 404
    status = json.loads(refused.value.body)
    assert (status["reason"], status["message"]) == ("NotFound", 'namespaces "nowhere" not found')
    assert status["details"] == {"name": "nowhere", "kind": "namespaces"}


def test_kubectl_says_the_namespace_is_not_found(kubectl) -> None:
    configmap = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": "nowhere"}}
    result = kubectl("create", "-f", "-", stdin=json.dumps(configmap), check=False)
    assert result.returncode != 0
    assert 'namespaces "nowhere" not found' in result.stderr


def test_objects_go_into_a_namespace_once_it_is_created(core: kubernetes.client.CoreV1Api) -> None:
    core.create_namespace({"metadata": {"name": "team"}})
    core.create_namespaced_config_map("team", {"metadata": {"name": "settings"}})
    assert core.read_namespaced_config_map("settings", "team").metadata.namespace == "team"


@pytest.mark.parametrize("namespace", ["default", "kube-system", "kube-public"])
def test_the_namespaces_a_cluster_starts_with_exist(core: kubernetes.client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "settings"}})


def test_a_namespace_being_deleted_takes_no_new_objects(core: kubernetes.client.CoreV1Api) -> None:
    core.create_namespace({"metadata": {"name": "leaving", "finalizers": ["example.io/hold"]}})
    core.delete_namespace("leaving")
    with pytest.raises(kubernetes.client.ApiException) as refused:
        core.create_namespaced_config_map("leaving", {"metadata": {"name": "settings"}})
    assert refused.value.status == 403
    assert "because it is being terminated" in json.loads(refused.value.body)["message"]
