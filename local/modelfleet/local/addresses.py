"""Loopback addresses for pods and Services: each gets its own 127.x.y.z, as each pod gets an IP.

The kubelet (pods) and the service proxy (Services) allocate from separate pools; an address is
reused only after release (pod deleted). All of 127.0.0.0/8 reaches the loopback interface on Linux,
so binding needs no setup. Must not bind anything itself.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Iterable


def can_bind(address: str, port: int) -> bool:
    """Whether address:port is free now (another fleet or program on this machine may hold it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind: TIME_WAIT is no conflict
        try:
            sock.bind((address, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


class AddressPool:
    """Allocate addresses from `first` upward within `network`, lowest free first.

    An address whose wanted ports something else on this machine already listens on (another local
    fleet, a test server) is skipped, so two fleets side by side do not collide.
    """

    def __init__(self, network: str, *, first: str) -> None:
        self._network = ipaddress.ip_network(network)
        self._first = int(ipaddress.ip_address(first))
        self._last = int(self._network.broadcast_address) - 1
        self._used: set[int] = set()

    def allocate(self, ports: Iterable[int] = ()) -> str:
        wanted = sorted(set(ports))
        for candidate in range(self._first, self._last + 1):
            # Skip x.y.z.0 and x.y.z.255: valid on loopback, but they confuse people reading logs.
            if candidate in self._used or candidate % 256 in (0, 255):
                continue
            address = str(ipaddress.ip_address(candidate))
            if all(can_bind(address, port) for port in wanted):
                self._used.add(candidate)
                return address
        raise RuntimeError(f"no free address left in {self._network}")

    def release(self, address: str) -> None:
        self._used.discard(int(ipaddress.ip_address(address)))


def pod_pool() -> AddressPool:
    """127.0.0.2, 127.0.0.3, ... (127.0.0.1 is the API server's and the host's)."""
    return AddressPool("127.0.0.0/16", first="127.0.0.2")


def service_pool() -> AddressPool:
    """127.100.0.1, ...: Service cluster IPs, visibly apart from pods' (65,000 of them)."""
    return AddressPool("127.100.0.0/16", first="127.100.0.1")
