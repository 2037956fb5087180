"""Fixtures for the local API tests: the API in its own thread, kubernetes clients, a kubectl runner."""

from __future__ import annotations

import copy
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import kubernetes
import pytest

from modelfleet.local.apiserver import RunningApi, apiserver_thread

from mf_tools import tool_path


@pytest.fixture
def api() -> Iterator[RunningApi]:
    with apiserver_thread() as running:
        yield running


@pytest.fixture
def client(api: RunningApi) -> Iterator[kubernetes.client.ApiClient]:
    config = kubernetes.client.Configuration(host=api.url)
    with kubernetes.client.ApiClient(config) as api_client:
        yield api_client


@pytest.fixture
def core(client: kubernetes.client.ApiClient) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(client)


@pytest.fixture
def apps(client: kubernetes.client.ApiClient) -> kubernetes.client.AppsV1Api:
    return kubernetes.client.AppsV1Api(client)


@pytest.fixture
def custom(client: kubernetes.client.ApiClient) -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(client)


@pytest.fixture
def kubeconfig(api: RunningApi, tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(api.kubeconfig())
    return path


@pytest.fixture
def kubectl(kubeconfig: Path, tmp_path: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    kubectl_binary = tool_path("kubectl")  # .tools/bin's 1.37, not whatever kubectl PATH holds
    env = dict(os.environ, KUBECONFIG=str(kubeconfig), HOME=str(tmp_path))

    def run(
        *args: str, check: bool = True, stdin: str | None = None, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [kubectl_binary, *args], env=env, input=stdin, capture_output=True, text=True, timeout=timeout
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr}")
        return result

    return run


@pytest.fixture
def make_deployment() -> Callable[..., dict]:
    return _deployment_body


def _deployment_body(name: str = "web", *, replicas: int = 1, labels: dict[str, str] | None = None) -> dict:
    match = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": match},
            "template": {
                "metadata": {"labels": match},
                "spec": {
                    "containers": [{"name": "main", "image": "busybox:1"}, {"name": "sidecar", "image": "busybox:1"}]
                },
            },
        },
    }


@pytest.fixture
def widget_crd() -> dict:
    """A CRD with status and scale subresources, a schema with a default, and a printer column."""
    return copy.deepcopy(_CRD)


_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.io"},
    "spec": {
        "group": "example.io",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wdg"]},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {
                    "status": {},
                    "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"},
                },
                "additionalPrinterColumns": [{"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"}],
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["size"],
                                "properties": {
                                    "size": {"type": "string", "enum": ["small", "large"]},
                                    "replicas": {"type": "integer", "minimum": 0, "default": 1},
                                },
                            },
                            "status": {
                                "type": "object",
                                "properties": {"replicas": {"type": "integer"}, "phase": {"type": "string"}},
                            },
                        },
                    }
                },
            }
        ],
    },
}
