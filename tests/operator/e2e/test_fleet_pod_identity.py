"""A stranger at a pod's address never gets the management token: the pod's server process dies and,
before the operator's view of the pod changes (same pod object, same IP), another server takes its
management address. The operator asks who answers, without a token, hears another pod's UID, sends
nothing more and reports the pod unverified; the stranger's own record shows no token ever came.
Once the stranger is gone the pod's own server comes back and the fleet converges again."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

import pytest

from modelfleet.operator.children import MANAGEMENT_PORT

from mf_foreign_server import ClaimsPod, ForeignServer, start_foreign_server

pytestmark = pytest.mark.slow

TINY = {"name": "tiny", "versions": [{"version": "1.0", "url": "tiny.pt#version=1.0"}]}
STRANGER_UID = "0a0b0c0d-another-fleets-pod"


async def test_a_foreign_server_at_a_pods_address_never_receives_the_management_token(
    product: Any, poll: Callable[..., Any], pids_of: Callable[[dict[str, Any]], list[int]]
) -> None:
    await product.start_operator(resync_s=0.5)
    await product.create(replicas=1, models=[TINY])
    await poll(lambda: product.ready(replicas=1), timeout=90)
    (pod,) = await product.pods()
    token = await product.token("management")
    address = f"{pod['status']['podIP']}:{MANAGEMENT_PORT}"

    (pid,) = pids_of(pod)
    os.kill(pid, signal.SIGKILL)

    async def take_the_address() -> ForeignServer | None:
        # Free the moment the process is gone; the kubelet's restart comes later and then cannot bind.
        try:
            return await start_foreign_server(address, ClaimsPod(STRANGER_UID))
        except RuntimeError:
            return None

    stranger: ForeignServer = await poll(take_the_address, timeout=10)
    try:
        # Several passes (resync every 0.5 s) talk to it; from its side: who-are-you questions only.
        await poll(lambda: len(stranger.recording.calls) >= 3, timeout=30)
        assert not stranger.recording.saw_credentials(token)
        assert set(stranger.recording.methods()) == {"Check"}

        async def reported_unverified() -> bool:
            degraded = await product.condition("Degraded")
            entries = (await product.md())["status"].get("pods") or []
            return (
                degraded.get("reason") == "PodUnverified"
                and STRANGER_UID in degraded.get("message", "")
                and any("POD_IDENTITY_MISMATCH" in entry.get("lastError", "") for entry in entries)
            )

        await poll(reported_unverified, timeout=30)
        assert (await product.pods())[0]["metadata"]["uid"] == pod["metadata"]["uid"]  # the view never changed
    finally:
        await stranger.stop()
    assert not stranger.recording.saw_credentials(token)

    # The stranger leaves: the kubelet's next restart binds, answers the pod's own UID, and converges.
    await poll(lambda: product.ready(replicas=1), timeout=120)
    assert (await product.condition("Degraded")).get("reason") != "PodUnverified"
