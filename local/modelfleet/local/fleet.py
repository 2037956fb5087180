"""The local cluster: the in-memory API plus the controller-manager's, kubelet's and kube-proxy's parts.

`run_fleet()` starts the API (apiserver.py, with loopback Service addresses), the Deployment and
ReplicaSet controllers, the kubelet and the service proxy in the caller's event loop, and on exit stops
every process it started. It knows nothing about ModelFleet: `modelfleet-local` (__main__.py) and the
tests put the operator and the objects on top.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from modelfleet.local.addresses import AddressPool, pod_pool, service_pool
from modelfleet.local.apiserver import RunningApi, run_apiserver
from modelfleet.local.deployments import DeploymentController
from modelfleet.local.endpoints import EndpointsController
from modelfleet.local.kubelet import Kubelet, KubeletSettings
from modelfleet.local.localclient import LocalClient
from modelfleet.local.replicasets import ReplicaSetController
from modelfleet.local.services import ServiceProxy

log = logging.getLogger(__name__)


@dataclass
class Fleet:
    api: RunningApi
    kubelet: Kubelet
    proxy: ServiceProxy
    client: LocalClient
    state_dir: Path


@contextlib.asynccontextmanager
async def run_fleet(
    state_dir: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    probe_period_scale: float = 1.0,
    shutdown_grace_s: float = 10.0,
    pods: AddressPool | None = None,
    services: AddressPool | None = None,
) -> AsyncIterator[Fleet]:
    state_dir.mkdir(parents=True, exist_ok=True)
    service_addresses = services or service_pool()
    pod_addresses = pods or pod_pool()
    async with run_apiserver(host=host, port=port) as api:
        store = api.emulator.store
        store.allocate_cluster_ip = service_addresses.allocate
        store.release_cluster_ip = service_addresses.release
        audit = api.emulator.audit
        kubelet = Kubelet(
            LocalClient(store, audit, user_agent="kubelet/local"),
            KubeletSettings(
                state_dir=state_dir, probe_period_scale=probe_period_scale, shutdown_grace_s=shutdown_grace_s
            ),
            addresses=pod_addresses,
        )
        api.emulator.pod_logs = kubelet.log_path
        proxy = ServiceProxy(LocalClient(store, audit, user_agent="kube-proxy/local"))
        manager = LocalClient(store, audit, user_agent="kube-controller-manager/local")
        tasks = [
            asyncio.create_task(DeploymentController(manager).run(), name="deployment-controller"),
            asyncio.create_task(ReplicaSetController(manager).run(), name="replicaset-controller"),
            asyncio.create_task(EndpointsController(manager).run(), name="endpoints-controller"),
            asyncio.create_task(kubelet.run(), name="kubelet"),
            asyncio.create_task(proxy.run(), name="service-proxy"),
        ]
        try:
            yield Fleet(api=api, kubelet=kubelet, proxy=proxy, client=manager, state_dir=state_dir)
        finally:
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            for task, result in zip(tasks, results):
                if isinstance(result, Exception):
                    log.error("%s ended with %r", task.get_name(), result)
            await kubelet.shutdown()
            await proxy.stop()
            pod_addresses.close()
            service_addresses.close()
