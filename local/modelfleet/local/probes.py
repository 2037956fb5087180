"""One execution of a container probe (grpc, tcpSocket, httpGet, exec), as the kubelet runs them.

The kubelet (kubelet.py) schedules probes with their periods and thresholds and calls probe_once().
grpc probes call grpc.health.v1 Health/Check with the probe's `service` on podIP:port (plaintext, a new
channel per probe, as the kubelet does) and succeed only on SERVING; tcpSocket connects; httpGet
expects a status from 200 to 399; exec runs the command (with the container's environment and path
mapping) and expects exit code 0. Every probe is bounded by its timeoutSeconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Callable
from typing import Any

import aiohttp
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from modelfleet.local.apitypes import JSON
from modelfleet.local.containers import ProcessSpec


def resolve_port(port: Any, container: JSON) -> int:
    """A probe or Service target port: a number, or the name of one of the container's ports."""
    if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
        return int(port)
    for item in container.get("ports") or []:
        if item.get("name") == port:
            return int(item["containerPort"])
    raise ValueError(f"container has no port named {port!r}")


async def _grpc(address: str, service: str, timeout: float) -> tuple[bool, str]:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            return False, f"grpc: {exc.code().name}: {exc.details()}"
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return reply.status == health_pb2.HealthCheckResponse.SERVING, f"grpc: {status}"


async def _tcp(host: str, port: int, timeout: float) -> tuple[bool, str]:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError) as exc:
        return False, f"tcp: {exc}"
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True, "tcp: connected"


async def _http(url: str, headers: dict[str, str], timeout: float) -> tuple[bool, str]:
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.get(url, headers=headers, allow_redirects=False) as response,
        ):
            return 200 <= response.status < 400, f"http: {response.status}"
    except (aiohttp.ClientError, TimeoutError) as exc:
        return False, f"http: {exc}"


async def _exec(spec: ProcessSpec, timeout: float) -> tuple[bool, str]:
    process = await asyncio.create_subprocess_exec(
        *spec.argv,
        env=dict(spec.env),
        cwd=spec.cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        return False, "exec: timed out"
    return process.returncode == 0, f"exec: exit {process.returncode}: {output.decode(errors='replace')[-200:]}"


async def probe_once(
    probe: JSON, *, pod_ip: str, container: JSON, exec_spec: Callable[[list[str]], ProcessSpec]
) -> tuple[bool, str]:
    """Run the probe once; (succeeded, a short message for events and logs)."""
    timeout = float(probe.get("timeoutSeconds", 1))
    try:
        if "grpc" in probe:
            port = resolve_port(probe["grpc"]["port"], container)
            return await _grpc(f"{pod_ip}:{port}", probe["grpc"].get("service") or "", timeout)
        if "tcpSocket" in probe:
            socket = probe["tcpSocket"]
            return await _tcp(socket.get("host") or pod_ip, resolve_port(socket["port"], container), timeout)
        if "httpGet" in probe:
            http = probe["httpGet"]
            scheme = str(http.get("scheme", "HTTP")).lower()
            host, port = http.get("host") or pod_ip, resolve_port(http["port"], container)
            url = f"{scheme}://{host}:{port}{http.get('path', '/')}"
            headers = {h["name"]: h["value"] for h in http.get("httpHeaders") or []}
            return await _http(url, headers, timeout)
        if "exec" in probe:
            return await _exec(exec_spec(list(probe["exec"].get("command") or [])), timeout)
    except ValueError as exc:
        return False, str(exc)
    return False, "probe has no handler"
