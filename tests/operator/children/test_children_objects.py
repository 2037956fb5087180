"""The objects a ModelDeployment owns: valid Kubernetes, owned, and shaped as the issue requires."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kubernetes_validate
import pytest

from modelfleet.operator import children
from modelfleet.operator.settings import FleetSettings
from modelfleet.operator.spec import parse_spec

FULL = {
    "replicas": 2,
    "resources": {"limits": {"nvidia.com/gpu": 1, "nvidia.com/mig-1g.10gb": 1, "amd.com/gpu": "1", "memory": "8Gi"}},
    "nodeSelector": {"nvidia.com/gpu.present": "true"},
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    "affinity": {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]
            }
        }
    },
    "topologySpreadConstraints": [
        {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule"}
    ],
    "runtimeClassName": "nvidia",
    "priorityClassName": "inference",
    "resourceClaims": [{"name": "gpu", "resourceClaimTemplateName": "one-gpu", "request": "gpu"}],
    "modelStore": {"volume": {"persistentVolumeClaim": {"claimName": "models"}}, "readOnly": True},
    "allowedSources": ["https://models\\.example/.*"],
    "strategy": {"maxSurge": 0, "maxUnavailable": 1},
    "imagePullSecrets": [{"name": "regcred"}],
    "serviceAccountName": "servers",
    "networkPolicy": {"metricsNamespaces": ["monitoring"]},
}


def _all(spec: Any) -> list[dict[str, Any]]:
    return [
        children.deployment(spec),
        children.service(spec),
        children.headless_service(spec),
        children.configmap(spec, {"models": []}),
        children.token_secret(spec, management_token="m", inference_token="i"),
        children.network_policy(spec, FleetSettings()),
        children.pod_disruption_budget(spec),
    ]


@pytest.mark.parametrize("extra", [{}, FULL], ids=["minimal", "every-field"])
def test_every_child_is_strictly_valid_for_oldest_and_newest_kubernetes(
    extra: dict[str, Any], make_md: Callable[..., dict[str, Any]], k8s_versions: tuple[str, str]
) -> None:
    spec = parse_spec(make_md(**extra))
    for obj in _all(spec):
        for version in k8s_versions:
            kubernetes_validate.validate(obj, version, strict=True)


def test_every_child_is_owned_by_its_modeldeployment(make_md: Callable[..., dict[str, Any]]) -> None:
    spec = parse_spec(make_md("fleet"))
    for obj in _all(spec):
        (ref,) = obj["metadata"]["ownerReferences"]
        assert ref == {
            "apiVersion": "modelfleet.io/v1alpha1",
            "kind": "ModelDeployment",
            "name": "fleet",
            "uid": "uid-fleet",
            "controller": True,
            "blockOwnerDeletion": True,
        }
        assert obj["metadata"]["labels"][children.FLEET_LABEL] == "fleet"


def _server(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["name"] == "server"
    return container


def test_pods_run_the_server_with_model_api_tokens_and_desired_state_on_the_pod_ip(
    make_md: Callable[..., dict[str, Any]],
) -> None:
    spec = parse_spec(make_md(allowedSources=["https://a/.*", "file:///models/.*"]))
    deployment = children.deployment(spec)
    container = _server(deployment)
    args = container["args"]
    assert container["command"] == ["modelfleet-server"]
    assert "--enable-model-api" in args
    assert "--inference-address=$(POD_IP):7070" in args and "--management-address=$(POD_IP):7071" in args
    assert container["env"][0] == {
        "name": "POD_IP",
        "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}},
    }
    assert "--desired-state=/etc/modelfleet/desired/models.json" in args
    assert "--management-token-file=/etc/modelfleet/tokens/management" in args
    assert "--inference-token-file=/etc/modelfleet/tokens/inference" in args
    assert [a for a in args if a.startswith("--allowed-sources=")] == [
        "--allowed-sources=https://a/.*",
        "--allowed-sources=file:///models/.*",
    ]
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["desired-state"]["configMap"] == {
        "name": "demo-models",
        "items": [{"key": "models.json", "path": "models.json"}],
    }
    assert volumes["tokens"]["secret"]["secretName"] == "demo-tokens"
    assert {i["path"] for i in volumes["tokens"]["secret"]["items"]} == {"management", "inference"}


def test_probes_use_token_free_grpc_health_and_liveness_never_depends_on_models(
    make_md: Callable[..., dict[str, Any]],
) -> None:
    container = _server(children.deployment(parse_spec(make_md(modelLoadTimeoutSeconds=300))))
    startup, readiness, liveness = container["startupProbe"], container["readinessProbe"], container["livenessProbe"]
    assert startup["grpc"]["service"] == "" and readiness["grpc"]["service"] == ""
    assert liveness["grpc"]["service"] == "modelfleet.liveness"
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300  # the load timeout is the budget
    assert {p["grpc"]["port"] for p in (startup, readiness, liveness)} == {children.HEALTH_PORT}


def test_extended_resources_and_scheduling_fields_reach_the_pod(make_md: Callable[..., dict[str, Any]]) -> None:
    spec = parse_spec(make_md(**FULL))
    pod = children.deployment(spec)["spec"]["template"]["spec"]
    container = _server(children.deployment(spec))
    assert container["resources"]["limits"] == FULL["resources"]["limits"]
    assert container["resources"]["claims"] == [{"name": "gpu", "request": "gpu"}]
    assert pod["resourceClaims"] == [{"name": "gpu", "resourceClaimTemplateName": "one-gpu"}]
    assert pod["nodeSelector"] == FULL["nodeSelector"] and pod["tolerations"] == FULL["tolerations"]
    assert pod["affinity"] == FULL["affinity"]
    assert pod["runtimeClassName"] == "nvidia" and pod["priorityClassName"] == "inference"
    spread = pod["topologySpreadConstraints"][0]
    assert spread["labelSelector"] == {"matchLabels": children.selector_labels(spec)}
    strategy = children.deployment(spec)["spec"]["strategy"]
    assert strategy == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
    store = next(v for v in pod["volumes"] if v["name"] == "model-store")
    assert store == {"name": "model-store", "persistentVolumeClaim": {"claimName": "models"}}


def test_a_model_change_never_changes_the_deployment(make_md: Callable[..., dict[str, Any]]) -> None:
    one = parse_spec(make_md())
    two = parse_spec(
        make_md(
            models=[
                {
                    "name": "tiny",
                    "versions": [{"version": "1.0", "url": "a"}, {"version": "2.0", "url": "b"}],
                    "defaultVersion": "2.0",
                },
                {"name": "mlp", "versions": [{"version": "1.0", "url": "mlp.pt"}], "minWorkers": 2},
            ]
        )
    )
    assert children.deployment(one) == children.deployment(two)
    assert children.configmap(one, {"models": [1]}) != children.configmap(one, {"models": [2]})


def test_the_service_carries_inference_only_as_grpc_and_the_headless_one_has_no_cluster_ip(
    make_md: Callable[..., dict[str, Any]],
) -> None:
    spec = parse_spec(make_md())
    for service in (children.service(spec), children.headless_service(spec)):
        assert service["spec"]["ports"] == [
            {"name": "grpc", "port": 7070, "targetPort": "grpc", "protocol": "TCP", "appProtocol": "grpc"}
        ]
        assert service["spec"]["selector"] == children.selector_labels(spec)
    assert children.headless_service(spec)["spec"]["clusterIP"] == "None"
    assert "clusterIP" not in children.service(spec)["spec"]


def test_network_policy_opens_management_to_the_operator_only(make_md: Callable[..., dict[str, Any]]) -> None:
    spec = parse_spec(make_md(networkPolicy={"metricsNamespaces": ["monitoring"]}))
    fleet = FleetSettings(operator_namespace="ops", operator_pod_labels=(("app", "op"),))
    rules = {r["ports"][0]["port"]: r for r in children.network_policy(spec, fleet)["spec"]["ingress"]}
    assert rules[children.MANAGEMENT_PORT]["from"] == [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ops"}},
            "podSelector": {"matchLabels": {"app": "op"}},
        }
    ]
    assert rules[children.INFERENCE_PORT]["from"] == [{"namespaceSelector": {}}]
    assert rules[children.METRICS_PORT]["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
    ]
    assert "from" not in rules[children.HEALTH_PORT]  # kubelet probes


def test_the_hash_annotation_follows_content_only(make_md: Callable[..., dict[str, Any]]) -> None:
    spec = parse_spec(make_md())
    first, again = children.deployment(spec), children.deployment(spec)
    assert (
        first["metadata"]["annotations"][children.HASH_ANNOTATION]
        == again["metadata"]["annotations"][children.HASH_ANNOTATION]
    )
    other = children.deployment(parse_spec(make_md(image="other:1")))
    assert (
        other["metadata"]["annotations"][children.HASH_ANNOTATION]
        != first["metadata"]["annotations"][children.HASH_ANNOTATION]
    )
    assert children.HASH_ANNOTATION not in first["spec"]["template"]["metadata"].get("annotations", {})


def test_a_spec_without_an_image_runs_the_operators_default_server_image(
    make_md: Callable[..., dict[str, Any]],
) -> None:
    fleet = FleetSettings(default_server_image="registry.example/modelfleet-server:0.2.0")
    imageless = make_md()
    del imageless["spec"]["image"]
    container = _server(children.deployment(parse_spec(imageless, default_image=fleet.default_server_image)))
    assert container["image"] == "registry.example/modelfleet-server:0.2.0"
    # An explicit spec.image wins over the default.
    pinned = _server(children.deployment(parse_spec(make_md(image="mine:1"), default_image=fleet.default_server_image)))
    assert pinned["image"] == "mine:1"
