"""Leader election on a coordination.k8s.io/v1 Lease (client-go's algorithm), so two replicas are safe.

__main__.py acquires the Lease before it starts kopf and keeps renewing it while kopf runs; when
renewal fails for renew_deadline_s (or another replica holds the Lease) it stops the operator,
which exits so its pod restarts as a follower. A follower takes over once the Lease went
unrenewed for lease_duration_s, measured on its own monotonic clock (no trust in other clocks);
a leader that stops cleanly releases the Lease, so the takeover is then immediate.
kopf's own peering is not used: it needs extra cluster-wide CRDs and only pauses, never fences.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import math
import socket
import time
import uuid
from collections.abc import Callable
from typing import Any

from .kube import Kube, KubeError
from .settings import LeaderSettings

log = logging.getLogger(__name__)


def _micro_time() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def default_identity() -> str:
    return f"{socket.gethostname()}-{uuid.uuid4().hex[:8]}"


class LeaseElector:
    def __init__(self, kube: Kube, settings: LeaderSettings, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.kube = kube
        self.settings = settings
        self.identity = settings.identity or default_identity()
        self._clock = clock
        # The last record seen and when (our clock) it last changed: client-go's observedTime.
        self._observed: tuple[str, str, str] | None = None
        self._observed_at = 0.0
        self._renewed_at = 0.0

    @property
    def _duration_s(self) -> int:
        return max(1, math.ceil(self.settings.lease_duration_s))

    def _spec(self, *, transitions: int, acquired: str | None) -> dict[str, Any]:
        now = _micro_time()
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": self._duration_s,
            "acquireTime": acquired or now,
            "renewTime": now,
            "leaseTransitions": transitions,
        }

    async def try_acquire_or_renew(self) -> bool:
        """One attempt; True when this replica holds the Lease afterwards."""
        ns, name = self.settings.lease_namespace, self.settings.lease_name
        lease = await self.kube.get("Lease", ns, name)
        if lease is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": name, "namespace": ns},
                "spec": self._spec(transitions=0, acquired=None),
            }
            try:
                await self.kube.create(body)
            except KubeError as exc:
                if exc.status == 409:
                    return False
                raise
            self._renewed_at = self._clock()
            return True
        spec = lease.get("spec") or {}
        holder = str(spec.get("holderIdentity") or "")
        record = (holder, str(spec.get("renewTime") or ""), str(lease["metadata"].get("resourceVersion", "")))
        now = self._clock()
        if record != self._observed:
            self._observed, self._observed_at = record, now
        duration = float(spec.get("leaseDurationSeconds") or self._duration_s)
        ours = holder == self.identity
        if not ours and holder and now - self._observed_at < duration:
            return False  # someone else holds a Lease that is still being renewed
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if ours else 1)
        ops = [
            {"op": "test", "path": "/metadata/resourceVersion", "value": lease["metadata"].get("resourceVersion")},
            {
                "op": "add",
                "path": "/spec",
                "value": self._spec(transitions=transitions, acquired=str(spec.get("acquireTime")) if ours else None),
            },
        ]
        try:
            await self.kube.patch_json("Lease", ns, name, ops)
        except KubeError as exc:
            if exc.status in (409, 422):
                return False  # another replica wrote first
            raise
        if not ours:
            log.info("Acquired the Lease %s/%s as %s", ns, name, self.identity)
        self._renewed_at = self._clock()
        return True

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Wait until this replica leads (True) or `stop` is set (False)."""
        log.info(
            "Waiting to lead (Lease %s/%s, identity %s)",
            self.settings.lease_namespace,
            self.settings.lease_name,
            self.identity,
        )
        while not stop.is_set():
            try:
                if await self.try_acquire_or_renew():
                    return True
            except KubeError as exc:
                log.warning("Lease attempt failed: %s", exc)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.renew_interval_s)
        return False

    async def hold(self) -> None:
        """Renew until leadership is lost (returns) or the task is cancelled."""
        while True:
            await asyncio.sleep(self.settings.renew_interval_s)
            try:
                if await self.try_acquire_or_renew():
                    continue
                log.error("Another replica holds the Lease now; stopping")
                return
            except KubeError as exc:
                log.warning("Renewing the Lease failed: %s", exc)
            if self._clock() - self._renewed_at > self.settings.renew_deadline_s:
                log.error("Could not renew the Lease for %.1f s; stopping", self.settings.renew_deadline_s)
                return

    async def release(self) -> None:
        """Give the Lease up (holder cleared), so a follower takes over at once."""
        ns, name = self.settings.lease_namespace, self.settings.lease_name
        try:
            lease = await self.kube.get("Lease", ns, name)
            if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.identity:
                return
            ops = [
                {"op": "test", "path": "/metadata/resourceVersion", "value": lease["metadata"].get("resourceVersion")},
                {"op": "add", "path": "/spec/holderIdentity", "value": ""},
                {"op": "add", "path": "/spec/renewTime", "value": _micro_time()},
                {"op": "add", "path": "/spec/leaseDurationSeconds", "value": 1},
            ]
            await self.kube.patch_json("Lease", ns, name, ops)
            log.info("Released the Lease %s/%s", ns, name)
        except KubeError as exc:
            log.warning("Releasing the Lease failed: %s", exc)
