"""A stranger at a pod's address, for the tests of the operator's pod verification: a real grpc.aio
server that records the method and metadata of every call it receives (known method or not) and
answers grpc.health.v1 Check as some pod (or as no pod at all). The tests read `calls` to tell,
from the server's side, that no management token ever reached it.
On the path through pytest's `pythonpath` (pyproject.toml), as `mf_foreign_server`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from modelfleet.protos import management_pb2, management_pb2_grpc

POD_UID_METADATA = "modelfleet-pod-uid"
"""The server's identity header (the wire contract; written out here, not imported)."""


@dataclass
class Recording(aio.ServerInterceptor):  # type: ignore[misc]
    """Every call the server received, whatever the method: (method, metadata)."""

    calls: list[tuple[str, tuple[tuple[str, Any], ...]]] = field(default_factory=list)

    async def intercept_service(self, continuation: Callable[..., Awaitable[Any]], details: Any) -> Any:
        self.calls.append((details.method, tuple(details.invocation_metadata or ())))
        return await continuation(details)

    def methods(self) -> list[str]:
        return [method.rsplit("/", 1)[-1] for method, _ in self.calls]

    def saw_credentials(self, token: str) -> bool:
        """Any call carried an authorization header or the token anywhere in its metadata."""
        return any(key == "authorization" or token in str(value) for _, md in self.calls for key, value in md)


class ClaimsPod(health_pb2_grpc.HealthServicer):  # type: ignore[misc]
    """Check answers SERVING with `modelfleet-pod-uid: <uid>`, as a ModelFleet server of that pod does."""

    def __init__(self, uid: str) -> None:
        self.uid = uid

    async def Check(self, request: Any, context: aio.ServicerContext) -> Any:
        await context.send_initial_metadata(((POD_UID_METADATA, self.uid),))
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)


def stock_health() -> Any:
    """grpcio-health-checking's own servicer: "" SERVING, nothing said about a pod."""
    return health.aio.HealthServicer()


class NoModels(management_pb2_grpc.ManagementAPIsServiceServicer):  # type: ignore[misc]
    """ListModels answers an empty list (what a token holder would be given); the rest UNIMPLEMENTED."""

    async def ListModels(self, request: Any, context: aio.ServicerContext) -> Any:
        return management_pb2.ManagementResponse(msg=json.dumps({"models": []}))


@dataclass
class ForeignServer:
    server: aio.Server
    recording: Recording
    port: int

    async def stop(self) -> None:
        await self.server.stop(None)


async def start_foreign_server(address: str, health_servicer: Any | None) -> ForeignServer:
    """Listen on `address` (HOST:PORT, port 0 = any) alone (no SO_REUSEPORT sharing); raises RuntimeError
    when the address is taken. `health_servicer` None: no grpc.health.v1 at all."""
    recording = Recording()
    server = aio.server(interceptors=[recording], options=[("grpc.so_reuseport", 0)])
    if health_servicer is not None:
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    management_pb2_grpc.add_ManagementAPIsServiceServicer_to_server(NoModels(), server)
    port = server.add_insecure_port(address)
    await server.start()
    return ForeignServer(server, recording, port)
