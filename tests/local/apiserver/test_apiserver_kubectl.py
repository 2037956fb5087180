"""Real kubectl, as users type it, works against the local API (apply, patch, scale, wait, watch)."""

from __future__ import annotations

import json
import threading

import yaml


def _apply(kubectl, obj: dict) -> None:
    kubectl("apply", "-f", "-", stdin=yaml.safe_dump(obj))


def test_kubectl_applies_gets_patches_and_deletes(kubectl, make_deployment):
    _apply(kubectl, make_deployment(replicas=1))
    got = json.loads(kubectl("get", "deployment", "web", "-o", "json").stdout)
    assert got["spec"]["replicas"] == 1
    assert "web" in kubectl("get", "deploy").stdout
    changed = make_deployment(replicas=2)
    _apply(kubectl, changed)  # a second apply is a client-side three-way merge patch
    kubectl(
        "patch",
        "deployment",
        "web",
        "--type",
        "json",
        "-p",
        '[{"op":"add","path":"/metadata/labels/team","value":"ml"}]',
    )
    kubectl("label", "deployment", "web", "tier=gpu")
    got = json.loads(kubectl("get", "deployment", "web", "-o", "json").stdout)
    assert got["spec"]["replicas"] == 2 and got["metadata"]["labels"] == {"team": "ml", "tier": "gpu"}
    assert [c["name"] for c in got["spec"]["template"]["spec"]["containers"]] == ["main", "sidecar"]
    assert kubectl("get", "deploy", "-l", "team=nope", "-o", "name").stdout.strip() == ""
    kubectl("delete", "deployment", "web", "--timeout=10s")
    assert kubectl("get", "deployment", "web", check=False).returncode != 0


def test_kubectl_scale_works_for_deployments_and_custom_resources(kubectl, make_deployment, widget_crd):
    _apply(kubectl, make_deployment(replicas=1))
    kubectl("scale", "deployment", "web", "--replicas=3")
    assert kubectl("get", "deploy", "web", "-o", "jsonpath={.spec.replicas}").stdout == "3"
    _apply(kubectl, widget_crd)
    _apply(
        kubectl, {"apiVersion": "example.io/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": "small"}}
    )
    kubectl("scale", "wdg", "w", "--replicas=5")
    assert kubectl("get", "widget", "w", "-o", "jsonpath={.spec.replicas}").stdout == "5"
    table = kubectl("get", "widgets").stdout
    assert "REPLICAS" in table and "5" in table


def test_kubectl_status_patch_and_wait(kubectl, widget_crd):
    _apply(kubectl, widget_crd)
    _apply(
        kubectl, {"apiVersion": "example.io/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": "small"}}
    )
    patch = ["patch", "widget", "w", "--subresource=status", "--type", "merge", "-p", '{"status":{"phase":"Ready"}}']
    timer = threading.Timer(1.0, kubectl, patch)
    timer.start()
    try:
        waited = kubectl("wait", "widget/w", "--for=jsonpath={.status.phase}=Ready", "--timeout=20s")
    finally:
        timer.join()
    assert "condition met" in waited.stdout
    assert kubectl("get", "widget", "w", "-o", "jsonpath={.status.phase}").stdout == "Ready"


def test_kubectl_server_side_apply_and_dry_run(kubectl, make_deployment):
    body = yaml.safe_dump(make_deployment(replicas=2))
    kubectl("apply", "--server-side", "-f", "-", stdin=body)
    assert kubectl("get", "deploy", "web", "-o", "jsonpath={.spec.replicas}").stdout == "2"
    kubectl("scale", "deployment", "web", "--replicas=4", "--dry-run=server")
    assert kubectl("get", "deploy", "web", "-o", "jsonpath={.spec.replicas}").stdout == "2"


def test_kubectl_get_watch_sees_an_update(kubectl, make_deployment):
    _apply(kubectl, make_deployment(replicas=1))
    scale = threading.Timer(1.0, kubectl, ("scale", "deployment", "web", "--replicas=2"))
    scale.start()
    try:
        watched = kubectl(
            "get",
            "deploy",
            "web",
            "-w",
            "--output-watch-events",
            "-o",
            'jsonpath={.type} {.object.spec.replicas}{"\\n"}',
            "--request-timeout=4s",
            check=False,
        )
    finally:
        scale.join()
    assert watched.stdout.split("\n")[:2] == ["ADDED 1", "MODIFIED 2"], watched.stderr
