"""The whole product on this machine for fleet tests: the local cluster (in-memory API, controllers,
kubelet running each pod as a real `modelfleet-server` process on 127.0.0.N, service proxy), the
CRD, and the real kopf operator in the test's loop (so a test can stop and restart it).

The operator gets its own API client (user agent `modelfleet-operator/0.1 e2e-operator`, kopf's
`kopf/<version>`), apart from the tests' own client, so the API's audit tells its requests from the
tests'. After each test the fleet's audit feeds the session's `operator_requests`, which
test_zz_rbac_matches_what_the_operator_sent.py compares with the chart's RBAC rules."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import random
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import kopf
import pytest
from grpc import aio

from modelfleet.operator.handlers import build_registry
from modelfleet.operator.kube import USER_AGENT, Kube
from modelfleet.operator.leader import LeaseElector
from modelfleet.operator.runtime import Runtime
from modelfleet.operator.settings import (
    KubeSettings,
    LeaderSettings,
    OperatorSettings,
    PodClientSettings,
    ReconcileSettings,
)
from modelfleet.protos import inference_pb2, inference_pb2_grpc, management_pb2, management_pb2_grpc

SAMPLE = json.dumps([i / 16 for i in range(16)]).encode()  # one input for "tiny" (Linear 16->4)
PROBE_SCALE = 0.1
"""Probe periods ×0.1: the template's 2 s readiness period is probed every 0.2 s here."""
IMAGE = "ghcr.io/modelfleet/modelfleet-server:0.1.0"
OPERATOR_IDENTITY = "e2e-operator"
"""The in-loop operator's identity: its Lease holder name and the tail of its client's user agent."""
LEASE = LeaderSettings(
    identity=OPERATOR_IDENTITY,
    lease_namespace="default",
    lease_duration_s=5.0,
    renew_interval_s=0.5,
    renew_deadline_s=4.0,
)


def sent_by_operator(record: Any) -> bool:
    """An audit record of a request the operator sent: its reconciler's client or kopf's."""
    return bool(record.user_agent == f"{USER_AGENT} {OPERATOR_IDENTITY}" or record.user_agent.startswith("kopf/"))


@dataclasses.dataclass
class OperatorRequests:
    """What the operator sent during this session's fleet tests: (verb, group, resource[/subresource],
    cluster-wide) → the first test that sent it."""

    sent: dict[tuple[str, str, str, bool], str] = dataclasses.field(default_factory=dict)
    tests: list[str] = dataclasses.field(default_factory=list)
    truncated: list[str] = dataclasses.field(default_factory=list)
    """Tests whose audit log overflowed (its oldest records, and what they showed, are lost)."""

    def add(self, test: str, audit: Any) -> None:
        self.tests.append(test)
        if audit.total > len(audit):
            self.truncated.append(test)
        for r in audit:
            if sent_by_operator(r):
                resource = r.resource + (f"/{r.subresource}" if r.subresource else "")
                self.sent.setdefault((r.verb, r.group, resource, r.namespace is None), test)


def version(v: str, file: str) -> dict[str, str]:
    return {"version": v, "url": f"{file}#version={v}"}


@dataclasses.dataclass
class Product:
    fleet: Any
    kube: Kube
    store: Path
    runtime: Runtime | None = None
    _stop: asyncio.Event | None = None
    _tasks: Any = None
    _operator_kube: Kube | None = None
    _elector: LeaseElector | None = None
    _holding: asyncio.Task[None] | None = None

    # Operator ------------------------------------------------------------------------------

    async def start_operator(self, *, resync_s: float = 1.0, leader: bool = False) -> Runtime:
        """The operator in this loop, with a client of its own; `leader`: first take and then keep
        renewing the Lease default/modelfleet-operator, as `python -m modelfleet.operator` does."""
        kube = self._operator_kube = Kube.from_settings(
            KubeSettings(server=self.fleet.api.url), identity=OPERATOR_IDENTITY
        )
        if leader:
            self._elector = LeaseElector(kube, LEASE)
            async with asyncio.timeout(15):
                assert await self._elector.acquire(asyncio.Event())
            self._holding = asyncio.create_task(self._elector.hold(), name="e2e-lease")
        settings = dataclasses.replace(
            OperatorSettings(),
            reconcile=ReconcileSettings(
                resync_interval_s=resync_s, requeue_waiting_s=0.2, failure_backoff_initial_s=1.0
            ),
            pods=PodClientSettings(call_timeout_s=10.0),
        )
        runtime = Runtime(kube, settings)
        stop, ready = asyncio.Event(), asyncio.Event()
        self._tasks = await kopf.spawn_tasks(
            registry=build_registry(runtime, kube.connection),
            settings=kopf.OperatorSettings(),
            clusterwide=True,
            standalone=True,
            stop_flag=stop,
            ready_flag=ready,
        )
        async with asyncio.timeout(15):
            await ready.wait()
        self.runtime, self._stop = runtime, stop
        return runtime

    async def stop_operator(self) -> None:
        if self._stop is None or self.runtime is None:
            return
        self._stop.set()
        async with asyncio.timeout(15):
            _, pending = await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.runtime.stop()
        self.runtime, self._stop = None, None
        if self._holding is not None:
            self._holding.cancel()
            await asyncio.gather(self._holding, return_exceptions=True)
            self._holding = None
        if self._elector is not None:
            await self._elector.release()
            self._elector = None
        if self._operator_kube is not None:
            self._operator_kube.close()
            self._operator_kube = None

    # Objects -------------------------------------------------------------------------------

    async def create(self, name: str = "demo", **spec: Any) -> dict[str, Any]:
        body = {
            "apiVersion": "modelfleet.io/v1alpha1",
            "kind": "ModelDeployment",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {
                "image": IMAGE,
                "modelStore": {"readOnly": True, "volume": {"hostPath": {"path": str(self.store)}}},
                **spec,
            },
        }
        return await self.kube.create(body)

    async def md(self, name: str = "demo") -> dict[str, Any]:
        body = await self.kube.get("ModelDeployment", "default", name)
        assert body is not None
        return body

    async def patch_spec(self, spec: dict[str, Any], name: str = "demo") -> None:
        await self.kube.patch_merge("ModelDeployment", "default", name, {"spec": spec})

    async def condition(self, kind: str, name: str = "demo") -> dict[str, Any]:
        for c in ((await self.md(name)).get("status") or {}).get("conditions") or []:
            if c["type"] == kind:
                return dict(c)
        return {}

    async def ready(self, name: str = "demo", *, replicas: int | None = None, summary: str | None = None) -> bool:
        body = await self.md(name)
        st = body.get("status") or {}
        if st.get("observedGeneration") != body["metadata"]["generation"]:
            return False
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in st.get("conditions") or [])
        if not (
            ready
            and (replicas is None or st.get("readyReplicas") == replicas)
            and (summary is None or st.get("modelsSummary") == summary)
        ):
            return False
        # The status must describe the pods as they are now (not a picture from before a change).
        pods = await self.pods(name)
        kubelet_ready = all(
            any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions") or [])
            for p in pods
        )
        described = {p["name"] for p in st.get("pods") or [] if p.get("ready")}
        return kubelet_ready and described == {p["metadata"]["name"] for p in pods}

    async def pods(self, name: str = "demo") -> list[dict[str, Any]]:
        pods = await self.kube.list_objects("Pod", "default", label_selector=f"modelfleet.io/deployment={name}")
        return [p for p in pods if not p["metadata"].get("deletionTimestamp")]

    async def configmap_document(self, name: str = "demo") -> dict[str, Any]:
        cm = await self.kube.get("ConfigMap", "default", f"{name}-models")
        assert cm is not None
        return dict(json.loads(cm["data"]["models.json"]))

    async def token(self, key: str, name: str = "demo") -> str:
        secret = await self.kube.get("Secret", "default", f"{name}-tokens")
        assert secret is not None
        return base64.b64decode(secret["data"][key]).decode().strip()

    # gRPC ----------------------------------------------------------------------------------

    async def service_address(self, name: str = "demo") -> str:
        service = await self.kube.get("Service", "default", name)
        assert service is not None
        return f"{service['spec']['clusterIP']}:{service['spec']['ports'][0]['port']}"

    async def predict(self, address: str, model: str = "tiny", *, token: str) -> str:
        async with aio.insecure_channel(address) as channel:
            reply = await inference_pb2_grpc.InferenceAPIsServiceStub(channel).Predictions(
                inference_pb2.PredictionsRequest(model_name=model, input={"data": SAMPLE}),
                metadata=[("authorization", f"Bearer {token}")],
                timeout=10,
            )
        return bytes(reply.prediction).decode()

    async def pod_models(self, pod: dict[str, Any]) -> dict[str, Any]:
        """ListModels + DescribeModel on one pod's management port: {model: (default, sorted versions)}."""
        token = await self.token("management")
        metadata = [("authorization", f"Bearer {token}")]
        async with aio.insecure_channel(f"{pod['status']['podIP']}:7071") as channel:
            stub = management_pb2_grpc.ManagementAPIsServiceStub(channel)
            listed = json.loads(
                (await stub.ListModels(management_pb2.ListModelsRequest(limit=100), metadata=metadata, timeout=5)).msg
            )
            result = {}
            for entry in listed.get("models", []):
                name = entry["modelName"]
                every = json.loads(
                    (
                        await stub.DescribeModel(
                            management_pb2.DescribeModelRequest(model_name=name, model_version="all"),
                            metadata=metadata,
                            timeout=5,
                        )
                    ).msg
                )
                default = json.loads(
                    (
                        await stub.DescribeModel(
                            management_pb2.DescribeModelRequest(model_name=name), metadata=metadata, timeout=5
                        )
                    ).msg
                )
                result[name] = (default[0]["modelVersion"], sorted(v["modelVersion"] for v in every))
        return result

    async def management(self, pod: dict[str, Any]) -> tuple[aio.Channel, Any, list[tuple[str, str]]]:
        token = await self.token("management")
        channel = aio.insecure_channel(f"{pod['status']['podIP']}:7071")
        return channel, management_pb2_grpc.ManagementAPIsServiceStub(channel), [("authorization", f"Bearer {token}")]

    async def diagnose(self) -> str:
        """What a human would look at when a wait times out: status, pods, the operator's last pass."""
        lines = []
        for body in await self.kube.list_objects("ModelDeployment", "default"):
            st = body.get("status") or {}
            lines.append(
                f"{body['metadata']['name']} gen {body['metadata'].get('generation')} "
                f"observed {st.get('observedGeneration')} summary {st.get('modelsSummary')!r}"
            )
            lines += [
                f"  {c['type']}={c['status']} {c['reason']}: {c.get('message', '')}" for c in st.get("conditions") or []
            ]
            lines += [f"  pod {p}" for p in st.get("pods") or []]
        for pod in await self.kube.list_objects("Pod", "default"):
            ready = [c["status"] for c in pod["status"].get("conditions") or [] if c["type"] == "Ready"]
            lines.append(
                f"pod {pod['metadata']['name']} {pod['status'].get('phase')} ip {pod['status'].get('podIP')} "
                f"ready {ready} deleting {bool(pod['metadata'].get('deletionTimestamp'))}"
            )
        if self.runtime is not None:
            lines.append(f"last passes: {self.runtime.reconciler.last} resyncs {self.runtime.resyncs}")
        from modelfleet.local.podreport import failing_pods  # the cause of a pod that never serves is in its log

        lines.append(failing_pods(self.fleet.client, self.fleet.kubelet, "default"))
        return "\n".join(lines)

    operator_identity = OPERATOR_IDENTITY
    sent_by_operator = staticmethod(sent_by_operator)

    def operator_writes(self) -> list[Any]:
        audit = self.fleet.api.emulator.audit
        return [r for r in audit.writes() if sent_by_operator(r)]


def server_pids(pod: dict[str, Any], state_dir: Path) -> list[int]:
    """PIDs of this pod's server process: its args carry paths under the pod's own state folder
    (unique to this test, unlike a 127.0.0.N address another test session may also use)."""
    folder = state_dir / "pods" / f"{pod['metadata']['namespace']}_{pod['metadata']['name']}"
    out = subprocess.run(["pgrep", "-f", f"{folder}/"], capture_output=True, text=True).stdout
    return [int(pid) for pid in out.split()]


@pytest.fixture(scope="session")
def e2e_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny.pt (v1), tiny2.pt (v2: other weights), mlp.pt, built once per session."""
    from modelfleet.server.demo import write_torchscript

    store = tmp_path_factory.mktemp("e2e-store")
    write_torchscript("tiny", store / "tiny.pt")
    write_torchscript("tiny", store / "tiny2.pt", seed=1)
    write_torchscript("mlp", store / "mlp.pt")
    return store


@pytest.fixture(scope="session")
def operator_requests() -> OperatorRequests:
    """Session-wide record of the operator's requests; every fleet test's teardown adds to it."""
    return OperatorRequests()


@pytest.fixture
async def product(
    tmp_path: Path,
    e2e_store: Path,
    crd_doc: dict[str, Any],
    operator_requests: OperatorRequests,
    request: pytest.FixtureRequest,
) -> AsyncIterator[Product]:
    from modelfleet.local.addresses import AddressPool
    from modelfleet.local.fleet import run_fleet

    # Addresses of our own: other test sessions on this machine run fleets on 127.0.0.N too.
    block = random.Random().randrange(20, 99)
    pods = AddressPool(f"127.{block}.0.0/16", first=f"127.{block}.0.2")
    services = AddressPool(f"127.{block + 100}.0.0/16", first=f"127.{block + 100}.0.1")
    async with run_fleet(
        tmp_path / "state", probe_period_scale=PROBE_SCALE, shutdown_grace_s=3, pods=pods, services=services
    ) as fleet:
        kube = Kube.from_settings(KubeSettings(server=fleet.api.url))
        await kube.request(
            "POST",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            body=crd_doc,
            content_type="application/json",
        )
        product = Product(fleet=fleet, kube=kube, store=e2e_store)
        try:
            yield product
        finally:
            await product.stop_operator()
            kube.close()
            # After the stop, so that what a stopping operator sends (the Lease release) counts too.
            operator_requests.add(request.node.nodeid, fleet.api.emulator.audit)


@pytest.fixture
def poll(poll: Callable[..., Any], product: Product) -> Callable[..., Any]:
    """The parent's poll, explaining the fleet's state when it times out."""
    eventually = poll

    async def run(predicate: Callable[[], Any], **options: Any) -> Any:
        options.setdefault("diagnose", product.diagnose)
        return await eventually(predicate, **options)

    return run


@pytest.fixture
def pids_of(product: Product) -> Callable[[dict[str, Any]], list[int]]:
    """pids_of(pod): PIDs of that pod's server process."""
    return lambda pod: server_pids(pod, product.fleet.state_dir)


@pytest.fixture
def e2e_version() -> Callable[[str, str], dict[str, str]]:
    return version
