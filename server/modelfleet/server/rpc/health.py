"""grpc.health.v1.Health (Check, List, Watch) with removable names, NOT_FOUND and a draining switch.

Our own servicer over grpcio-health-checking's messages: its stock one can neither remove a name
nor report NOT_FOUND for one it never knew. The app owns one instance, sets names as models change
and adds it to every server (both API ports and the plaintext health port); it holds no server.
Call its methods from the event loop's thread: watchers are woken with asyncio events.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable

import grpc
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from modelfleet.server.echo import quoted
from modelfleet.server.errors import Reason
from modelfleet.server.rpc.error_details import error_status_trailer

SERVICE_NAME: str = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
"""grpc.health.v1.Health"""

OVERALL_SERVICE = ""
"""The whole server: SERVING once the desired state has loaded and every model is ready (app decides)."""

LIVENESS_SERVICE = "modelfleet.liveness"
"""SERVING while the process runs; never depends on models (NOT_SERVING only while draining)."""

_Response = health_pb2.HealthCheckResponse
MAX_SERVICE_NAME_CHARS = 512
"""Longest service name Watch keeps a key for; the server's own names are far shorter (model and
version names are at most 63 characters each), so a longer unknown name can never become known."""

POD_UID_METADATA = "modelfleet-pod-uid"
"""Initial metadata of every Check answer when the server knows its pod UID (--pod-uid): the
operator reads it, unauthenticated, to be sure who answers at a pod address before it sends the
management token (operator/modelfleet/operator/podclient.py). The UID is no secret (any pod reader sees it)."""

SERVING: int = _Response.SERVING
NOT_SERVING: int = _Response.NOT_SERVING
SERVICE_UNKNOWN: int = _Response.SERVICE_UNKNOWN


# grpc's generated base is untyped (Any to mypy); subclassing it gives the UNIMPLEMENTED defaults.
class HealthServicer(health_pb2_grpc.HealthServicer):  # type: ignore[misc]
    """Serving status per name; starts with "" NOT_SERVING and the liveness name SERVING."""

    def __init__(self, *, pod_uid: str | None = None) -> None:
        self._pod_uid = pod_uid
        self._serving: dict[str, bool] = {OVERALL_SERVICE: False, LIVENESS_SERVICE: True}
        self._draining = False
        self._closed = False
        # One event per open Watch call. A change sets the events of its name's watchers; each
        # Watch then sends the *current* status (coalescing bursts, as grpc-go's server does), so
        # a slow reader never makes memory grow.
        self._watchers: dict[str, set[asyncio.Event]] = {}

    def add_to_server(self, server: aio.Server) -> None:
        health_pb2_grpc.add_HealthServicer_to_server(self, server)

    @property
    def draining(self) -> bool:
        return self._draining

    def status(self, service: str) -> int:
        """The ServingStatus a Watch would send now (SERVICE_UNKNOWN for unknown names)."""
        serving = self._serving.get(service)
        if serving is None:
            return SERVICE_UNKNOWN
        return SERVING if serving and not self._draining else NOT_SERVING

    def names(self) -> frozenset[str]:
        return frozenset(self._serving)

    def set(self, service: str, serving: bool) -> None:
        """Add or update a name (while draining it is recorded but still reported NOT_SERVING)."""
        serving = bool(serving)
        if self._serving.get(service) != serving:
            self._serving[service] = serving
            self._notify((service,))

    def remove(self, service: str) -> None:
        """Forget a name: Check answers NOT_FOUND, Watch sends SERVICE_UNKNOWN."""
        if self._serving.pop(service, None) is not None:
            self._notify((service,))

    def set_all_not_serving(self) -> None:
        """Start draining: every name reports NOT_SERVING from now on, whatever set() says later."""
        if not self._draining:
            self._draining = True
            self._notify(tuple(self._watchers))

    def close(self) -> None:
        """End every Watch stream (status OK) after it has sent the current status.

        Call before server.stop(grace): an open Watch is an in-flight call and would otherwise hold
        the whole grace period. Watch calls that arrive later send one status and end.
        """
        self._closed = True
        self._notify(tuple(self._watchers))

    def _notify(self, services: Iterable[str]) -> None:
        for service in services:
            for event in self._watchers.get(service, ()):
                event.set()

    async def Check(
        self, request: health_pb2.HealthCheckRequest, context: aio.ServicerContext
    ) -> health_pb2.HealthCheckResponse:
        if self._pod_uid:  # first, so that it also comes with a NOT_FOUND
            await context.send_initial_metadata(((POD_UID_METADATA, self._pod_uid),))
        service = request.service
        status = self.status(service)
        if status == SERVICE_UNKNOWN:
            # Unauthenticated callers send names up to the message size: quote a clipped copy only.
            message = f"Unknown health service name: {quoted(service)}"
            trailer = error_status_trailer(
                grpc.StatusCode.NOT_FOUND,
                message,
                reason=Reason.MODEL_NOT_FOUND.value,
                metadata={"service": service},  # clipped by error_status_trailer
            )
            await context.abort(grpc.StatusCode.NOT_FOUND, message, trailing_metadata=trailer)
        return _Response(status=status)

    async def List(
        self, request: health_pb2.HealthListRequest, context: aio.ServicerContext
    ) -> health_pb2.HealthListResponse:
        return health_pb2.HealthListResponse(
            statuses={name: _Response(status=self.status(name)) for name in self._serving}
        )

    async def Watch(
        self, request: health_pb2.HealthCheckRequest, context: aio.ServicerContext
    ) -> AsyncIterator[health_pb2.HealthCheckResponse]:
        service = request.service
        if len(service) > MAX_SERVICE_NAME_CHARS and service not in self._serving:
            # No name this long is ever set: answer once and end rather than hold a megabyte key
            # (and the call) open until the server stops.
            yield _Response(status=SERVICE_UNKNOWN)
            return
        changed = asyncio.Event()
        self._watchers.setdefault(service, set()).add(changed)
        try:
            last: int | None = None
            while True:
                changed.clear()  # before reading: a change made while we write wakes the next wait
                status = self.status(service)
                if status != last:
                    yield _Response(status=status)
                    last = status
                if self._closed:
                    return
                await changed.wait()
        finally:
            # Runs on a normal end, on client cancellation and when server.stop() cancels us.
            watchers = self._watchers.get(service)
            if watchers is not None:
                watchers.discard(changed)
                if not watchers:
                    del self._watchers[service]
