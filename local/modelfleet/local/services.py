"""The local kube-proxy: each Service with a selector listens on its cluster IP and forwards to ready pods.

In the local fleet the API hands Services loopback cluster IPs (127.100.x.y), so `spec.clusterIP:port`
is a real address here. Every new TCP connection goes to the next ready endpoint (round-robin over
pods that match the selector, are Ready and not terminating), to `targetPort` (a number or a named
container port), as kube-proxy's per-connection balancing does; with no ready endpoint the connection
is closed at once. Headless Services (clusterIP None) and Services without a selector get no listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from modelfleet.local import podstatus
from modelfleet.local.apitypes import JSON
from modelfleet.local.localclient import LocalClient
from modelfleet.local.probes import resolve_port
from modelfleet.local.selectors import selector_object_matches

log = logging.getLogger(__name__)
RETRY_S = 2.0


@dataclass
class _Listener:
    key: tuple[str, str]
    address: str
    port: JSON
    server: asyncio.Server
    turn: itertools.count[int] = field(default_factory=itertools.count)


def ready_endpoints(pods: list[JSON], selector: dict[str, str]) -> list[JSON]:
    return [
        pod
        for pod in pods
        if selector_object_matches({"matchLabels": selector}, pod["metadata"].get("labels") or {})
        and podstatus.is_ready(pod)
        and not podstatus.is_terminating(pod)
        and (pod.get("status") or {}).get("podIP")
    ]


def _target(pod: JSON, port: JSON) -> int | None:
    target = port.get("targetPort", port["port"])
    for container in (pod.get("spec") or {}).get("containers") or []:
        try:
            return resolve_port(target, container)
        except ValueError:
            continue
    return None


class ServiceProxy:
    def __init__(self, client: LocalClient) -> None:
        self.client = client
        self.services = client.type("", "services")
        self.pods = client.type("", "pods")
        self._listeners: dict[tuple[str, str], list[_Listener]] = {}
        self._signatures: dict[tuple[str, str], tuple[str, str]] = {}
        self._connections: set[asyncio.Task[None]] = set()
        self._failed: set[tuple[str, str]] = set()

    def addresses(self) -> dict[tuple[str, str], list[str]]:
        """(namespace, service) -> ["ip:port", ...] of the running listeners."""
        return {
            key: [f"{item.address}:{item.port['port']}" for item in items] for key, items in self._listeners.items()
        }

    async def _retry_failed(self) -> None:
        """Ports that could not be bound (held by another program for a while) are tried again."""
        while True:
            await asyncio.sleep(RETRY_S)
            for key in list(self._failed):
                service = self.client.get(self.services, *key)
                self._failed.discard(key)
                self._signatures.pop(key, None)
                if service is not None:
                    await self._sync(key, service)

    async def run(self) -> None:
        watch = self.client.watch(self.services)
        retry = asyncio.create_task(self._retry_failed())
        try:
            async for event in watch:
                service = event["object"]
                key = (service["metadata"]["namespace"], service["metadata"]["name"])
                if event["type"] == "DELETED":
                    await self._close(key)
                else:
                    await self._sync(key, service)
        finally:
            retry.cancel()
            watch.close()
            await self.stop()

    async def _sync(self, key: tuple[str, str], service: JSON) -> None:
        spec = service.get("spec") or {}
        signature = (repr(spec.get("ports")), repr((spec.get("clusterIP"), spec.get("selector"))))
        if self._signatures.get(key) == signature:
            return
        await self._close(key)
        self._signatures[key] = signature
        address = spec.get("clusterIP")
        if not spec.get("selector") or not address or address == "None" or not address.startswith("127."):
            return
        listeners = []
        for port in spec.get("ports") or []:
            if port.get("protocol", "TCP") != "TCP":
                continue
            try:
                server = await asyncio.start_server(self._acceptor(key, port), host=address, port=int(port["port"]))
            except OSError as exc:
                log.warning("service %s/%s: cannot listen on %s:%s (retrying): %s", *key, address, port["port"], exc)
                self._failed.add(key)
                continue
            listeners.append(_Listener(key, address, port, server))
        self._listeners[key] = listeners
        if listeners:
            log.info("service %s/%s listens on %s", *key, ", ".join(self.addresses()[key]))

    async def _close(self, key: tuple[str, str]) -> None:
        self._signatures.pop(key, None)
        for listener in self._listeners.pop(key, []):
            listener.server.close()
            await listener.server.wait_closed()

    def _acceptor(
        self, key: tuple[str, str], port: JSON
    ) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], None]:
        return lambda reader, writer: self._accept(reader, writer, key, port)

    def _accept(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: tuple[str, str], port: JSON
    ) -> None:
        task = asyncio.create_task(self._forward(reader, writer, key, port))
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)

    async def _forward(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: tuple[str, str], port: JSON
    ) -> None:
        namespace, name = key
        service = self.client.get(self.services, namespace, name)
        listener = next((item for item in self._listeners.get(key, []) if item.port is port), None)
        selector = ((service or {}).get("spec") or {}).get("selector") or {}
        endpoints = ready_endpoints(self.client.list(self.pods, namespace), selector) if service else []
        upstream_writer = None
        try:
            if not endpoints or listener is None:
                return
            pod = endpoints[next(listener.turn) % len(endpoints)]
            target = _target(pod, port)
            if target is None:
                return
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection(pod["status"]["podIP"], target)
            except OSError:
                return
            await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
        finally:
            for stream in (writer, upstream_writer):
                if stream is not None:
                    stream.close()
                    with contextlib.suppress(OSError, asyncio.CancelledError):
                        await stream.wait_closed()

    async def stop(self) -> None:
        for key in list(self._listeners):
            await self._close(key)
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()
