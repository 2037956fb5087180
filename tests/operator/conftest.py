"""Fixtures for the operator tests: ModelDeployment bodies, the CRD, the in-memory API with the CRD
installed, and real `python -m modelfleet.server` processes on their own loopback addresses."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

import mf_polling as polling
from mf_net import free_port

ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = ROOT / "operator" / "crds" / "modeldeployments.modelfleet.io.yaml"
OLDEST, NEWEST = "1.31.0", "1.37.0"
"""Kubernetes versions every child must validate against (DRA's pod fields took their shape in 1.31)."""

MANAGEMENT_TOKEN = "test-management-token"
INFERENCE_TOKEN = "test-inference-token"


def crd() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(CRD_PATH.read_text())
    return doc


def md_body(name: str = "demo", *, namespace: str = "default", **spec: Any) -> dict[str, Any]:
    """A ModelDeployment object; `spec` keys override the small default spec."""
    base: dict[str, Any] = {
        "replicas": 1,
        "image": "ghcr.io/modelfleet/server:0.1.0",
        "models": [{"name": "tiny", "versions": [{"version": "1.0", "url": "tiny.pt#version=1.0"}]}],
    }
    base.update(copy.deepcopy(spec))
    return {
        "apiVersion": "modelfleet.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{name}", "generation": 1},
        "spec": base,
    }


@pytest.fixture
def make_md() -> Callable[..., dict[str, Any]]:
    """md_body(name, namespace=..., **spec) → a ModelDeployment object."""
    return md_body


@pytest.fixture
def crd_doc() -> dict[str, Any]:
    """The CRD, read from its single source file."""
    return crd()


@pytest.fixture
def k8s_versions() -> tuple[str, str]:
    """(oldest, newest) supported Kubernetes versions for kubernetes_validate."""
    return (OLDEST, NEWEST)


def _without_rules(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_rules(v) for k, v in node.items() if k != "x-kubernetes-validations"}
    if isinstance(node, list):
        return [_without_rules(v) for v in node]
    return node


@pytest.fixture
def outdated_crd() -> Callable[[Any], Any]:
    """async outdated_crd(kube): replace the installed CRD's schema by one without CEL rules, as an
    older CRD (or an API server without admission) would let specs through that the parser refuses."""

    async def apply(kube: Any) -> None:
        versions = _without_rules(crd()["spec"]["versions"])
        await kube.request(
            "PATCH",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/modeldeployments.modelfleet.io",
            body={"spec": {"versions": versions}},
            content_type="application/merge-patch+json",
        )

    return apply


@pytest.fixture
def poll() -> Callable[..., Any]:
    """eventually(predicate, timeout=...): poll a sync or async predicate until truthy."""
    return eventually


@dataclass
class Api:
    """The in-memory API server (modelfleet.local) with the ModelDeployment CRD installed."""

    url: str
    running: Any

    @property
    def audit(self) -> Any:
        return self.running.emulator.audit


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    from modelfleet.local.apiserver import run_apiserver
    from modelfleet.operator.kube import Kube
    from modelfleet.operator.settings import KubeSettings

    async with run_apiserver() as running:
        kube = Kube.from_settings(KubeSettings(server=running.url))
        await kube.request(
            "POST",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            body=crd(),
            content_type="application/json",
        )
        kube.close()
        yield Api(url=running.url, running=running)


@pytest.fixture
async def kube(api: Api) -> AsyncIterator[Any]:
    from modelfleet.operator.kube import Kube
    from modelfleet.operator.settings import KubeSettings

    client = Kube.from_settings(KubeSettings(server=api.url))
    yield client
    client.close()


async def eventually(
    predicate: Callable[[], Any],
    *,
    timeout: float = 10.0,
    interval: float = 0.05,
    diagnose: Callable[[], Any] | None = None,
) -> Any:
    """Poll `predicate` (sync or async) until it returns something truthy; fail after `timeout`
    with what `diagnose()` (sync or async) says about the state."""
    return await polling.eventually(predicate, timeout=timeout, interval=interval, diagnose=diagnose)


# Real server processes -------------------------------------------------------------------------


async def wait_serving(address: str, *, service: str = "", timeout: float = 60.0) -> None:
    """Poll grpc.health.v1 Check(service) on `address` until SERVING."""
    from grpc import aio
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    async with aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)

        async def serving() -> bool:
            try:
                answer = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=1)
            except aio.AioRpcError:
                return False
            return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)

        await eventually(serving, timeout=timeout, interval=0.1)


@dataclass
class ServerProcess:
    host: str
    management: str
    inference: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)


@pytest.fixture(scope="session")
def server_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model store with tiny.pt and mlp.pt (seeded TorchScript), built once per session."""
    from modelfleet.server.demo import write_torchscript

    store = tmp_path_factory.mktemp("store")
    write_torchscript("tiny", store / "tiny.pt")
    write_torchscript("tiny", store / "tiny2.pt", seed=1)
    write_torchscript("mlp", store / "mlp.pt")
    return store


@pytest.fixture
def start_server(tmp_path: Path, server_store: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start `python -m modelfleet.server` on 127.0.0.N with token files; killed at teardown."""
    started: list[ServerProcess] = []

    def start(host: str, *, desired_state: str | None = None, extra: tuple[str, ...] = ()) -> ServerProcess:
        folder = tmp_path / host
        folder.mkdir(exist_ok=True)
        (folder / "management").write_text(MANAGEMENT_TOKEN + "\n")
        (folder / "inference").write_text(INFERENCE_TOKEN + "\n")
        management = f"{host}:{free_port(host)}"
        inference = f"{host}:{free_port(host)}"
        args = [
            sys.executable,
            "-m",
            "modelfleet.server",
            "--inference-address",
            inference,
            "--management-address",
            management,
            "--model-store",
            str(server_store),
            "--enable-model-api",
            "--management-token-file",
            str(folder / "management"),
            "--inference-token-file",
            str(folder / "inference"),
            "--default-workers",
            "1",
            *extra,
        ]
        if desired_state is not None:
            (folder / "models.json").write_text(desired_state)
            args += ["--desired-state", str(folder / "models.json")]
        log = folder / "server.log"
        with log.open("wb") as out:
            process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, cwd=folder, env={**os.environ})
        server = ServerProcess(host=host, management=management, inference=inference, process=process, log=log)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
