"""The README's first-ModelDeployment and client commands (blocks tagged `fleet`) work on a real fleet.

A real local fleet (in-memory API over HTTP, kubelet running pods as processes, the local
kube-proxy) runs the operator from the committed manifests (as test_manifests_run_a_fleet_locally.py
does: only MODELFLEET_OPERATOR_SERVER is added, the local API has no in-cluster credentials), with the
namespace `ml-serving` and a `modelfleet-models` claim holding the demo model. Then every `fleet`
block runs verbatim, in page order, through `bash -euo pipefail`: kubectl apply/get/wait/describe,
the token from the fleet's Secret, grpcurl (reflection, health, a prediction) and the TorchServe
client, its stubs generated from TorchServe's own inference.proto (the copy in
tests/server/api/torchserve_protos/ stands in for the user's download).

`kubectl` is the real binary (.tools/bin), unwrapped: `kubectl port-forward service/cpu-tiny
7070:7070` goes through the local API's pods/portforward (kubectl picks a pod behind the Service),
so grpcurl and the client reach `localhost:7070` exactly as on a real cluster. Three pods: the
operator and two servers.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
TORCHSERVE_PROTOS = ROOT / "tests" / "server" / "api" / "torchserve_protos"
NAMESPACE = "ml-serving"
MODEL_CLAIM = {
    "apiVersion": "v1",
    "kind": "PersistentVolumeClaim",
    "metadata": {"name": "modelfleet-models", "namespace": NAMESPACE},
    "spec": {"accessModes": ["ReadOnlyMany"], "resources": {"requests": {"storage": "1Gi"}}},
}


def _ready(md: dict[str, Any] | None) -> bool:
    conditions = ((md or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _first_command(body: str) -> str:
    return next(line for line in body.splitlines() if line.strip() and not line.startswith("#"))


@pytest.mark.timeout(600)
async def test_the_readme_fleet_commands_deploy_and_call_a_model(
    tmp_path: Path,
    kubectl_binary: str,
    doc_blocks: list[Any],
    doc_bin: Path,
    doc_path: str,
    run_block: Callable[..., Any],
) -> None:
    from modelfleet.local.fleet import run_fleet
    from modelfleet.server.demo import write_torchscript

    fleet_blocks = [b for b in doc_blocks if "fleet" in b.tags]
    assert [_first_command(b.body).split()[:2] for b in fleet_blocks] == [
        ["kubectl", "apply"], ["kubectl", "get"], ["kubectl", "port-forward"], ["TOKEN=$(kubectl", "get"],
        ["SITE=$(python", "-c"],
    ]  # fmt: skip
    work = tmp_path / "work"
    work.mkdir()
    (work / "examples").symlink_to(ROOT / "examples")
    for block in doc_blocks:
        if block.lang == "python" and block.file_name:
            (work / block.file_name).write_text(block.body)
    assert (work / "client.py").is_file(), "the README defines client.py"
    shutil.copy(TORCHSERVE_PROTOS / "inference.proto", work / "inference.proto")

    state = tmp_path / "state"
    forwarder: subprocess.Popen[str] | None = None
    async with run_fleet(state, probe_period_scale=0.25) as fleet:
        (tmp_path / "kubeconfig").write_text(fleet.api.kubeconfig())
        env = {
            **os.environ,
            "PATH": doc_path,
            "HOME": str(tmp_path),
            "KUBECONFIG": str(tmp_path / "kubeconfig"),
        }

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

        # What the install part and the cluster's storage provide before the first ModelDeployment.
        await kubectl("apply", "-f", str(ROOT / "manifests"))
        await kubectl(
            "patch", "deployment", "modelfleet-operator", "-n", "modelfleet-system", "--type", "json", "-p",
            json.dumps([{"op": "add", "path": "/spec/template/spec/containers/0/env/-",
                         "value": {"name": "MODELFLEET_OPERATOR_SERVER", "value": fleet.api.url}}]),
        )  # fmt: skip
        await kubectl("create", "namespace", NAMESPACE)
        await kubectl("apply", "-f", "-", stdin=yaml.safe_dump(MODEL_CLAIM))
        store = state / "persistentvolumes" / NAMESPACE / "modelfleet-models"
        store.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(write_torchscript, "tiny", store / "tiny.pt")

        outputs: dict[str, str] = {}
        try:
            for block in fleet_blocks:
                first = _first_command(block.body)
                if first.startswith("kubectl port-forward"):
                    # Runs until stopped, as in the user's second terminal: ready once it says so.
                    forwarder = subprocess.Popen(
                        ["bash", "-euo", "pipefail", "-c", block.body], cwd=work, env=env, text=True,
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                    )  # fmt: skip
                    assert forwarder.stdout is not None
                    line = await asyncio.wait_for(asyncio.to_thread(forwarder.stdout.readline), timeout=30)
                    exited = forwarder.poll() is not None and forwarder.stderr
                    assert line.startswith("Forwarding from 127.0.0.1:7070 -> 7070"), (
                        f"{line!r}\n{forwarder.stderr.read() if exited else ''}"
                    )
                    continue
                started = time.monotonic()
                result = await asyncio.to_thread(run_block, block, cwd=work, env=env, timeout=330)
                outputs[first.split()[1] if first.startswith("kubectl") else first.split()[0].split("=")[0]] = (
                    result.stdout
                )
                assert time.monotonic() - started < 330
            md = fleet.client.get(fleet.client.type("modelfleet.io", "modeldeployments"), NAMESPACE, "cpu-tiny")
            headless = fleet.client.get(fleet.client.type("", "services"), NAMESPACE, "cpu-tiny-headless")
        finally:
            if forwarder is not None:
                os.killpg(forwarder.pid, signal.SIGTERM)
                await asyncio.to_thread(forwarder.wait, 10)
                for stream in (forwarder.stdout, forwarder.stderr):
                    if stream is not None:
                        stream.close()

    # Write your first ModelDeployment: applied, listed, Ready, described.
    assert _ready(md), json.dumps((md or {}).get("status"), indent=1)
    assert "cpu-tiny" in outputs["get"] and "condition met" in outputs["get"]
    assert "Conditions:" in outputs["get"] and "Ready" in outputs["get"]

    # grpcurl: reflection lists the TorchServe and health services; "" and "tiny" SERVING; a prediction.
    grpcurl = outputs["TOKEN"]
    assert "org.pytorch.serve.grpc.inference.InferenceAPIsService" in grpcurl
    assert "grpc.health.v1.Health" in grpcurl
    assert grpcurl.count('"status": "SERVING"') == 2
    reply = json.loads(grpcurl[grpcurl.rindex("{\n") :])
    from_grpcurl = json.loads(base64.b64decode(reply["prediction"]))
    assert len(from_grpcurl) == 4 and all(isinstance(x, float) for x in from_grpcurl)

    # The round_robin tip names the headless Service the operator made.
    assert headless is not None and headless["spec"]["clusterIP"] == "None"

    # The TorchServe client, through the same Service, with the same input: the same answer.
    from_client = json.loads(outputs["SITE"].strip().splitlines()[-1])
    assert from_client == pytest.approx(from_grpcurl)
