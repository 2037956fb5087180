"""The local kubelet: every pod in the API becomes real processes on its own loopback address.

Watches pods and binds each new one to this node (spec.nodeName), gives it an address 127.0.0.N
(status.podIP; released when the pod is gone; reserved machine-wide, see addresses.py; a pod whose
address another program took meanwhile moves to a new one before a container starts, with a
Warning event AddressInUse), sets up its volumes (volumes.py), starts one
ContainerRunner per container (runtime.py: process, probes, restarts) and writes the pod status
(phase, conditions with stable lastTransitionTime, containerStatuses) whenever it changes. A deleted
pod (deletionTimestamp) gets SIGTERM, then SIGKILL after its grace period, and is then removed from
the API with grace 0, as the kubelet does. ConfigMap and Secret changes rewrite mounted volumes
(atomic `..data` swap); a volume that cannot be set up yet (a missing Secret) leaves the pod
ContainerCreating with a Warning event FailedMount (one per distinct message), retried every second.
Container output goes to `<state>/pods/<ns>_<pod>/logs/<container>.log` (served as `kubectl logs`).
Init containers run one after another before the containers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path

from modelfleet.local import containers
from modelfleet.local.addresses import AddressPool, can_bind
from modelfleet.local.apistore import now_rfc3339
from modelfleet.local.apitypes import JSON, ApiError
from modelfleet.local.apiwatch import Watch
from modelfleet.local.localclient import LocalClient
from modelfleet.local.runtime import ContainerRunner
from modelfleet.local.volumes import PodVolumes, VolumeError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class KubeletSettings:
    state_dir: Path
    """Where pod folders (volumes, logs) and persistent volumes live."""
    node_name: str = "local"
    host_ip: str = "127.0.0.1"
    probe_period_scale: float = 1.0
    """Multiplies probe periods, initial delays and restart back-off (e.g. 0.1 in tests)."""
    shutdown_grace_s: float = 10.0
    """The longest a pod gets to stop when the whole fleet shuts down."""


def container_ports(container: JSON) -> list[int]:
    return [int(port["containerPort"]) for port in container.get("ports") or [] if port.get("containerPort")]


def pod_ports(pod: JSON) -> list[int]:
    """Every port the pod's containers declare: its address must have them all free."""
    spec = pod.get("spec") or {}
    return [
        port
        for container in (spec.get("containers") or []) + (spec.get("initContainers") or [])
        for port in container_ports(container)
    ]


class PodWorker:
    """Runs one pod (see the module docstring)."""

    def __init__(self, kubelet: Kubelet, pod: JSON, ip: str) -> None:
        self.kubelet = kubelet
        self.pod = pod
        self.ip = ip
        meta = pod["metadata"]
        self.dir = kubelet.settings.state_dir / "pods" / f"{meta['namespace']}_{meta['name']}"
        self.volumes = PodVolumes(pod, pod_dir=self.dir, state_dir=kubelet.settings.state_dir)
        self.runners: list[ContainerRunner] = []
        self.init_done = False
        self.mount_error: str | None = None
        self.start_time = now_rfc3339()
        self._published: JSON | None = None
        self._transitions: dict[str, tuple[str, str]] = {}
        self._warned: set[str] = set()
        self._stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.grace_s = float((pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))

    @property
    def key(self) -> tuple[str, str]:
        return (self.pod["metadata"]["namespace"], self.pod["metadata"]["name"])

    def _runner(self, container: JSON, *, restart_policy: str) -> ContainerRunner:
        def build(c: JSON) -> containers.ProcessSpec:
            return containers.build(
                self.pod,
                c,
                volumes=self.volumes.paths,
                pod_dir=self.dir,
                pod_ip=self.ip,
                host_ip=self.kubelet.settings.host_ip,
                lookup=self.kubelet.lookup,
            )

        return ContainerRunner(
            container,
            build=build,
            build_exec=lambda command: build(dict(container, command=command, args=[])),
            pod_ip=lambda: self.ip,
            log_path=self.dir / "logs" / f"{container['name']}.log",
            restart_policy=restart_policy,
            grace_s=self.grace_s,
            period_scale=self.kubelet.settings.probe_period_scale,
            on_change=self.publish,
            before_start=self.check_address,
        )

    async def check_address(self, container: JSON) -> None:
        """Before a container starts: are its ports on the pod's address free?

        Another program may have taken one since the address was allocated (the pool checks only
        then). With no other container of the pod running, the pod moves to a fresh address, so the
        restart succeeds; otherwise the container would crash-loop, and a Warning event says why.
        Either way the pod gets one Warning event (reason AddressInUse) per address and port."""
        taken = [port for port in container_ports(container) if not can_bind(self.ip, port)]
        if not taken:
            return
        where = f"{self.ip}:{taken[0]}"
        others_running = any(runner.running for runner in self.runners if runner.name != container["name"])
        fresh = None
        if not others_running:
            with contextlib.suppress(RuntimeError):  # the pool is exhausted: stay, and say why below
                fresh = self.kubelet.addresses.allocate(pod_ports(self.pod))
        if fresh is not None:
            old, self.ip = self.ip, fresh
            self.kubelet.addresses.release(old)
            self.kubelet.warn(
                self.pod,
                "AddressInUse",
                f"{where} is in use by another program on this machine; the pod moved to {self.ip}",
            )
            log.warning("pod %s/%s: %s is in use; moved to %s", *self.key, where, self.ip)
            self.publish()
        elif where not in self._warned:
            self._warned.add(where)
            self.kubelet.warn(
                self.pod,
                "AddressInUse",
                f"{where} is in use by another program on this machine: "
                f"container {container['name']} cannot listen there; "
                "stop that program or delete the pod",
            )

    async def run(self) -> None:
        spec = self.pod.get("spec") or {}
        self.publish()
        while not self._stop.is_set():
            try:
                self.volumes.materialize(self.kubelet.lookup)
                self.mount_error = None
                break
            except VolumeError as exc:
                if self.mount_error != str(exc):
                    # As a real kubelet: the pod stays ContainerCreating and only an Event says why.
                    self.mount_error = str(exc)
                    self.kubelet.warn(self.pod, "FailedMount", self.mount_error)
                    self.publish()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), 1.0)
        for init in spec.get("initContainers") or []:
            runner = self._runner(init, restart_policy="OnFailure")
            self.runners = [runner]
            task = asyncio.create_task(runner.run())
            stopping = asyncio.create_task(self._stop.wait())
            await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            if self._stop.is_set():
                await runner.stop(0)
                await asyncio.gather(task, return_exceptions=True)
                return
        self.init_done = True
        policy = str(spec.get("restartPolicy", "Always"))
        self.runners = [self._runner(c, restart_policy=policy) for c in spec.get("containers") or []]
        self.publish()
        tasks = [asyncio.create_task(runner.run(), name=f"container-{runner.name}") for runner in self.runners]
        await self._stop.wait()
        await asyncio.gather(*(runner.stop(self.grace_s) for runner in self.runners))
        await asyncio.gather(*tasks, return_exceptions=True)

    async def terminate(self, grace_s: float) -> None:
        """Stop every container (SIGTERM, SIGKILL after `grace_s`) and wait for the worker to end."""
        self.grace_s = grace_s
        for runner in self.runners:
            runner._grace_s = grace_s
        self._stop.set()
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)

    def refresh_volumes(self) -> None:
        self.volumes.refresh(self.kubelet.lookup)

    # ---- status ------------------------------------------------------------------------------
    def _condition(self, kind: str, ok: bool, reason: str | None = None) -> JSON:
        state = "True" if ok else "False"
        previous = self._transitions.get(kind)
        if previous is None or previous[0] != state:
            self._transitions[kind] = (state, now_rfc3339())
        entry: JSON = {
            "type": kind,
            "status": state,
            "lastProbeTime": None,
            "lastTransitionTime": self._transitions[kind][1],
        }
        if reason and not ok:
            entry["reason"] = reason
        return entry

    def status(self) -> JSON:
        spec = self.pod.get("spec") or {}
        images = {
            c["name"]: c.get("image", "") for c in (spec.get("containers") or []) + (spec.get("initContainers") or [])
        }
        statuses = (
            [runner.status_entry(images.get(runner.name, "")) for runner in self.runners] if self.init_done else []
        )
        if not statuses:
            # A failed mount shows only in the FailedMount Event and PodReadyToStartContainers, as in a cluster.
            waiting: JSON = {"reason": "ContainerCreating"}
            statuses = [
                {
                    "name": c["name"],
                    "image": c.get("image", ""),
                    "imageID": "",
                    "ready": False,
                    "started": False,
                    "restartCount": 0,
                    "state": {"waiting": waiting},
                }
                for c in spec.get("containers") or []
            ]
        terminating = bool(self.pod["metadata"].get("deletionTimestamp"))
        all_ready = bool(self.runners) and self.init_done and all(r.status.ready for r in self.runners)
        ever_ran = self.init_done and any("running" in s["state"] or s["restartCount"] for s in statuses)
        phase = "Running" if ever_ran else "Pending"
        if self.runners and self.init_done and all(r.finished for r in self.runners):
            codes = [int(r.status.state.get("terminated", {}).get("exitCode", 1)) for r in self.runners]
            phase = "Succeeded" if not any(codes) else "Failed"
        status: JSON = {
            "phase": phase,
            "conditions": [
                self._condition("PodReadyToStartContainers", self.mount_error is None),
                self._condition("Initialized", self.init_done, "ContainersNotInitialized"),
                self._condition("Ready", all_ready and not terminating, "ContainersNotReady"),
                self._condition("ContainersReady", all_ready, "ContainersNotReady"),
                self._condition("PodScheduled", True),
            ],
            "hostIP": self.kubelet.settings.host_ip,
            "hostIPs": [{"ip": self.kubelet.settings.host_ip}],
            "podIP": self.ip,
            "podIPs": [{"ip": self.ip}],
            "startTime": self.start_time,
            "qosClass": (self.pod.get("status") or {}).get("qosClass", "BestEffort"),
            "containerStatuses": statuses,
        }
        return status

    def publish(self) -> None:
        """Write the pod status if it changed since the last write."""
        status = self.status()
        if status == self._published:
            return
        self._published = status
        namespace, name = self.key
        try:
            self.pod = self.kubelet.client.patch(
                self.kubelet.pods, namespace, name, {"status": status}, subresource="status"
            )
        except ApiError as exc:
            if exc.code != 404:
                raise


class Kubelet:
    """Turns the API's pods into local processes (see the module docstring)."""

    def __init__(self, client: LocalClient, settings: KubeletSettings, *, addresses: AddressPool) -> None:
        self.client = client
        self.settings = settings
        self.addresses = addresses
        self.pods = client.type("", "pods")
        self.workers: dict[str, PodWorker] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def warn(self, pod: JSON, reason: str, message: str) -> None:
        """Post a Warning event about `pod`, as the kubelet does (`kubectl describe pod` shows it)."""
        meta = pod["metadata"]
        stamp = now_rfc3339()
        event: JSON = {
            "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:16]}", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Pod",
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta.get("uid"),
            },
            "type": "Warning",
            "reason": reason,
            "message": message,
            "count": 1,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "source": {"component": "kubelet", "host": self.settings.node_name},
            "reportingComponent": "kubelet",
            "reportingInstance": self.settings.node_name,
        }
        try:
            self.client.create(self.client.type("", "events"), meta["namespace"], event)
        except ApiError as exc:
            log.warning("cannot post event %s for pod %s/%s: %s", reason, meta["namespace"], meta["name"], exc)

    def lookup(self, plural: str, namespace: str, name: str) -> JSON | None:
        return self.client.get(self.client.type("", plural), namespace, name)

    def log_path(self, namespace: str, name: str, container: str | None) -> Path | None:
        """The log file `kubectl logs` reads (first container when none is named)."""
        for worker in self.workers.values():
            if worker.key == (namespace, name):
                spec = worker.pod.get("spec") or {}
                names = [c["name"] for c in spec.get("containers") or []]
                chosen = container or (names[0] if names else "")
                return worker.dir / "logs" / f"{chosen}.log"
        return None

    async def run(self) -> None:
        watches = [
            self.client.watch(self.pods),
            self.client.watch(self.client.type("", "configmaps")),
            self.client.watch(self.client.type("", "secrets")),
        ]
        pumps = [asyncio.create_task(self._pump(watch)) for watch in watches]
        try:
            await asyncio.gather(*pumps)
        finally:
            for pump in pumps:
                pump.cancel()
            for watch in watches:
                watch.close()
            await self.shutdown()

    async def _pump(self, watch: Watch) -> None:
        async for event in watch:
            obj = event["object"]
            if obj.get("kind") == "Pod":
                self._on_pod(event["type"], obj)
            elif event["type"] in ("ADDED", "MODIFIED"):
                namespace = obj["metadata"].get("namespace")
                for worker in list(self.workers.values()):
                    if worker.key[0] == namespace:
                        worker.refresh_volumes()

    def _spawn(self, coroutine: Coroutine[None, None, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_pod(self, event_type: str, pod: JSON) -> None:
        meta = pod["metadata"]
        uid = meta["uid"]
        worker = self.workers.get(uid)
        if event_type == "DELETED":
            if worker is not None:
                self._spawn(self._finish(worker, grace_s=0, delete=False))
            return
        spec = pod.get("spec") or {}
        node = spec.get("nodeName")
        if node and node != self.settings.node_name:
            return  # another node's pod
        if worker is None:
            if meta.get("deletionTimestamp") or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                return
            if not node:
                self.client.patch(
                    self.pods, meta["namespace"], meta["name"], {"spec": {"nodeName": self.settings.node_name}}
                )
                return  # the bound pod comes back as a MODIFIED event
            worker = PodWorker(self, pod, self.addresses.allocate(pod_ports(pod)))
            self.workers[uid] = worker
            worker.task = asyncio.create_task(worker.run(), name=f"pod-{meta['name']}")
            return
        worker.pod = pod
        if meta.get("deletionTimestamp") and not worker._stop.is_set():
            worker.grace_s = float(meta.get("deletionGracePeriodSeconds", worker.grace_s))
            worker._stop.set()  # mark now so the next event does not start a second finish
            worker.publish()
            self._spawn(self._finish(worker, grace_s=worker.grace_s, delete=True))

    async def _finish(self, worker: PodWorker, *, grace_s: float, delete: bool) -> None:
        await worker.terminate(grace_s)
        self.workers.pop(worker.pod["metadata"]["uid"], None)
        self.addresses.release(worker.ip)
        if delete:
            namespace, name = worker.key
            self.client.delete(self.pods, namespace, name, grace_seconds=0)
        shutil.rmtree(worker.dir / "volumes", ignore_errors=True)

    async def shutdown(self) -> None:
        """Stop every pod's processes (the fleet is going away; the API objects stay as they are)."""
        grace = self.settings.shutdown_grace_s
        workers = list(self.workers.values())
        await asyncio.gather(
            *(worker.terminate(min(worker.grace_s, grace)) for worker in workers), return_exceptions=True
        )
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for worker in workers:
            self.addresses.release(worker.ip)
        self.workers.clear()
