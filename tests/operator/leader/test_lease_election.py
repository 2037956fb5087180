"""Leader election on a Lease: one holder at a time, takeover after a crash within the lease
duration (measured), immediate takeover after a clean release."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from modelfleet.operator.kube import Kube
from modelfleet.operator.leader import LeaseElector
from modelfleet.operator.settings import LeaderSettings

FAST = dict(
    lease_name="op", lease_namespace="default", lease_duration_s=1.0, renew_interval_s=0.1, renew_deadline_s=0.8
)


def _elector(kube: Kube, identity: str) -> LeaseElector:
    return LeaseElector(kube, LeaderSettings(identity=identity, **FAST))  # type: ignore[arg-type]


async def test_only_one_replica_leads_while_the_leader_renews(kube: Kube) -> None:
    """b's own clock (injected) runs 3 lease durations while a renews; a renewal restarts b's count."""
    now = [0.0]
    a = _elector(kube, "a")
    b = LeaseElector(kube, LeaderSettings(identity="b", **FAST), clock=lambda: now[0])  # type: ignore[arg-type]
    assert await a.try_acquire_or_renew()
    for _ in range(5):
        assert not await b.try_acquire_or_renew()
        now[0] += 0.6 * FAST["lease_duration_s"]  # less than a lease duration between renewals
        assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()
    lease = await kube.get("Lease", "default", "op")
    assert lease["spec"]["holderIdentity"] == "a"
    now[0] += 1.01 * FAST["lease_duration_s"]  # a stops renewing: one full duration later b takes over
    assert await b.try_acquire_or_renew()


async def test_a_crashed_leader_is_replaced_within_the_lease_duration(kube: Kube) -> None:
    a, b = _elector(kube, "a"), _elector(kube, "b")
    assert await a.try_acquire_or_renew()
    holding = asyncio.create_task(a.hold())
    assert not await b.try_acquire_or_renew()
    holding.cancel()  # a dies without releasing
    crashed = time.monotonic()
    assert await asyncio.wait_for(b.acquire(asyncio.Event()), timeout=5)
    took = time.monotonic() - crashed
    assert took <= FAST["lease_duration_s"] + 2 * FAST["renew_interval_s"] + 0.5, took
    lease = await kube.get("Lease", "default", "op")
    assert (lease["spec"]["holderIdentity"], lease["spec"]["leaseTransitions"]) == ("b", 1)


async def test_a_released_lease_is_taken_over_at_once(kube: Kube) -> None:
    a, b = _elector(kube, "a"), _elector(kube, "b")
    assert await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()
    await a.release()
    assert await b.try_acquire_or_renew()


async def test_a_leader_that_lost_the_lease_stops(kube: Kube, poll: Callable[..., Any]) -> None:
    a = _elector(kube, "a")
    assert await a.try_acquire_or_renew()
    holding = asyncio.create_task(a.hold())
    lease = await kube.get("Lease", "default", "op")
    assert lease is not None
    await kube.patch_json(
        "Lease",
        "default",
        "op",
        [
            {"op": "add", "path": "/spec/holderIdentity", "value": "intruder"},
            {"op": "add", "path": "/spec/leaseDurationSeconds", "value": 3600},
        ],
    )
    await poll(holding.done, timeout=5)  # hold() returns: the caller stops the operator
