"""The README's first-ModelDeployment and client commands (blocks tagged `fleet`) work on a real fleet.

A real local fleet (in-memory API over HTTP, kubelet running pods as processes, the local
kube-proxy) runs the operator from the committed manifests (as test_manifests_run_a_fleet_locally.py
does: only MODELFLEET_OPERATOR_SERVER is added, the local API has no in-cluster credentials), with the
namespace `ml-serving` and a `modelfleet-models` claim holding the demo model. Then every `fleet`
block runs verbatim, in page order, through `bash -euo pipefail`: kubectl apply/get/wait/describe,
the token from the fleet's Secret, grpcurl (reflection, health, a prediction) and the TorchServe
client, its stubs generated from TorchServe's own inference.proto (the copy in
tests/server/api/torchserve_protos/ stands in for the user's download).

`kubectl` is a wrapper that adds --validate=false to apply (the local API serves no OpenAPI) and
turns `kubectl port-forward ... service/<name> LOCAL:REMOTE` into a forwarder from LOCAL on the
loopback to the Service's cluster IP (the local fleet gives every Service a loopback cluster IP),
printing kubectl's own "Forwarding from" lines, so grpcurl and the client reach `localhost:7070`
exactly as on a real cluster. Three pods: the operator and two servers.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
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

PORT_FORWARD = r'''#!{python}
"""kubectl port-forward [-n NS] service/NAME LOCAL:REMOTE... on the local fleet: LOCAL -> clusterIP:REMOTE."""
import asyncio, json, os, signal, subprocess, sys

args, namespace, target, pairs = sys.argv[1:], "default", None, []
while args:
    a = args.pop(0)
    if a in ("-n", "--namespace"):
        namespace = args.pop(0)
    elif a.startswith("--namespace="):
        namespace = a.split("=", 1)[1]
    elif a.startswith("service/") or a.startswith("svc/"):
        target = a.split("/", 1)[1]
    elif ":" in a:
        pairs.append(tuple(int(p) for p in a.split(":")))
    else:
        sys.exit(f"port-forward wrapper: unsupported argument {a!r}")
service = json.loads(subprocess.run([os.environ["REAL_KUBECTL"], "get", "service", target, "-n", namespace, "-o", "json"],
                                    check=True, capture_output=True, text=True).stdout)
cluster_ip = service["spec"]["clusterIP"]


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def main():
    servers = []
    for local, remote in pairs:
        async def handle(reader, writer, remote=remote):
            try:
                up_reader, up_writer = await asyncio.open_connection(cluster_ip, remote)
            except OSError:
                writer.close()
                return
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        for host, shown in (("127.0.0.1", "127.0.0.1"), ("::1", "[::1]")):
            try:
                servers.append(await asyncio.start_server(handle, host, local))
            except OSError as error:
                if host == "127.0.0.1":
                    sys.exit(f"unable to listen on port {local}: {error}")
                continue
            print(f"Forwarding from {shown}:{local} -> {remote}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await stop.wait()


asyncio.run(main())
'''


def _ready(md: dict[str, Any] | None) -> bool:
    conditions = ((md or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _first_command(body: str) -> str:
    return next(line for line in body.splitlines() if line.strip() and not line.startswith("#"))


@pytest.mark.timeout(600)
async def test_the_readme_fleet_commands_deploy_and_call_a_model(
    tmp_path: Path, kubectl_binary: str, doc_blocks: list[Any], doc_bin: Path, run_block: Callable[..., Any]
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
    (doc_bin / "port-forward").write_text(PORT_FORWARD.replace("{python}", sys.executable))
    (doc_bin / "port-forward").chmod(0o700)

    state = tmp_path / "state"
    forwarder: subprocess.Popen[str] | None = None
    async with run_fleet(state, probe_period_scale=0.25) as fleet:
        (tmp_path / "kubeconfig").write_text(fleet.api.kubeconfig())
        env = {
            **os.environ,
            "PATH": os.pathsep.join([str(doc_bin), str(Path(sys.executable).parent), os.environ["PATH"]]),
            "HOME": str(tmp_path),
            "KUBECONFIG": str(tmp_path / "kubeconfig"),
            "REAL_KUBECTL": kubectl_binary,
            "PORT_FORWARD": str(doc_bin / "port-forward"),
        }

        async def kubectl(*args: str, stdin: str | None = None) -> str:
            result = await asyncio.to_thread(
                subprocess.run, [kubectl_binary, *args], input=stdin, capture_output=True, text=True, env=env, timeout=60
            )
            assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
            return result.stdout

        # What the install part and the cluster's storage provide before the first ModelDeployment.
        await kubectl("apply", "--validate=false", "-f", str(ROOT / "manifests"))
        await kubectl(
            "patch", "deployment", "modelfleet-operator", "-n", "modelfleet-system", "--type", "json", "-p",
            json.dumps([{"op": "add", "path": "/spec/template/spec/containers/0/env/-",
                         "value": {"name": "MODELFLEET_OPERATOR_SERVER", "value": fleet.api.url}}]),
        )  # fmt: skip
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
        await kubectl("create", "--validate=false", "-f", "-", stdin=json.dumps(namespace))
        await kubectl("apply", "--validate=false", "-f", "-", stdin=yaml.safe_dump(MODEL_CLAIM))
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
                    assert line.startswith("Forwarding from 127.0.0.1:7070 -> 7070"), (
                        f"{line!r}\n{forwarder.stderr.read() if forwarder.poll() is not None and forwarder.stderr else ''}"
                    )
                    continue
                started = time.monotonic()
                result = await asyncio.to_thread(run_block, block, cwd=work, env=env, timeout=330)
                outputs[first.split()[1] if first.startswith("kubectl") else first.split()[0].split("=")[0]] = result.stdout
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
