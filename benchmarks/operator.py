"""The operator benchmark's one command: convergence time, operator CPU/RSS at scale, idle-resync writes.

    python benchmarks/operator.py                      # sizes 1,3,10 pods; 10,100,1000 resources
    python benchmarks/operator.py --quick              # smoke: 1 pod, 10 resources, short idle

Everything runs on the local fleet (modelfleet.local: in-memory API, controllers, kubelet running each
pod as a real server process on its own 127.x address) in this process's event loop; the operator is
the real `python -m modelfleet.operator` as a child process (own process group, stopped by its PID).
Prints three tables (issue 4's targets) with the machine's load next to every row. Loopback only, every
wait bounded, every process we start stopped by PID. Exit 0 when every row was measured (targets
missed do not change it), 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import random
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import yaml

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

from modelfleet.local.addresses import AddressPool  # noqa: E402
from modelfleet.local.fleet import Fleet, run_fleet  # noqa: E402
from modelfleet.local.localclient import LocalClient  # noqa: E402
from modelfleet.local.processes import ChildProcess  # noqa: E402
from modelfleet.protos import management_pb2, management_pb2_grpc  # noqa: E402

import procstats  # noqa: E402

CRD_FILE = REPO / "operator" / "crds" / "modeldeployments.modelfleet.io.yaml"
IMAGE = "ghcr.io/modelfleet/modelfleet-server:0.1.0"
OPERATOR_NAMESPACE = "modelfleet-system"
MANAGEMENT_PORT = 7071
V1 = {"version": "1.0", "url": "tiny.pt#version=1.0"}
V2 = {"version": "2.0", "url": "tiny2.pt#version=2.0"}
OPERATOR_AGENTS = ("modelfleet-operator", "kopf")
"""User-agent substrings of the operator's requests (its own client and kopf's)."""
WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---- machine and process readings ------------------------------------------------------------


@dataclass
class Window:
    """Machine load over a measured interval: busy cores (all processes) and load1 at its end."""

    before: procstats.MachineSample = field(default_factory=procstats.sample_machine)
    after: procstats.MachineSample | None = None

    def close(self) -> None:
        self.after = procstats.sample_machine()

    def text(self) -> str:
        after = self.after or procstats.sample_machine()
        busy = procstats.machine_busy_cores(self.before, after)
        return f"{after.loadavg_1m:5.2f}  {busy:4.2f}/{after.cpus}"


def cpu_seconds(pid: int) -> float:
    sample = procstats.sample_tree(pid, memory=False)
    return sum(sample.cpu_ticks.values()) / procstats.CLOCK_TICKS


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM = peak RSS) of one process in MiB, from /proc/<pid>/status."""
    values = {"VmRSS": 0.0, "VmHWM": 0.0}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key = line.split(":", 1)[0]
            if key in values:
                values[key] = int(line.split()[1]) / 1024
    return values["VmRSS"], values["VmHWM"]


# ---- the local cluster and the operator --------------------------------------------------------


def md_body(name: str, *, replicas: int, store: Path, versions: list[dict[str, str]], default: str) -> dict[str, Any]:
    return {
        "apiVersion": "modelfleet.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "image": IMAGE,
            "replicas": replicas,
            "modelStore": {"readOnly": True, "volume": {"hostPath": {"path": str(store)}}},
            "models": [
                {
                    "name": "tiny",
                    "versions": versions,
                    "defaultVersion": default,
                    "minWorkers": 1,
                    "maxWorkers": 1,
                    "batchSize": 8,
                    "maxBatchDelayMs": 5,
                }
            ],
        },
    }


@dataclass
class Cluster:
    fleet: Fleet
    client: LocalClient
    kubeconfig: Path
    workdir: Path
    operator: ChildProcess | None = None
    listeners: list[Callable[[dict[str, Any]], None]] = field(default_factory=list)

    @property
    def mds(self) -> Any:
        return self.client.type("modelfleet.io", "modeldeployments")

    def md(self, name: str) -> dict[str, Any]:
        found = self.client.get(self.mds, "default", name)
        assert found is not None, name
        return found

    @property
    def operator_pid(self) -> int:
        assert self.operator is not None and self.operator.process is not None
        return self.operator.process.pid

    async def start_operator(self, *, resync_s: float) -> None:
        self.operator = ChildProcess(
            [
                sys.executable,
                "-m",
                "modelfleet.operator",
                "--kubeconfig",
                str(self.kubeconfig),
                "--resync-interval",
                str(resync_s),
                "--operator-namespace",
                OPERATOR_NAMESPACE,
            ],
            log_path=self.workdir / "operator.log",
            env=dict(os.environ),
            cwd=self.workdir,
        )
        await self.operator.start()

    def check_operator(self) -> None:
        if self.operator is not None and not self.operator.running:
            raise RuntimeError(f"the operator exited:\n{self.operator.tail()}")

    def operator_requests(self, since: float) -> list[Any]:
        return [
            r
            for r in self.fleet.api.emulator.audit
            if r.at >= since and any(agent in r.user_agent for agent in OPERATOR_AGENTS)
        ]


@contextlib.asynccontextmanager
async def local_cluster(workdir: Path, *, probe_scale: float) -> AsyncIterator[Cluster]:
    # Addresses of our own /16s: other fleets on this machine (tests) use 127.N.0.x too.
    block = random.randrange(20, 99)
    pods = AddressPool(f"127.{block}.0.0/16", first=f"127.{block}.0.2")
    services = AddressPool(f"127.{block + 100}.0.0/16", first=f"127.{block + 100}.0.1")
    workdir.mkdir(parents=True, exist_ok=True)
    async with run_fleet(
        workdir / "state", probe_period_scale=probe_scale, shutdown_grace_s=5, pods=pods, services=services
    ) as fleet:
        client = LocalClient(fleet.api.store, fleet.api.emulator.audit, user_agent="benchmark/operator")
        client.create(client.type("", "namespaces"), None, {"metadata": {"name": OPERATOR_NAMESPACE}})
        client.create(
            client.type("apiextensions.k8s.io", "customresourcedefinitions"), None, yaml.safe_load(CRD_FILE.read_text())
        )
        kubeconfig = workdir / "kubeconfig"
        kubeconfig.write_text(fleet.api.kubeconfig())
        cluster = Cluster(fleet=fleet, client=client, kubeconfig=kubeconfig, workdir=workdir)

        def on_change(rtype: Any, event_type: str, obj: dict[str, Any]) -> None:
            if rtype.key == ("modelfleet.io", "modeldeployments"):
                for listener in list(cluster.listeners):
                    listener(obj)

        fleet.api.store.listeners.append(on_change)
        try:
            yield cluster
        finally:
            if cluster.operator is not None:
                await cluster.operator.stop(grace_s=10)


async def wait_for(
    predicate: Callable[[], bool], *, timeout_s: float, what: str, cluster: Cluster, interval_s: float = 0.05
) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        cluster.check_operator()
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout_s:g} s waiting for {what}")
        await asyncio.sleep(interval_s)


async def wait_quiet(cluster: Cluster, *, quiet_s: float, timeout_s: float) -> None:
    """Until the operator made no write (Lease renewals aside) for `quiet_s`: the window starts idle."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        cluster.check_operator()
        now = time.time()
        recent = [
            r for r in cluster.operator_requests(now - quiet_s) if r.verb in WRITE_VERBS and r.resource != "leases"
        ]
        if not recent:
            return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"the operator kept writing for {timeout_s:g} s")


@dataclass
class IdleWrites:
    scenario: str
    resync_s: float
    window_s: float
    writes: list[str]
    lease_writes: int
    reads: int
    cpu_s: float
    """Operator CPU seconds over the window."""
    load: str


async def idle_writes(cluster: Cluster, *, scenario: str, resync_s: float, resyncs: float) -> IdleWrites:
    """Operator writes during `resyncs` resync intervals of an idle, converged cluster."""
    await wait_quiet(cluster, quiet_s=min(resync_s, 2.0), timeout_s=max(30.0, 4 * resync_s))
    window = Window()
    started = time.time()
    cpu_before = cpu_seconds(cluster.operator_pid)
    await asyncio.sleep(resyncs * resync_s + 0.5)  # the measured window itself: nothing to poll for
    cluster.check_operator()
    cpu = cpu_seconds(cluster.operator_pid) - cpu_before
    window.close()
    requests = cluster.operator_requests(started)
    writes = [
        f"{r.verb} {r.resource}{'/' + r.subresource if r.subresource else ''} {r.name}"
        for r in requests
        if r.verb in WRITE_VERBS and r.resource != "leases"
    ]
    return IdleWrites(
        scenario=scenario,
        resync_s=resync_s,
        window_s=time.time() - started,
        writes=writes,
        lease_writes=sum(1 for r in requests if r.verb in WRITE_VERBS and r.resource == "leases"),
        reads=sum(1 for r in requests if r.verb in ("get", "list")),
        cpu_s=cpu,
        load=window.text(),
    )


# ---- (a) spec change -> every pod converged -----------------------------------------------------


def converged(md: dict[str, Any], *, replicas: int, default: str, versions: list[str]) -> bool:
    """The operator's status says Ready for this generation, with `default` and exactly `versions`
    on every one of `replicas` ready pods."""
    st = md.get("status") or {}
    if st.get("observedGeneration") != md["metadata"].get("generation"):
        return False
    if not any(c.get("type") == "Ready" and c.get("status") == "True" for c in st.get("conditions") or []):
        return False
    if st.get("readyReplicas") != replicas or st.get("replicas") != replicas:
        return False
    tiny = next((m for m in st.get("models") or [] if m.get("name") == "tiny"), None)
    if tiny is None or tiny.get("defaultVersion") != default or tiny.get("podsServing") != replicas:
        return False
    pods = st.get("pods") or []
    if len(pods) + int(st.get("podsOmitted") or 0) != replicas:
        return False
    for pod in pods:
        model = next((m for m in pod.get("models") or [] if m.get("name") == "tiny"), None)
        if (
            not pod.get("ready")
            or model is None
            or model.get("defaultVersion") != default
            or sorted(model.get("versions") or []) != sorted(versions)
        ):
            return False
    return True


async def verify_pods(cluster: Cluster, name: str, *, default: str) -> str:
    """Ask every pod's management API (DescribeModel) for tiny's default: 'yes' or what differs."""
    secret = cluster.client.get(cluster.client.type("", "secrets"), "default", f"{name}-tokens")
    token = base64.b64decode(((secret or {}).get("data") or {}).get("management", "")).decode().strip()
    pods = [
        p
        for p in cluster.client.list(cluster.client.type("", "pods"), "default")
        if (p["metadata"].get("labels") or {}).get("modelfleet.io/deployment") == name
        and not p["metadata"].get("deletionTimestamp")
    ]
    wrong = []
    for pod in pods:
        async with grpc.aio.insecure_channel(f"{pod['status']['podIP']}:{MANAGEMENT_PORT}") as channel:
            stub = management_pb2_grpc.ManagementAPIsServiceStub(channel)
            reply = await stub.DescribeModel(
                management_pb2.DescribeModelRequest(model_name="tiny"),
                metadata=[("authorization", f"Bearer {token}")],
                timeout=10,
            )
            found = json.loads(reply.msg)[0]["modelVersion"]
        if found != default:
            wrong.append(f"{pod['metadata']['name']}:{found}")
    return "yes" if not wrong else "NO " + ",".join(wrong)


@dataclass
class ChangeRow:
    pods: int
    change: str
    seconds: float
    verified: str
    bring_up_s: float
    load: str


async def timed_change(
    cluster: Cluster,
    name: str,
    spec_models: list[dict[str, Any]],
    *,
    replicas: int,
    default: str,
    versions: list[str],
    timeout_s: float,
) -> float:
    """PATCH the spec (merge patch, through the store as an API client would) and return the seconds
    until the status write that says every pod converged (seen by a store listener: no polling lag)."""
    done = asyncio.Event()
    done_at: list[float] = []

    def listener(obj: dict[str, Any]) -> None:
        if (
            obj["metadata"]["name"] == name
            and not done_at
            and converged(obj, replicas=replicas, default=default, versions=versions)
        ):
            done_at.append(time.monotonic())
            done.set()

    cluster.listeners.append(listener)
    try:
        started = time.monotonic()
        cluster.client.patch(cluster.mds, "default", name, {"spec": {"models": spec_models}})
        deadline = started + timeout_s
        while not done.is_set():
            cluster.check_operator()
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{name}: not converged {timeout_s:g} s after the change; status: "
                    f"{json.dumps(cluster.md(name).get('status'))[:1500]}"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), 0.5)
        return done_at[0] - started
    finally:
        cluster.listeners.remove(listener)


def model_spec(versions: list[dict[str, str]], default: str) -> list[dict[str, Any]]:
    return [
        {
            "name": "tiny",
            "versions": versions,
            "defaultVersion": default,
            "minWorkers": 1,
            "maxWorkers": 1,
            "batchSize": 8,
            "maxBatchDelayMs": 5,
        }
    ]


async def convergence(
    size: int, *, store: Path, workdir: Path, args: argparse.Namespace, rows: list[ChangeRow], idle: list[IdleWrites]
) -> None:
    name = f"fleet{size}"
    async with local_cluster(workdir / name, probe_scale=args.probe_scale) as cluster:
        await cluster.start_operator(resync_s=args.resync)
        started = time.monotonic()
        cluster.client.create(
            cluster.mds, "default", md_body(name, replicas=size, store=store, versions=[V1], default="1.0")
        )
        await wait_for(
            lambda: converged(cluster.md(name), replicas=size, default="1.0", versions=["1.0"]),
            timeout_s=60 + 15 * size,
            what=f"{size} pods serving tiny 1.0",
            cluster=cluster,
        )
        bring_up = time.monotonic() - started
        log(f"[{size} pods] up and converged in {bring_up:.1f} s (not timed); settling")
        changes = [
            ("add 2.0 + default 1.0->2.0", model_spec([V1, V2], "2.0"), "2.0", ["1.0", "2.0"]),
            ("default 2.0->1.0 (loaded)", model_spec([V1, V2], "1.0"), "1.0", ["1.0", "2.0"]),
        ]
        for repeat in range(args.repeats):
            if repeat:  # back to 1.0 only (untimed), so the next cut-over loads 2.0 again
                await timed_change(
                    cluster,
                    name,
                    model_spec([V1], "1.0"),
                    replicas=size,
                    default="1.0",
                    versions=["1.0"],
                    timeout_s=120,
                )
            for label, models, default, versions in changes:
                await wait_quiet(cluster, quiet_s=1.0, timeout_s=60)
                window = Window()
                seconds = await timed_change(
                    cluster, name, models, replicas=size, default=default, versions=versions, timeout_s=120
                )
                window.close()
                verified = await verify_pods(cluster, name, default=default)
                rows.append(ChangeRow(size, label, seconds, verified, bring_up, window.text()))
                log(f"[{size} pods] {label}: {seconds:.2f} s (pods say default {default}: {verified})")
        idle.append(
            await idle_writes(
                cluster, scenario=f"{size} pods, converged", resync_s=args.resync, resyncs=args.idle_resyncs
            )
        )


# ---- model load time, apart --------------------------------------------------------------------


async def model_load_times(store: Path, workdir: Path, *, repeats: int) -> list[float]:
    """RegisterModel(synchronous, 1 worker) of tiny2.pt as version 2.0 next to a loaded 1.0, on one
    standalone server process (what each pod does in the cut-over), then UnregisterModel; seconds."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with socket.socket() as s1, socket.socket() as s2:
        s1.bind(("127.0.0.1", 0))
        s2.bind(("127.0.0.1", 0))
        inference, management = f"127.0.0.1:{s1.getsockname()[1]}", f"127.0.0.1:{s2.getsockname()[1]}"
    workdir.mkdir(parents=True, exist_ok=True)
    server = ChildProcess(
        [
            sys.executable,
            "-m",
            "modelfleet.server",
            "--inference-address",
            inference,
            "--management-address",
            management,
            "--model-store",
            str(store),
            "--enable-model-api",
            "--disable-token-auth",
            "--log-level",
            "WARNING",
        ],
        log_path=workdir / "server.log",
        cwd=workdir,
    )
    await server.start()
    times = []
    try:
        async with grpc.aio.insecure_channel(management) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            deadline = time.monotonic() + 90
            while True:
                with contextlib.suppress(grpc.aio.AioRpcError):
                    answer = await health.Check(health_pb2.HealthCheckRequest(service="modelfleet.liveness"), timeout=1)
                    if answer.status == health_pb2.HealthCheckResponse.SERVING:
                        break
                if not server.running or time.monotonic() > deadline:
                    raise RuntimeError(f"the standalone server did not start:\n{server.tail()}")
                await asyncio.sleep(0.1)
            stub = management_pb2_grpc.ManagementAPIsServiceStub(channel)

            async def register(url: str) -> float:
                t0 = time.monotonic()
                await stub.RegisterModel(
                    management_pb2.RegisterModelRequest(
                        url=url, model_name="tiny", initial_workers=1, synchronous=True, batch_size=8, max_batch_delay=5
                    ),
                    timeout=120,
                )
                return time.monotonic() - t0

            await register(V1["url"])
            for _ in range(repeats):
                times.append(await register(V2["url"]))
                await stub.UnregisterModel(
                    management_pb2.UnregisterModelRequest(model_name="tiny", model_version="2.0"), timeout=60
                )
    finally:
        await server.stop(grace_s=10)
    return times


# ---- (b) operator CPU and RSS with many resources ---------------------------------------------


@dataclass
class ScaleRow:
    resources: int
    ready: int
    """Resources whose status said Ready=True by the time all were handled."""
    first_s: float
    handled_s: float
    cpu_handled_s: float
    rss_handled: float
    idle_cpu_per_resync_s: float
    rss_idle: float
    peak_rss: float
    load: str


async def at_scale(
    count: int, *, store: Path, workdir: Path, args: argparse.Namespace, rows: list[ScaleRow], idle: list[IdleWrites]
) -> None:
    """`count` ModelDeployments (replicas 0) exist; the operator starts; timed until every one has a
    status for its generation; then CPU and RSS, and again after an idle period of resyncs."""
    async with local_cluster(workdir / f"scale{count}", probe_scale=args.probe_scale) as cluster:
        for i in range(count):
            cluster.client.create(
                cluster.mds, "default", md_body(f"md{i:04d}", replicas=0, store=store, versions=[V1], default="1.0")
            )
        handled: set[str] = set()
        ready: set[str] = set()
        first: list[float] = []
        done = asyncio.Event()

        def listener(obj: dict[str, Any]) -> None:
            st = obj.get("status") or {}
            if st.get("observedGeneration") == obj["metadata"].get("generation") and st.get("conditions"):
                handled.add(obj["metadata"]["name"])
                if any(c.get("type") == "Ready" and c.get("status") == "True" for c in st["conditions"]):
                    ready.add(obj["metadata"]["name"])
                if not first:
                    first.append(time.monotonic())
                if len(handled) == count:
                    done.set()

        cluster.listeners.append(listener)
        window = Window()
        started = time.monotonic()
        await cluster.start_operator(resync_s=args.resync)
        deadline = started + 60 + 0.2 * count
        while not done.is_set():
            cluster.check_operator()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(handled)}/{count} handled after {deadline - started:.0f} s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), 0.5)
        handled_s = time.monotonic() - started
        window.close()
        pid = cluster.operator_pid
        cpu_handled = cpu_seconds(pid)
        rss_handled, _ = memory_mb(pid)
        log(
            f"[{count} resources] handled in {handled_s:.1f} s; "
            f"operator CPU {cpu_handled:.1f} s, RSS {rss_handled:.0f} MiB"
        )
        writes = await idle_writes(
            cluster, scenario=f"{count} resources, replicas 0", resync_s=args.resync, resyncs=args.idle_resyncs
        )
        rss_idle, peak = memory_mb(pid)
        rows.append(
            ScaleRow(
                count,
                len(ready),
                first[0] - started,
                handled_s,
                cpu_handled,
                rss_handled,
                writes.cpu_s / (writes.window_s / args.resync),
                rss_idle,
                peak,
                window.text(),
            )
        )
        idle.append(writes)


# ---- the tables ---------------------------------------------------------------------------------


def table(headers: list[str], rows: list[list[str]], *, left: int = 1) -> str:
    """Columns padded to their widest cell; the first `left` columns left-aligned, numbers right."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < left else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(headers)] + [line(r) for r in rows])


def report(
    args: argparse.Namespace,
    changes: list[ChangeRow],
    loads: list[float],
    scale: list[ScaleRow],
    idle: list[IdleWrites],
) -> str:
    out = [
        f"(a) spec change -> every pod converged: merge PATCH of spec.models -> the status write saying Ready "
        f"with the new state on every pod (probe periods x{args.probe_scale:g}, resync {args.resync:g} s)"
    ]
    out.append(
        table(
            ["pods", "change", "converged s", "pods checked", "bring-up s", "load1", "busy cores"],
            [
                [str(r.pods), r.change, f"{r.seconds:.2f}", r.verified, f"{r.bring_up_s:.1f}", *r.load.split()]
                for r in changes
            ],
            left=2,
        )
    )
    if loads:
        out.append(
            f"model load time, apart (RegisterModel synchronous tiny2.pt v2.0, 1 worker, standalone server): "
            f"median {statistics.median(loads):.3f} s, max {max(loads):.3f} s (n={len(loads)})"
        )
    out.append("")
    out.append(
        "(b) operator process with N ModelDeployments (replicas 0), operator started after they exist; "
        "times from its spawn"
    )
    out.append(
        table(
            [
                "resources",
                "Ready",
                "first status s",
                "all handled s",
                "CPU s to handled",
                "RSS MiB handled",
                "idle CPU s/resync",
                "RSS MiB after idle",
                "peak RSS MiB",
                "load1",
                "busy cores",
            ],
            [
                [
                    str(r.resources),
                    str(r.ready),
                    f"{r.first_s:.2f}",
                    f"{r.handled_s:.2f}",
                    f"{r.cpu_handled_s:.2f}",
                    f"{r.rss_handled:.0f}",
                    f"{r.idle_cpu_per_resync_s:.2f}",
                    f"{r.rss_idle:.0f}",
                    f"{r.peak_rss:.0f}",
                    *r.load.split(),
                ]
                for r in scale
            ],
        )
    )
    out.append("")
    out.append(f"(c) operator API writes while idle (Lease renewals apart), resync interval {args.resync:g} s")
    out.append(
        table(
            [
                "scenario",
                "window s",
                "resyncs",
                "writes",
                "writes/resync",
                "lease renewals",
                "operator reads",
                "operator CPU s",
                "load1",
                "busy cores",
            ],
            [
                [
                    w.scenario,
                    f"{w.window_s:.1f}",
                    f"{w.window_s / w.resync_s:.1f}",
                    str(len(w.writes)),
                    f"{len(w.writes) / (w.window_s / w.resync_s):.2f}",
                    str(w.lease_writes),
                    str(w.reads),
                    f"{w.cpu_s:.2f}",
                    *w.load.split(),
                ]
                for w in idle
            ],
        )
    )
    for w in idle:
        if w.writes:
            out.append(f"  writes in '{w.scenario}': " + "; ".join(w.writes[:10]))
    out.append("")
    out.append("targets")
    ten = [r.seconds for r in changes if r.pods == 10]
    if ten:
        out.append(
            f"  10 pods converged <= 2 s after the change: {'PASS' if max(ten) <= 2 else 'MISS'} "
            f"(worst {max(ten):.2f} s)"
        )
    thousand = [r for r in scale if r.resources == 1000]
    if thousand:
        worst = max(thousand[0].rss_idle, thousand[0].rss_handled)
        mb = worst * 1.048576
        out.append(
            f"  operator RSS <= 150 MB at 1,000 resources: {'PASS' if mb <= 150 else 'MISS'} "
            f"({worst:.0f} MiB = {mb:.0f} MB; peak {thousand[0].peak_rss:.0f} MiB)"
        )
    if idle:
        total = sum(len(w.writes) for w in idle)
        out.append(
            f"  0 writes per idle resync: {'PASS' if total == 0 else 'MISS'} ({total} writes in "
            f"{sum(w.window_s / w.resync_s for w in idle):.0f} resync intervals)"
        )
    return "\n".join(out)


# ---- the command ---------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--sizes", default="1,3,10", help="pods per fleet for (a), comma list (0 or '' skips)")
    p.add_argument("--counts", default="10,100,1000", help="ModelDeployments for (b), comma list ('' skips)")
    p.add_argument("--resync", type=float, default=5.0, help="the operator's --resync-interval, seconds")
    p.add_argument("--idle-resyncs", type=float, default=2.0, help="resync intervals in each idle window")
    p.add_argument("--repeats", type=int, default=1, help="timed cut-over/flip pairs per fleet size")
    p.add_argument("--load-repeats", type=int, default=3, help="timed model registrations (load time, apart)")
    p.add_argument(
        "--probe-scale",
        type=float,
        default=0.25,
        help="multiplies the pod template's probe periods (bring-up only; pods stay ready throughout)",
    )
    p.add_argument("--workdir", type=Path, help="logs and state here (default: a temp dir, removed on success)")
    p.add_argument("--quick", action="store_true", help="smoke: --sizes 1 --counts 10 --resync 2 --load-repeats 1")
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.counts, args.resync, args.load_repeats = "1", "10", 2.0, 1
    args.size_list = [int(v) for v in args.sizes.split(",") if v.strip() and int(v) > 0]
    args.count_list = [int(v) for v in args.counts.split(",") if v.strip() and int(v) > 0]
    return args


async def main_async(args: argparse.Namespace, workdir: Path) -> int:
    from modelfleet.server.demo import write_torchscript

    store = workdir / "store"
    store.mkdir(parents=True, exist_ok=True)
    write_torchscript("tiny", store / "tiny.pt")
    write_torchscript("tiny", store / "tiny2.pt", seed=1)
    changes: list[ChangeRow] = []
    scale: list[ScaleRow] = []
    idle: list[IdleWrites] = []
    loads: list[float] = []
    failures: list[str] = []
    for size in args.size_list:
        try:
            await convergence(size, store=store, workdir=workdir, args=args, rows=changes, idle=idle)
        except (RuntimeError, grpc.aio.AioRpcError) as exc:
            failures.append(f"{size} pods: {exc}")
            log(f"[{size} pods] FAILED: {exc}")
    if args.size_list:
        try:
            loads = await model_load_times(store, workdir / "load", repeats=args.load_repeats)
        except (RuntimeError, grpc.aio.AioRpcError) as exc:
            failures.append(f"model load time: {exc}")
    for count in args.count_list:
        try:
            await at_scale(count, store=store, workdir=workdir, args=args, rows=scale, idle=idle)
        except RuntimeError as exc:
            failures.append(f"{count} resources: {exc}")
            log(f"[{count} resources] FAILED: {exc}")
    print(report(args, changes, loads, scale, idle), flush=True)
    for failure in failures:
        print(f"FAILED: {failure}", flush=True)
    return 1 if failures else 0


async def guarded(args: argparse.Namespace, workdir: Path) -> int:
    """main_async, cancelled by SIGTERM/SIGINT so that every pod and the operator are stopped first."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        return await main_async(args, workdir)
    except asyncio.CancelledError:
        log("stopped by a signal; everything started here has been stopped")
        return 130


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    keep = args.workdir is not None
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="mf-operator-bench-"))
    log(f"workdir {workdir}")
    code = asyncio.run(guarded(args, workdir))
    print(f"run time {time.monotonic() - started:.0f} s", flush=True)
    if not keep and code == 0:
        shutil.rmtree(workdir, ignore_errors=True)
    elif code:
        log(f"logs kept in {workdir}")
    return code


if __name__ == "__main__":
    sys.exit(main())
