"""Pod and Service addresses: each its own loopback address, reused after release, never one whose
ports something else on this machine already listens on, and never one another fleet holds, even
before its pod's server has bound it (a machine-wide reservation). A pod whose address a foreign
program takes meanwhile moves to a new one before its container starts, with a Warning event."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from pathlib import Path

from modelfleet.local import podstatus
from modelfleet.local.addresses import AddressPool

FLEET_PROCESS = str(Path(__file__).with_name("fleetprocess.py"))


def test_addresses_are_distinct_and_reused_after_release(tmp_path):
    pool = AddressPool("127.57.0.0/16", first="127.57.0.2", reservations=tmp_path)
    first, second = pool.allocate(), pool.allocate()
    assert (first, second) == ("127.57.0.2", "127.57.0.3")
    pool.release(first)
    assert pool.allocate() == first


def test_an_address_whose_port_is_taken_elsewhere_is_skipped(tmp_path):
    pool = AddressPool("127.58.0.0/16", first="127.58.0.2", reservations=tmp_path)
    with socket.create_server(("127.58.0.2", 0)) as busy:
        port = busy.getsockname()[1]
        assert pool.allocate([port]) == "127.58.0.3"


def test_an_address_another_pool_reserved_is_skipped_until_released(tmp_path):
    """Nothing listens yet (the pod's server binds later): only the reservation keeps them apart."""
    mine, theirs = (AddressPool("127.59.0.0/16", first="127.59.0.2", reservations=tmp_path) for _ in range(2))
    assert mine.allocate([7070]) == "127.59.0.2"
    assert theirs.allocate([7070]) == "127.59.0.3"
    mine.close()
    assert theirs.allocate([7070]) == "127.59.0.2"


async def _start_fleet(state: Path, pods: int) -> tuple[asyncio.subprocess.Process, list[str]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        FLEET_PROCESS,
        str(state),
        str(pods),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 60)
    try:
        return process, json.loads(line)["pods"]
    except (ValueError, KeyError):
        rest = await asyncio.wait_for(process.stdout.read(), 10)
        raise AssertionError(f"the fleet process said {line!r}{rest.decode(errors='replace')}") from None


async def _stop_fleet(process: asyncio.subprocess.Process) -> int:
    assert process.stdin is not None
    process.stdin.close()
    return await asyncio.wait_for(process.wait(), 30)


async def test_two_fleets_side_by_side_never_share_a_pod_address(tmp_path):
    first, first_ips = await _start_fleet(tmp_path / "a", 3)
    try:
        second, second_ips = await _start_fleet(tmp_path / "b", 3)
        try:
            assert len(set(first_ips)) == len(set(second_ips)) == 3
            assert not set(first_ips) & set(second_ips), (first_ips, second_ips)
        finally:
            assert await _stop_fleet(second) == 0
    finally:
        assert await _stop_fleet(first) == 0


async def test_a_pod_whose_address_a_foreign_program_took_moves_with_a_warning_event(fleet, podserver_container, wait):
    """The race of the issue: the address was free when chosen, then something else listens on a port
    the pod's server needs before the server starts. The pod must not crash-loop on it forever."""
    pool = fleet.kubelet.addresses
    squatters: list[socket.socket] = []
    allocate = pool.allocate

    def allocate_then_lose_it(ports=()):
        address = allocate(ports)
        if not squatters:
            squatters.append(socket.create_server((address, 9100)))  # the podserver's whoami port
        return address

    pool.allocate = allocate_then_lose_it  # type: ignore[method-assign]
    try:
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web-0", "namespace": "default"},
            "spec": {"terminationGracePeriodSeconds": 2, "containers": [podserver_container()]},
        }
        fleet.client.create(fleet.client.type("", "pods"), "default", body)
        pods = fleet.client.type("", "pods")
        pod = await wait(
            lambda: (p := fleet.client.get(pods, "default", "web-0")) and podstatus.is_ready(p) and p,
            what="the pod Ready at a new address",
            timeout=60,
        )
        taken = squatters[0].getsockname()[0]
        assert pod["status"]["podIP"] != taken
        assert pod["status"]["containerStatuses"][0]["restartCount"] == 0
        events = [
            e
            for e in fleet.client.list(fleet.client.type("", "events"), "default")
            if e["involvedObject"]["name"] == "web-0"
        ]
        assert [(e["type"], e["reason"]) for e in events] == [("Warning", "AddressInUse")]
        assert events[0]["message"] == (
            f"{taken}:9100 is in use by another program on this machine; the pod moved to {pod['status']['podIP']}"
        )
    finally:
        for squatter in squatters:
            squatter.close()
