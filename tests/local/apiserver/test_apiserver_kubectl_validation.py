"""Real kubectl as a user types it: protobuf bodies, OpenAPI, strict field validation, explain, tables."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def test_kubectl_create_namespace_configmap_secret_and_serviceaccount_succeed(kubectl, core):
    # kubectl's typed clients send these as protobuf and never fall back to JSON.
    kubectl("create", "namespace", "ml-serving")
    kubectl("create", "configmap", "settings", "-n", "ml-serving", "--from-literal=mode=fast")
    kubectl("create", "secret", "generic", "tokens", "-n", "ml-serving", "--from-literal=inference=s3cret")
    kubectl("create", "serviceaccount", "runner", "-n", "ml-serving")
    assert core.read_namespace("ml-serving").status.phase == "Active"
    assert core.read_namespaced_config_map("settings", "ml-serving").data == {"mode": "fast"}
    assert core.read_namespaced_secret("tokens", "ml-serving").data == {"inference": "czNjcmV0"}
    assert core.read_namespaced_service_account("runner", "ml-serving").metadata.name == "runner"


def test_kubectl_create_of_a_kind_sent_as_undecodable_protobuf_names_the_json_route(kubectl):
    result = kubectl("create", "deployment", "web", "--image=busybox", check=False)
    assert result.returncode != 0 and "kubectl apply -f" in result.stderr, result.stderr


def test_kubectl_apply_validates_strictly_and_accepts_the_install_manifests(kubectl):
    result = kubectl("apply", "--validate=strict", "-f", str(ROOT / "manifests"))
    assert "deployment.apps/modelfleet-operator created" in result.stdout, result.stdout
    assert result.stderr == ""


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_kubectl_apply_validates_strictly_and_accepts_every_example(kubectl, path):
    kubectl("apply", "-f", str(ROOT / "manifests" / "00-crds.yaml"))
    result = kubectl("apply", "--validate=strict", "-n", "default", "-f", str(path))
    assert "created" in result.stdout and result.stderr == "", result


def test_kubectl_apply_refuses_a_typoed_field_in_a_builtin_kind(kubectl, make_deployment):
    body = make_deployment()
    body["spec"]["replicaz"] = 2
    body["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    result = kubectl("apply", "-f", "-", stdin=yaml.safe_dump(body), check=False)
    assert result.returncode != 0
    assert (
        'Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: '
        'unknown field "spec.replicaz", unknown field "spec.template.spec.containers[0].imagePullPolicyy"'
        in result.stderr
    ), result.stderr
    assert kubectl("get", "deployments", "-o", "name").stdout == ""


def test_kubectl_apply_refuses_a_typoed_field_in_a_modeldeployment_on_create_and_on_update(kubectl):
    kubectl("apply", "-f", str(ROOT / "manifests" / "00-crds.yaml"))
    good = (ROOT / "examples" / "cpu.yaml").read_text()
    typo = good.replace("replicas:", "replicaz:")
    assert typo != good
    created = kubectl("apply", "-f", "-", stdin=typo, check=False)
    assert 'strict decoding error: unknown field "spec.replicaz"' in created.stderr, created.stderr
    kubectl("apply", "-f", "-", stdin=good)
    updated = kubectl("apply", "-f", "-", stdin=typo, check=False)
    assert 'strict decoding error: unknown field "spec.replicaz"' in updated.stderr, updated.stderr
    # A user who types --validate=false opts out of the check (it is not a test wrapper): kubectl sends
    # the typo and the API prunes the unknown field, as a real cluster does.
    kubectl("apply", "--validate=false", "-f", "-", stdin=typo)
    stored = json.loads(kubectl("get", "mdep", "cpu-tiny", "-o", "json").stdout)
    assert "replicaz" not in stored["spec"], stored["spec"]


def test_kubectl_explain_documents_the_modeldeployment_spec_and_builtin_kinds(kubectl):
    kubectl("apply", "-f", str(ROOT / "manifests" / "00-crds.yaml"))
    spec = kubectl("explain", "modeldeployment.spec").stdout
    assert "KIND:       ModelDeployment" in spec and "models\t<[]Object> -required-" in spec, spec
    assert "KIND:       ModelDeployment" in kubectl("explain", "mdep.spec.models").stdout
    assert "FIELD: replicas <integer>" in kubectl("explain", "deployment.spec.replicas").stdout


def _get(url: str, accept: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Accept": accept})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_openapi_v2_is_json_and_refuses_protobuf_and_v3_lists_every_group_version(api):
    code, body = _get(f"{api.url}/openapi/v2", "application/json")
    v2 = json.loads(body)
    assert code == 200 and v2["swagger"] == "2.0" and "io.k8s.api.core.v1.Namespace" in v2["definitions"]
    code, _ = _get(f"{api.url}/openapi/v2", "application/com.github.proto-openapi.spec.v2@v1.0+protobuf")
    assert code == 406
    paths = json.loads(_get(f"{api.url}/openapi/v3", "application/json")[1])["paths"]
    for key in (
        "api/v1",
        "apis/apps/v1",
        "apis/rbac.authorization.k8s.io/v1",
        "apis/policy/v1",
        "apis/networking.k8s.io/v1",
        "apis/coordination.k8s.io/v1",
        "apis/apiextensions.k8s.io/v1",
    ):
        document = json.loads(_get(api.url + paths[key]["serverRelativeURL"], "application/json")[1])
        assert document["openapi"].startswith("3.") and document["paths"], key


def test_kubectl_get_events_pods_and_services_print_a_real_api_servers_columns(kubectl, core):
    core.create_namespaced_event(
        "default",
        {
            "metadata": {"name": "web-1.abc"},
            "involvedObject": {"kind": "Pod", "name": "web-1", "namespace": "default"},
            "reason": "FailedMount",
            "message": "volume models not found",
            "type": "Warning",
            "count": 3,
            "firstTimestamp": "2026-01-01T00:00:00Z",
            "lastTimestamp": "2026-01-01T00:00:00Z",
        },
    )
    core.create_namespaced_pod(
        "default", {"metadata": {"name": "web-1"}, "spec": {"containers": [{"name": "c", "image": "x"}]}}
    )
    core.create_namespaced_service(
        "default", {"metadata": {"name": "web"}, "spec": {"ports": [{"port": 7070}], "selector": {"app": "web"}}}
    )
    events = kubectl("get", "events").stdout.splitlines()
    assert events[0].split() == ["LAST", "SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"], events
    assert events[1].split()[1:] == ["Warning", "FailedMount", "pod/web-1", "volume", "models", "not", "found"]
    assert kubectl("get", "pods").stdout.split()[:5] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    services = kubectl("get", "services", "web").stdout.splitlines()
    assert services[0].split() == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert services[1].split()[1] == "ClusterIP" and services[1].split()[4] == "7070/TCP"
