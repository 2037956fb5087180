"""`modelfleet-local`'s script: the whole product on this machine, shown converging and answering.

Called by __main__.py. On top of run_fleet() (API, controllers, kubelet, service proxy) it creates what
the README's commands expect of a cluster: the operator's namespace `modelfleet-system`, the namespace
`ml-serving` with the model-store PersistentVolumeClaim `modelfleet-models`, into whose folder it
builds the demo models (`python -m modelfleet.server.demo`), and the CRD from its single source file.
It starts the operator as a child process (`python -m modelfleet.operator` with a kubeconfig for the
local API) and applies `examples/cpu.yaml` in `ml-serving` (unless told not to: then you apply it),
prints pods and per-model states as they converge, sends one TorchServe-protocol Predictions call
through the inference Service's local address with the token from the generated Secret, and prints
commands to try (hints.py). When it gives up it prints the failing pods' log tails. It stops every
process it started.
"""

from __future__ import annotations

import asyncio
import base64
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
from modelfleet.local.hints import try_lines
from modelfleet.local.localclient import LocalClient
from modelfleet.local.podreport import failing_pods
from modelfleet.local.processes import ChildProcess, run_to_end
from modelfleet.protos import inference_pb2, inference_pb2_grpc

CRD_FILE = "operator/crds/modeldeployments.modelfleet.io.yaml"
EXAMPLE_FILE = "examples/cpu.yaml"
OPERATOR_NAMESPACE = "modelfleet-system"
NAMESPACE = "ml-serving"
"""Where the README's commands put fleets: the local fleet creates it and applies the example there."""
MODEL_CLAIM = "modelfleet-models"
SAMPLE = [float(i) / 16 for i in range(16)]  # one input for the demo model "tiny" (Linear 16->4)


@dataclass(frozen=True)
class DemoSettings:
    state_dir: Path
    """Pod folders, logs, the model store claim and the kubeconfig go here."""
    api_port: int = 0
    """Port of the local API on 127.0.0.1 (0: a free one)."""
    replicas: int | None = None
    """Server pods of the example ModelDeployment (None: the example's own, 2 in examples/cpu.yaml)."""
    example: Path | None = None
    """The ModelDeployment YAML to apply; default: examples/cpu.yaml of this checkout."""
    demo: bool = True
    """Apply the example (False: start the fleet empty, for your own `kubectl apply`)."""
    crd: Path | None = None
    """The CRD file; default: operator/crds/... found next to this checkout or in the working folder."""
    probe_period_scale: float = 1.0
    """Multiplies probe periods and restart back-off (1.0 = as written in the pod templates)."""
    timeout_s: float = 600.0
    """How long to wait for the fleet to become Ready before giving up on the prediction."""
    exit_after_demo: bool = False
    """Stop everything after the prediction (with demo=False: once the fleet is up) instead of serving
    until Ctrl-C; for tests and CI."""
    operator_command: tuple[str, ...] = field(default_factory=lambda: (sys.executable, "-m", "modelfleet.operator"))
    """The operator's command line; the kubeconfig comes through KUBECONFIG and
    MODELFLEET_OPERATOR_KUBECONFIG."""


def find_checkout() -> Path | None:
    """The source checkout this runs from (it holds the CRD, the examples and setup's .tools)."""
    for candidate in (Path.cwd(), Path(__file__).resolve().parents[3]):
        if (candidate / CRD_FILE).is_file():
            return candidate.absolute()
    return None


def find_file(explicit: Path | None, relative: str, *, flag: str) -> Path:
    checkout = find_checkout()
    candidate = explicit or (checkout / relative if checkout else None)
    if candidate is not None and candidate.is_file():
        return candidate.absolute()
    raise SystemExit(f"cannot find {explicit or relative}; pass {flag} FILE")


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

    def show(self, fleet: Fleet, md: JSON | None, namespace: str, name: str) -> None:
        pods = [
            p
            for p in fleet.client.list(fleet.client.type("", "pods"), namespace)
            if (p["metadata"].get("labels") or {}).get("modelfleet.io/deployment") == name
        ]
        ready = sum(1 for p in pods if podstatus.is_ready(p) and not podstatus.is_terminating(p))
        status = (md or {}).get("status") or {}
        conditions = " ".join(
            f"{c.get('type')}={c.get('status')}" + (f"({c['reason']})" if c.get("reason") else "")
            for c in status.get("conditions") or []
        )
        models = " ".join(
            f"{m.get('name')}:{m.get('defaultVersion') or '-'}[{m.get('state', '?')} "
            f"{m.get('podsServing', 0)}/{m.get('pods', 0)}]"
            for m in status.get("models") or []
        )
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
            metadata=[("authorization", f"Bearer {token}")],
            timeout=30,
        )
    return address, reply.prediction.decode(errors="replace")


def _example(path: Path, settings: DemoSettings) -> JSON:
    body = yaml.safe_load(path.read_text())
    body.setdefault("metadata", {}).setdefault("namespace", NAMESPACE)
    if settings.replicas is not None:
        body["spec"]["replicas"] = settings.replicas
    return dict(body)


async def run_demo(settings: DemoSettings, *, stop: asyncio.Event, out: Callable[[str], None]) -> int:
    """The whole demo (see the module docstring); the process exit code."""
    crd = yaml.safe_load(find_file(settings.crd, CRD_FILE, flag="--crd").read_text())
    example = find_file(settings.example, EXAMPLE_FILE, flag="--example")
    state = settings.state_dir
    async with run_fleet(state, port=settings.api_port, probe_period_scale=settings.probe_period_scale) as fleet:
        client = LocalClient(fleet.api.store, fleet.api.emulator.audit, user_agent="modelfleet-local")
        kubeconfig = state / "kubeconfig"
        kubeconfig.write_text(fleet.api.kubeconfig())
        out(f"Kubernetes API (in memory) at {fleet.api.url}   kubeconfig: {kubeconfig}")
        for namespace in (OPERATOR_NAMESPACE, NAMESPACE):
            _ensure(client, "", "namespaces", None, {"metadata": {"name": namespace}})
        _ensure(client, "apiextensions.k8s.io", "customresourcedefinitions", None, crd)
        claim = _ensure(
            client,
            "",
            "persistentvolumeclaims",
            NAMESPACE,
            {
                "metadata": {"name": MODEL_CLAIM},
                "spec": {"accessModes": ["ReadOnlyMany"], "resources": {"requests": {"storage": "1Gi"}}},
            },
        )
        client.patch(
            client.type("", "persistentvolumeclaims"),
            NAMESPACE,
            claim["metadata"]["name"],
            {"status": {"phase": "Bound"}},
            subresource="status",
        )
        store = state / "persistentvolumes" / NAMESPACE / MODEL_CLAIM
        out(
            f"namespaces {OPERATOR_NAMESPACE} (the operator's) and {NAMESPACE}; building the demo models "
            f"into the claim {NAMESPACE}/{MODEL_CLAIM} ({store})"
        )
        code = await run_to_end(
            [sys.executable, "-m", "modelfleet.server.demo", str(store)],
            log_path=state / "demo-models.log",
            timeout_s=600,
        )
        if code != 0:
            out(f"building the demo models failed (exit {code}); see {state / 'demo-models.log'}")
            return 1
        operator = ChildProcess(
            settings.operator_command,
            log_path=state / "operator.log",
            env=dict(os.environ, KUBECONFIG=str(kubeconfig), MODELFLEET_OPERATOR_KUBECONFIG=str(kubeconfig)),
        )
        await operator.start()
        out(f"operator started (pid {operator.process.pid if operator.process else '?'}); log: {operator.log_path}")
        try:
            if not settings.demo:
                return await _serve_empty(
                    settings, operator, stop=stop, out=out, kubeconfig=kubeconfig, example=example
                )
            return await _converge_and_serve(
                settings, fleet, client, operator, stop=stop, out=out, kubeconfig=kubeconfig, example=example
            )
        finally:
            out("stopping the operator and every pod")
            await operator.stop(grace_s=10)


async def _serve_empty(
    settings: DemoSettings,
    operator: ChildProcess,
    *,
    stop: asyncio.Event,
    out: Callable[[str], None],
    kubeconfig: Path,
    example: Path,
) -> int:
    """--no-demo: the fleet is up with no ModelDeployment; the hints say how to apply one."""
    out(f"no ModelDeployment applied (--no-demo); the namespace {NAMESPACE} and the claim {MODEL_CLAIM} are ready")
    for line in try_lines(
        kubeconfig=kubeconfig, namespace=NAMESPACE, service=None, checkout=find_checkout(), example=example
    ):
        out(line)
    if settings.exit_after_demo:
        return 0 if operator.running else 1
    out("Serving until Ctrl-C.")
    await stop.wait()
    return 0


def _give_up(fleet: Fleet, client: LocalClient, namespace: str, out: Callable[[str], None]) -> None:
    """The failing pods' states and log tails: where the cause of a fleet that never gets Ready is."""
    report = failing_pods(client, fleet.kubelet, namespace)
    out(f"pods that are not Ready, with their log tails:\n{report}" if report else f"no pods in {namespace}")


async def _converge_and_serve(
    settings: DemoSettings,
    fleet: Fleet,
    client: LocalClient,
    operator: ChildProcess,
    *,
    stop: asyncio.Event,
    out: Callable[[str], None],
    kubeconfig: Path,
    example: Path,
) -> int:
    body = _example(example, settings)
    mds = client.type("modelfleet.io", "modeldeployments")
    name, namespace = body["metadata"]["name"], body["metadata"]["namespace"]
    _ensure(client, "", "namespaces", None, {"metadata": {"name": namespace}})  # --example may name another
    _ensure(client, "modelfleet.io", "modeldeployments", namespace, body)
    out(
        f"applied ModelDeployment {namespace}/{name} from {example} ({body['spec'].get('replicas', 1)} replicas); "
        "converging..."
    )
    progress = Progress(out)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.timeout_s
    md: JSON | None = None
    while not stop.is_set():
        md = client.get(mds, namespace, name)
        progress.show(fleet, md, namespace, name)
        if _is_ready(md):
            break
        if not operator.running:
            out(f"the operator exited ({operator.process.returncode if operator.process else '?'}):\n{operator.tail()}")
            _give_up(fleet, client, namespace, out)
            return 1
        if loop.time() > deadline:
            out(f"not Ready after {settings.timeout_s:g}s; operator log tail:\n{operator.tail()}")
            _give_up(fleet, client, namespace, out)
            return 1
        await asyncio.sleep(0.25)
    if stop.is_set() or md is None:
        return 0
    address = None
    try:
        address, answer = await predict(fleet, md)
    except (grpc.aio.AioRpcError, RuntimeError) as exc:
        out(f"prediction through the Service failed: {exc}")
        _give_up(fleet, client, namespace, out)
        if settings.exit_after_demo:
            return 1
    else:
        out(f"Predictions(tiny) through Service {namespace}/{name} at {address} -> {answer}")
    for line in try_lines(
        kubeconfig=kubeconfig, namespace=namespace, service=address, checkout=find_checkout(), example=None
    ):
        out(line)
    if settings.exit_after_demo:
        return 0
    out("Serving until Ctrl-C.")
    await stop.wait()
    return 0
