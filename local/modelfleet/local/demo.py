"""`modelfleet-local`'s script: the whole product on this machine, shown converging and answering.

Called by __main__.py. On top of run_fleet() (API, controllers, kubelet, service proxy) it creates the
operator's namespace and a model-store PersistentVolumeClaim, builds the demo models into that claim's
folder (`python -m modelfleet.server.demo`), applies the CRD from its single source file, starts the
operator as a child process (`python -m modelfleet.operator` with a kubeconfig for the local API),
applies an example ModelDeployment, prints pods and per-model states as they converge, sends one
TorchServe-protocol Predictions call through the inference Service's local address with the token
from the generated Secret, and prints how to use kubectl. It stops every process it started.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import yaml

from modelfleet.local import podstatus
from modelfleet.local.apitypes import JSON, ApiError
from modelfleet.local.fleet import Fleet, run_fleet
from modelfleet.local.localclient import LocalClient
from modelfleet.local.processes import ChildProcess, run_to_end
from modelfleet.protos import inference_pb2, inference_pb2_grpc

CRD_FILE = "operator/crds/modeldeployments.modelfleet.io.yaml"
OPERATOR_NAMESPACE = "modelfleet-system"
MODEL_CLAIM = "modelfleet-models"
SAMPLE = [float(i) / 16 for i in range(16)]  # one input for the demo model "tiny" (Linear 16->4)

EXAMPLE: JSON = {
    "apiVersion": "modelfleet.io/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"name": "demo", "namespace": "default"},
    "spec": {
        "image": "ghcr.io/modelfleet/modelfleet-server:0.1.0",
        "replicas": 2,
        "models": [{"name": "tiny", "versions": [{"version": "1.0", "url": "tiny.pt#version=1.0"}],
                    "minWorkers": 1, "batchSize": 8, "maxBatchDelayMs": 5}],
        "modelStore": {"mountPath": "/models", "readOnly": True,
                       "volume": {"persistentVolumeClaim": {"claimName": MODEL_CLAIM, "readOnly": True}}},
    },
}


@dataclass(frozen=True)
class DemoSettings:
    state_dir: Path
    """Pod folders, logs, the model store claim and the kubeconfig go here."""
    api_port: int = 0
    """Port of the local API on 127.0.0.1 (0: a free one)."""
    replicas: int | None = None
    """Server pods of the example ModelDeployment (None: the example's own, 2 for the built-in one)."""
    example: Path | None = None
    """A ModelDeployment YAML to apply instead of the built-in example."""
    crd: Path | None = None
    """The CRD file; default: operator/crds/... found next to this checkout or in the working folder."""
    probe_period_scale: float = 1.0
    """Multiplies probe periods and restart back-off (1.0 = as written in the pod templates)."""
    timeout_s: float = 600.0
    """How long to wait for the fleet to become Ready before giving up on the prediction."""
    exit_after_demo: bool = False
    """Stop everything after the prediction (tests, CI) instead of serving until Ctrl-C."""
    operator_command: tuple[str, ...] = field(default_factory=lambda: (sys.executable, "-m", "modelfleet.operator"))
    """The operator's command line; the kubeconfig comes through KUBECONFIG and
    MODELFLEET_OPERATOR_KUBECONFIG."""


def find_crd(explicit: Path | None) -> Path:
    candidates = [explicit] if explicit else [Path.cwd() / CRD_FILE, Path(__file__).resolve().parents[3] / CRD_FILE]
    for candidate in candidates:
        if candidate is not None and candidate.is_file():
            return candidate
    raise SystemExit(f"cannot find the ModelDeployment CRD ({CRD_FILE}); pass --crd FILE")


def _ensure(client: LocalClient, group: str, plural: str, namespace: str | None, body: JSON) -> JSON:
    rtype = client.type(group, plural)
    try:
        return client.create(rtype, namespace, body)
    except ApiError as exc:
        if exc.code != 409:
            raise
        found = client.get(rtype, namespace, body["metadata"]["name"])
        assert found is not None
        return found


class Progress:
    """Prints a line whenever the fleet's visible state changes."""

    def __init__(self, out: Callable[[str], None]) -> None:
        self.out = out
        self.last = ""
        self.started = time.monotonic()

    def show(self, fleet: Fleet, md: JSON | None, name: str) -> None:
        pods = [p for p in fleet.client.list(fleet.client.type("", "pods"), "default")
                if (p["metadata"].get("labels") or {}).get("modelfleet.io/deployment") == name]
        ready = sum(1 for p in pods if podstatus.is_ready(p) and not podstatus.is_terminating(p))
        status = (md or {}).get("status") or {}
        conditions = " ".join(f"{c.get('type')}={c.get('status')}" + (f"({c['reason']})" if c.get("reason") else "")
                              for c in status.get("conditions") or [])
        models = " ".join(f"{m.get('name')}:{m.get('defaultVersion') or '-'}[{m.get('state', '?')} "
                          f"{m.get('podsServing', 0)}/{m.get('pods', 0)}]" for m in status.get("models") or [])
        line = f"pods ready {ready}/{len(pods)}  {conditions or 'no status yet'}  {models}".rstrip()
        if line != self.last:
            self.last = line
            self.out(f"[{time.monotonic() - self.started:6.1f}s] {line}")


def _is_ready(md: JSON | None) -> bool:
    for condition in ((md or {}).get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return bool(condition.get("status") == "True")
    return False


async def predict(fleet: Fleet, md: JSON) -> tuple[str, str]:
    """One Predictions call through the inference Service's local address; (address, answer)."""
    name, namespace = md["metadata"]["name"], md["metadata"]["namespace"]
    service = fleet.client.get(fleet.client.type("", "services"), namespace, name)
    if service is None:
        raise RuntimeError(f'the operator made no Service "{name}"')
    address = f"{service['spec']['clusterIP']}:{service['spec']['ports'][0]['port']}"
    token_ref = md["spec"].get("tokenSecretRef") or {}
    secret = fleet.client.get(fleet.client.type("", "secrets"), namespace, token_ref.get("name", f"{name}-tokens"))
    key = token_ref.get("inferenceKey", "inference")
    token = base64.b64decode(((secret or {}).get("data") or {}).get(key, "")).decode().strip()
    model = md["spec"]["models"][0]["name"]
    async with grpc.aio.insecure_channel(address) as channel:
        stub = inference_pb2_grpc.InferenceAPIsServiceStub(channel)
        reply = await stub.Predictions(
            inference_pb2.PredictionsRequest(model_name=model, input={"data": json.dumps(SAMPLE).encode()}),
            metadata=[("authorization", f"Bearer {token}")], timeout=30)
    return address, reply.prediction.decode(errors="replace")


def _example(settings: DemoSettings) -> JSON:
    body = yaml.safe_load(settings.example.read_text()) if settings.example else copy.deepcopy(EXAMPLE)
    body.setdefault("metadata", {}).setdefault("namespace", "default")
    if settings.replicas is not None:
        body["spec"]["replicas"] = settings.replicas
    return dict(body)


async def run_demo(settings: DemoSettings, *, stop: asyncio.Event, out: Callable[[str], None]) -> int:
    """The whole demo (see the module docstring); the process exit code."""
    crd = yaml.safe_load(find_crd(settings.crd).read_text())
    state = settings.state_dir
    async with run_fleet(state, port=settings.api_port, probe_period_scale=settings.probe_period_scale) as fleet:
        client = LocalClient(fleet.api.store, fleet.api.emulator.audit, user_agent="modelfleet-local")
        kubeconfig = state / "kubeconfig"
        kubeconfig.write_text(fleet.api.kubeconfig())
        out(f"Kubernetes API (in memory) at {fleet.api.url}   kubeconfig: {kubeconfig}")
        _ensure(client, "", "namespaces", None, {"metadata": {"name": OPERATOR_NAMESPACE}})
        _ensure(client, "apiextensions.k8s.io", "customresourcedefinitions", None, crd)
        claim = _ensure(client, "", "persistentvolumeclaims", "default", {
            "metadata": {"name": MODEL_CLAIM},
            "spec": {"accessModes": ["ReadOnlyMany"], "resources": {"requests": {"storage": "1Gi"}}}})
        client.patch(client.type("", "persistentvolumeclaims"), "default", claim["metadata"]["name"],
                     {"status": {"phase": "Bound"}}, subresource="status")
        store = state / "persistentvolumes" / "default" / MODEL_CLAIM
        out(f"building the demo models into the claim {MODEL_CLAIM} ({store})")
        code = await run_to_end([sys.executable, "-m", "modelfleet.server.demo", str(store)],
                                log_path=state / "demo-models.log", timeout_s=600)
        if code != 0:
            out(f"building the demo models failed (exit {code}); see {state / 'demo-models.log'}")
            return 1
        operator = ChildProcess(settings.operator_command, log_path=state / "operator.log",
                                env=dict(os.environ, KUBECONFIG=str(kubeconfig),
                                         MODELFLEET_OPERATOR_KUBECONFIG=str(kubeconfig)))
        await operator.start()
        out(f"operator started (pid {operator.process.pid if operator.process else '?'}); log: {operator.log_path}")
        try:
            return await _converge_and_serve(settings, fleet, client, operator, stop=stop, out=out,
                                             kubeconfig=kubeconfig)
        finally:
            out("stopping the operator and every pod")
            await operator.stop(grace_s=10)


async def _converge_and_serve(settings: DemoSettings, fleet: Fleet, client: LocalClient, operator: ChildProcess,
                              *, stop: asyncio.Event, out: Callable[[str], None], kubeconfig: Path) -> int:
    body = _example(settings)
    mds = client.type("modelfleet.io", "modeldeployments")
    name, namespace = body["metadata"]["name"], body["metadata"]["namespace"]
    _ensure(client, "modelfleet.io", "modeldeployments", namespace, body)
    out(f"applied ModelDeployment {namespace}/{name} ({body['spec'].get('replicas', 1)} replicas); converging...")
    progress = Progress(out)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.timeout_s
    md: JSON | None = None
    while not stop.is_set():
        md = client.get(mds, namespace, name)
        progress.show(fleet, md, name)
        if _is_ready(md):
            break
        if not operator.running:
            out(f"the operator exited ({operator.process.returncode if operator.process else '?'}):\n{operator.tail()}")
            return 1
        if loop.time() > deadline:
            out(f"not Ready after {settings.timeout_s:g}s; operator log tail:\n{operator.tail()}")
            return 1
        await asyncio.sleep(0.25)
    if stop.is_set() or md is None:
        return 0
    try:
        address, answer = await predict(fleet, md)
    except (grpc.aio.AioRpcError, RuntimeError) as exc:
        out(f"prediction through the Service failed: {exc}")
        if settings.exit_after_demo:
            return 1
    else:
        out(f"Predictions(tiny) through Service {namespace}/{name} at {address} -> {answer}")
    out(f"Try: kubectl --kubeconfig {kubeconfig} get modeldeployments,pods,services")
    if settings.exit_after_demo:
        return 0
    out("Serving until Ctrl-C.")
    await stop.wait()
    return 0

