"""The chart lints, and what it renders is valid Kubernetes for the oldest and newest supported versions."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

CHART = Path(__file__).resolve().parents[2] / "charts" / "modelfleet"


def find(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


# Values a platform team sets, all at once: every template branch that defaults skip is rendered.
CUSTOMISED = [
    "--set", "operator.replicas=3",
    "--set", "operator.image.digest=sha256:" + "a" * 64,
    "--set", "operator.watchNamespaces={team-a,team-b}",
    "--set", "operator.logLevel=DEBUG",
    "--set", "operator.nodeSelector.kubernetes\\.io/os=linux",
    "--set", "operator.tolerations[0].key=dedicated,operator.tolerations[0].operator=Equal,"
             "operator.tolerations[0].value=control,operator.tolerations[0].effect=NoSchedule",
    "--set", "operator.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
             ".nodeSelectorTerms[0].matchExpressions[0].key=kubernetes.io/arch,"
             "operator.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
             ".nodeSelectorTerms[0].matchExpressions[0].operator=In,"
             "operator.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
             ".nodeSelectorTerms[0].matchExpressions[0].values[0]=amd64",
    "--set", "operator.priorityClassName=system-cluster-critical",
    "--set-string", "operator.podAnnotations.prometheus\\.io/scrape=false",
    "--set", "operator.imagePullSecrets[0].name=regcred",
    "--set", "operator.resources.limits.cpu=1",
    "--set", "networkPolicy.apiServer.cidrs={10.0.0.1/32}",
    "--set", "serviceAccount.annotations.team=ml",
    "--set", "createNamespace=true",
    "--set", "server.image.repository=registry.example.com/modelfleet-server,server.image.tag=0.2.0",
]  # fmt: skip


def test_helm_lint_strict_passes(helm: Callable[..., Any]) -> None:
    result = helm("lint", "--strict", str(CHART))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("values", [[], CUSTOMISED], ids=["defaults", "customised"])
def test_every_rendered_object_is_valid_for_supported_kubernetes(
    render: Callable[..., list[dict[str, Any]]], values: list[str], k8s_version: str
) -> None:
    objects = render(*values)
    assert {o["kind"] for o in objects} >= {"CustomResourceDefinition", "Deployment", "ServiceAccount", "NetworkPolicy"}
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, k8s_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} invalid for {k8s_version}: {exc}")


def test_operator_deployment_carries_the_platform_values(render: Callable[..., list[dict[str, Any]]]) -> None:
    (deployment,) = find(render(*CUSTOMISED), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert deployment["spec"]["replicas"] == 3
    assert container["image"] == "ghcr.io/modelfleet/modelfleet-operator@sha256:" + "a" * 64
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["tolerations"] == [{"key": "dedicated", "operator": "Equal", "value": "control", "effect": "NoSchedule"}]
    assert pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0][
        "matchExpressions"
    ] == [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert container["resources"]["limits"]["cpu"] == 1
    assert "--log-level=DEBUG" in container["args"]
    assert [a for a in container["args"] if a.startswith("--namespace=")] == [
        "--namespace=team-a",
        "--namespace=team-b",
    ]


def test_operator_flags_parse_with_the_operators_own_parser(render: Callable[..., list[dict[str, Any]]]) -> None:
    """The chart passes only flags the operator knows, meaning what the values say."""
    from modelfleet.operator.__main__ import parse_settings

    environ = {"POD_NAMESPACE": "modelfleet-system", "POD_NAME": "modelfleet-operator-abc"}
    (deployment,) = find(render(*CUSTOMISED), "Deployment")
    settings = parse_settings(deployment["spec"]["template"]["spec"]["containers"][0]["args"], environ)
    assert settings.kube.namespaces == ("team-a", "team-b")
    assert settings.log_level == "DEBUG"
    assert settings.leader.enabled and settings.leader.lease_namespace == "modelfleet-system"
    assert settings.leader.lease_name == "modelfleet-operator" and settings.leader.identity == "modelfleet-operator-abc"
    assert settings.fleet.operator_namespace == "modelfleet-system"
    assert settings.fleet.default_server_image == "registry.example.com/modelfleet-server:0.2.0"

    (default,) = find(render("--set", "operator.leaderElection.enabled=false"), "Deployment")
    settings = parse_settings(default["spec"]["template"]["spec"]["containers"][0]["args"], environ)
    assert settings.kube.namespaces == () and not settings.leader.enabled
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    assert settings.fleet.default_server_image == f"ghcr.io/modelfleet/modelfleet-server:{app_version}"

    (pinned,) = find(render("--set", "server.image.digest=sha256:" + "b" * 64), "Deployment")
    settings = parse_settings(pinned["spec"]["template"]["spec"]["containers"][0]["args"], environ)
    assert settings.fleet.default_server_image == "ghcr.io/modelfleet/modelfleet-server@sha256:" + "b" * 64


def test_operator_pods_carry_the_labels_its_fleets_admit_to_the_management_port(
    render: Callable[..., list[dict[str, Any]]],
) -> None:
    from modelfleet.operator.settings import FleetSettings

    (deployment,) = find(render(), "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert dict(FleetSettings().operator_pod_labels).items() <= pod_labels.items()


def test_operator_pod_runs_unprivileged_with_a_read_only_root(render: Callable[..., list[dict[str, Any]]]) -> None:
    (deployment,) = find(render(), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]


def test_several_operator_replicas_roll_safely_only_with_leader_election(
    render: Callable[..., list[dict[str, Any]]], helm: Callable[..., Any]
) -> None:
    (elected,) = find(render("--set", "operator.replicas=2"), "Deployment")
    assert elected["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
    }
    assert "--no-leader-election" not in elected["spec"]["template"]["spec"]["containers"][0]["args"]

    (single,) = find(render("--set", "operator.leaderElection.enabled=false"), "Deployment")
    assert single["spec"]["strategy"] == {"type": "Recreate"}, "two operators without a lease must never overlap"
    assert "--no-leader-election" in single["spec"]["template"]["spec"]["containers"][0]["args"]

    refused = helm(
        "template", "m", str(CHART), "--set", "operator.replicas=2", "--set", "operator.leaderElection.enabled=false"
    )
    assert refused.returncode != 0
    assert "leaderElection" in refused.stderr


def test_helm_test_hook_checks_the_example_fleets_grpc_health(render: Callable[..., list[dict[str, Any]]]) -> None:
    (pod,) = find(render("--set", "tests.modelDeployment.namespace=ml"), "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (container,) = pod["spec"]["containers"]
    assert "grpc_health" in container["args"][0]
    assert container["args"][1] == "cpu-tiny.ml.svc:7070"
    assert pod["spec"]["automountServiceAccountToken"] is False


def test_crd_can_be_left_to_a_separate_install(render: Callable[..., list[dict[str, Any]]]) -> None:
    assert find(render(), "CustomResourceDefinition")
    assert not find(render("--set", "crds.install=false"), "CustomResourceDefinition")
    (kept,) = find(render(), "CustomResourceDefinition")
    assert kept["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    (dropped,) = find(render("--set", "crds.keep=false"), "CustomResourceDefinition")
    assert "annotations" not in dropped["metadata"]
