"""Is the server at a pod's address the pod the operator means? Asked before any token is sent.

A pod IP can pass to another pod (or, on one machine, to another fleet's server) before the
operator's view of the pods catches up, and the management token would go to whoever answers.
The server answers its pod UID (downward API `metadata.uid`, `--pod-uid`) without a token, as the
initial metadata `modelfleet-pod-uid` of grpc.health.v1 Check. PodClient asks for it on the same
channel, with no token, and makes no call that carries the token until the UID equals the one of
the pod object it means; a mismatch or no UID at all makes the pod "unverified" (no retry within
the pass; the next pass asks again). podclient.py calls this module; it does no Kubernetes I/O.

Caching: once per connection. ConnectionWatch follows the channel's connectivity state; any
change (the verified connection broke, a new one is being made) forgets the verification, and a
call is only made while the channel is READY, so a reconnect (possibly to another server at the
same IP) is verified again before the token goes out. Retries inside grpc (transparent retries)
are off on these channels so a call is never replayed on a connection nobody verified.

What is left: the verification and the token call are two calls. If, between them, the verified
connection breaks *and* a new one to another server at the same address is made (which needs a
call to trigger it and a TCP and HTTP/2 handshake) before the event loop has run the watch's
wake-up, the call can still go to the new server. Only a per-pod credential (TLS with the pod's
identity, or a token bound to the pod) closes that; nothing here claims to.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

import grpc
from grpc import aio

from modelfleet.protos import contract

POD_UID_METADATA = contract.POD_UID_METADATA
"""The server's header (server/modelfleet/server/rpc/health.py sends it): the wire contract."""

MISMATCH = "POD_IDENTITY_MISMATCH"
"""The server at the address answered another pod's UID."""
MISSING = "POD_IDENTITY_MISSING"
"""The server at the address answered no UID (not a ModelFleet server, one without --pod-uid, or one
without grpc.health.v1)."""
REASONS = frozenset({MISMATCH, MISSING})

_SHOWN_CHARS = 64
"""The answered value is the other server's text: only this much of it reaches logs and the status."""


def answered_uids(metadata: Iterable[tuple[str, str | bytes]] | None) -> list[str]:
    """Every `modelfleet-pod-uid` value in a call's initial metadata."""
    return [value if isinstance(value, str) else value.decode("ascii", "replace")
            for key, value in metadata or () if key == POD_UID_METADATA]  # fmt: skip


def identity_problem(expected: str, answered: list[str], *, address: str) -> tuple[str, str] | None:
    """(reason, message) when `answered` does not prove the server at `address` is pod `expected`."""
    if not answered:
        return MISSING, f"the server at {address} did not say which pod it is (expected pod uid {expected})"
    if answered != [expected]:
        shown = ", ".join(repr(value[:_SHOWN_CHARS]) for value in answered[:2])
        return MISMATCH, f"the server at {address} is pod uid {shown}, not {expected}: another pod has this address"
    return None


class ConnectionWatch:
    """Remembers that the channel's current connection was verified, until the channel's state changes.

    Start it on the running loop (start()); close() it after the channel.
    """

    def __init__(self, channel: aio.Channel) -> None:
        self._channel = channel
        self._verified = False
        self._task: asyncio.Task[None] | None = None

    @property
    def verified(self) -> bool:
        following = self._task is not None and not self._task.done()  # no watch, no caching
        return self._verified and following and self._channel.get_state() == grpc.ChannelConnectivity.READY

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._follow(), name="pod-connection-watch")

    def forget(self) -> None:
        self._verified = False

    def mark_verified(self) -> None:
        """The Check just answered on this channel proved the identity (only counts while READY)."""
        self._verified = self._channel.get_state() == grpc.ChannelConnectivity.READY

    async def _follow(self) -> None:
        state = self._channel.get_state()
        while state != grpc.ChannelConnectivity.SHUTDOWN:
            await self._channel.wait_for_state_change(state)
            # Every change counts, even one seen late: forgetting too often costs one more Check,
            # keeping a stale verification could send the token to a stranger.
            self._verified = False
            state = self._channel.get_state()

    async def close(self) -> None:
        """Call after closing the channel: its SHUTDOWN ends the watch (cancelling it instead leaves
        grpc's pending watch to complete on a loop that may be closed by then)."""
        self._verified = False
        if self._task is not None:
            # wait_for cancels it if the SHUTDOWN never comes; a failed watch is over all the same.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, timeout=1.0)
            self._task = None
