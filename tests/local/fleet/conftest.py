"""Fixtures for the local fleet tests: a running fleet (API, controllers, kubelet, service proxy) in the
test's loop with probes and back-off scaled down, and pod templates that run tests/local/fleet/podserver.py."""

from __future__ import annotations

import copy
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from modelfleet.local.fleet import Fleet, run_fleet
from modelfleet.local.podreport import failing_pods

import mf_polling as polling

PODSERVER = str(Path(__file__).with_name("podserver.py"))
PROBE_SCALE = 0.1  # a periodSeconds: 1 probe runs every 0.1 s; the first restart back-off is 1 s


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
    async with run_fleet(tmp_path / "state", probe_period_scale=PROBE_SCALE, shutdown_grace_s=3) as running:
        yield running


async def eventually(predicate: Callable[[], Any], *, timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll until predicate() (sync or async) is truthy; return its value."""
    return await polling.eventually(predicate, timeout=timeout, what=what, interval=0.05)


@pytest.fixture
def wait(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """eventually(), which on a timeout also shows the pods that are not Ready with their log tails."""
    if "fleet" not in request.fixturenames:
        return eventually
    running: Fleet = request.getfixturevalue("fleet")

    async def wait_explaining(predicate: Callable[[], Any], **options: Any) -> Any:
        options.setdefault("diagnose", lambda: failing_pods(running.client, running.kubelet) or "every pod is Ready")
        return await polling.eventually(predicate, interval=0.05, **{"timeout": 30.0, **options})

    return wait_explaining


def _container(*, extra_args: list[str] | None = None, env: list[dict] | None = None, probes: bool = True) -> dict:
    container: dict[str, Any] = {
        "name": "main",
        "image": "local/podserver:1",
        "command": [sys.executable, PODSERVER],
        "args": ["--health=$(POD_IP):9000", "--whoami=$(POD_IP):9100", *(extra_args or [])],
        "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}, *(env or [])],
        "ports": [{"name": "health", "containerPort": 9000}, {"name": "whoami", "containerPort": 9100}],
    }
    if probes:
        # Startup gates liveness (a Python process needs ~1 s to listen), as in the operator's template.
        container["startupProbe"] = {
            "grpc": {"port": 9000, "service": "live"},
            "periodSeconds": 1,
            "failureThreshold": 300,
        }
        container["readinessProbe"] = {"grpc": {"port": 9000}, "periodSeconds": 1, "failureThreshold": 1}
        container["livenessProbe"] = {
            "grpc": {"port": 9000, "service": "live"},
            "periodSeconds": 1,
            "failureThreshold": 2,
        }
    return container


def make_deployment(
    name: str = "web",
    *,
    replicas: int = 1,
    strategy: dict | None = None,
    container: dict | None = None,
    volumes: list[dict] | None = None,
    grace: int = 2,
) -> dict:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "strategy": strategy or {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {
                    "terminationGracePeriodSeconds": grace,
                    "containers": [copy.deepcopy(container) if container else _container()],
                    "volumes": volumes or [],
                },
            },
        },
    }


@pytest.fixture
def deployment() -> Callable[..., dict]:
    return make_deployment


@pytest.fixture
def podserver_container() -> Callable[..., dict]:
    return _container
