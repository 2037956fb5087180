"""Two `python -m modelfleet.operator` processes against one API: only the Lease holder writes;
killing it (SIGKILL) hands the work to the other within the stated time; SIGTERM releases the Lease."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from modelfleet.operator.kube import Kube

LEASE_DURATION_S = 2.0
RENEW_INTERVAL_S = 0.3
TAKEOVER_BUDGET_S = LEASE_DURATION_S + RENEW_INTERVAL_S + 8.0
"""Lease expiry + one retry + the new leader's kopf start and first reconcile (slow, shared CI cores)."""


@pytest.fixture
def operator_process(api: Any, tmp_path: Path) -> Iterator[Callable[[str], subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(api.running.kubeconfig())

    def start(identity: str) -> subprocess.Popen[bytes]:
        # The first logs in from a kubeconfig file, the second with a bare --server URL.
        login = ["--kubeconfig", str(kubeconfig)] if not started else ["--server", api.url]
        with (tmp_path / f"{identity}.log").open("wb") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "modelfleet.operator",
                    *login,
                    "--identity",
                    identity,
                    "--lease-namespace",
                    "default",
                    "--lease-duration",
                    str(LEASE_DURATION_S),
                    "--renew-interval",
                    str(RENEW_INTERVAL_S),
                    "--renew-deadline",
                    "1.5",
                    "--resync-interval",
                    "1",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ},
            )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


async def _holder(kube: Kube) -> str | None:
    lease = await kube.get("Lease", "default", "modelfleet-operator")
    return None if lease is None else str(lease["spec"].get("holderIdentity") or "")


@pytest.mark.slow
async def test_one_leader_writes_and_the_other_takes_over_after_a_kill(
    api: Any,
    kube: Kube,
    operator_process: Callable[[str], subprocess.Popen[bytes]],
    make_md: Callable[..., dict[str, Any]],
    poll: Callable[..., Any],
) -> None:
    first = operator_process("op-a")
    await poll(lambda: _holder(kube), timeout=30)
    assert await _holder(kube) == "op-a"
    second = operator_process("op-b")
    body = make_md(replicas=0)
    body["metadata"] = {"name": "demo", "namespace": "default"}
    await kube.create(body)

    async def deployment_image() -> str | None:
        deployment = await kube.get("Deployment", "default", "demo")
        return None if deployment is None else str(deployment["spec"]["template"]["spec"]["containers"][0]["image"])

    await poll(deployment_image, timeout=30)
    assert api.audit.writes(user_agent="op-a"), "the leader wrote the children"
    assert api.audit.writes(user_agent="op-b") == []
    assert second.poll() is None

    first.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    await kube.patch_merge("ModelDeployment", "default", "demo", {"spec": {"image": "ghcr.io/modelfleet/server:0.2.0"}})
    await poll(lambda: _holder_is(kube, "op-b"), timeout=TAKEOVER_BUDGET_S)
    await poll(lambda: _image_is(kube, "ghcr.io/modelfleet/server:0.2.0"), timeout=TAKEOVER_BUDGET_S)
    took = time.monotonic() - killed
    print(f"takeover: new leader applied the change {took:.1f} s after SIGKILL")
    assert took <= TAKEOVER_BUDGET_S
    assert api.audit.writes(user_agent="op-b")

    second.send_signal(signal.SIGTERM)
    # Poll, never wait(): the API this process talks to while stopping runs on this very loop.
    await poll(lambda: second.poll() is not None, timeout=20)
    assert second.returncode == 0
    assert await _holder(kube) == ""  # released on a clean stop: the next replica takes over at once


async def _holder_is(kube: Kube, identity: str) -> bool:
    return await _holder(kube) == identity


async def _image_is(kube: Kube, image: str) -> bool:
    deployment = await kube.get("Deployment", "default", "demo")
    return bool(deployment) and deployment["spec"]["template"]["spec"]["containers"][0]["image"] == image
