"""End to end on the local fleet: `kubectl apply -f manifests/` starts the operator FROM THE MANIFESTS'
Deployment (the local kubelet runs the operator image's entrypoint as a process, with the pod's args
and env), then `kubectl apply -f examples/cpu.yaml` and that operator converges the example: two
server pods serve "tiny" and answer a prediction through the inference Service.

The one adjustment: the local API has no in-cluster credentials (no TLS, no service-account
token), so the operator Deployment gets MODELFLEET_OPERATOR_SERVER (its --server flag) by a JSON
patch, as a platform team would add an env var. Everything else is the committed manifests.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from mf_polling import eventually

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
MODEL_CLAIM = {
    "apiVersion": "v1",
    "kind": "PersistentVolumeClaim",
    "metadata": {"name": "modelfleet-models", "namespace": "default"},
    "spec": {"accessModes": ["ReadOnlyMany"], "resources": {"requests": {"storage": "1Gi"}}},
}


def _ready(md: dict[str, Any] | None) -> bool:
    conditions = ((md or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


@pytest.mark.timeout(400)
async def test_manifests_operator_converges_the_cpu_example(tmp_path: Path, kubectl_binary: str) -> None:
    from modelfleet.local.demo import predict
    from modelfleet.local.fleet import run_fleet
    from modelfleet.server.demo import write_torchscript

    state = tmp_path / "state"
    async with run_fleet(state, probe_period_scale=0.25) as fleet:
        (tmp_path / "kubeconfig").write_text(fleet.api.kubeconfig())
        env = {**os.environ, "KUBECONFIG": str(tmp_path / "kubeconfig"), "HOME": str(tmp_path)}

        async def kubectl(*args: str, stdin: str | None = None) -> str:
            result = await asyncio.to_thread(
                subprocess.run,
                [kubectl_binary, *args],
                input=stdin,
                capture_output=True,
                text=True,
                env=env,
                timeout=60,
            )
            assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
            return result.stdout

        await kubectl("apply", "-f", str(ROOT / "manifests"))
        await kubectl(
            "patch", "deployment", "modelfleet-operator", "-n", "modelfleet-system", "--type", "json", "-p",
            json.dumps([{"op": "add", "path": "/spec/template/spec/containers/0/env/-",
                         "value": {"name": "MODELFLEET_OPERATOR_SERVER", "value": fleet.api.url}}]),
        )  # fmt: skip

        # The model store the example mounts: a claim whose folder holds the demo model.
        await kubectl("apply", "-f", "-", stdin=yaml.safe_dump(MODEL_CLAIM))
        store = state / "persistentvolumes" / "default" / "modelfleet-models"
        store.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(write_torchscript, "tiny", store / "tiny.pt")

        await kubectl("apply", "-n", "default", "-f", str(ROOT / "examples" / "cpu.yaml"))

        mds = fleet.client.type("modelfleet.io", "modeldeployments")

        def status_and_operator_log() -> str:
            md = fleet.client.get(mds, "default", "cpu-tiny")
            operator_log = (
                "\n".join(
                    p.read_text(errors="replace")[-3000:]
                    for p in (state / "pods").rglob("*.log")
                    if "operator" in str(p)
                )
                if (state / "pods").is_dir()
                else ""
            )
            return f"status: {json.dumps((md or {}).get('status'), indent=1)}\n{operator_log}"

        md = await eventually(
            lambda: (found := fleet.client.get(mds, "default", "cpu-tiny")) and _ready(found) and found,
            timeout=300,
            interval=0.5,
            what="ModelDeployment cpu-tiny Ready",
            diagnose=status_and_operator_log,
        )

        pods = fleet.client.list(fleet.client.type("", "pods"), "modelfleet-system")
        operators = [p for p in pods if p["metadata"]["labels"].get("app.kubernetes.io/name") == "modelfleet-operator"]
        assert len(operators) == 1, "the operator that converged the fleet is the manifests' Deployment's pod"
        assert md is not None and md["status"]["readyReplicas"] == 2
        _, answer = await predict(fleet, md)
        assert len(json.loads(answer)) == 4

        # Every request the operator sent is allowed by the RBAC the manifests grant it (the other
        # direction, no unused rule, needs every operator path: the end-to-end suite checks it).
        sent = {
            (r.verb, r.group, r.resource + (f"/{r.subresource}" if r.subresource else ""), r.namespace)
            for r in fleet.api.emulator.audit
            if "modelfleet-operator" in r.user_agent or "kopf" in r.user_agent
        }
        assert ("patch", "modelfleet.io", "modeldeployments/status", "default") in sent
        denied = sorted(str(request) for request in sent if not _allowed(request))
        assert denied == [], "requests the manifests' RBAC would forbid"


def _granted() -> list[tuple[dict[str, Any], str | None]]:
    """(rule, namespace or None for cluster-wide) for every role bound to the operator's ServiceAccount."""
    objects = [d for p in sorted((ROOT / "manifests").glob("*.yaml")) for d in yaml.safe_load_all(p.read_text()) if d]
    roles = {
        (o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o
        for o in objects
        if o["kind"] in ("Role", "ClusterRole")
    }
    granted = []
    for binding in (o for o in objects if o["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        if {"kind": "ServiceAccount", "name": "modelfleet-operator", "namespace": "modelfleet-system"} not in binding[
            "subjects"
        ]:
            continue
        namespace = binding["metadata"].get("namespace")
        ref = binding["roleRef"]
        role = roles[(ref["kind"], namespace if ref["kind"] == "Role" else None, ref["name"])]
        granted += [(rule, namespace) for rule in role["rules"]]
    return granted


def _allowed(request: tuple[str, str, str, str | None]) -> bool:
    verb, group, resource, namespace = request
    return any(
        verb in rule["verbs"]
        and group in rule["apiGroups"]
        and resource in rule["resources"]
        and (scope is None or scope == namespace)
        for rule, scope in _granted()
    )
