"""Loopback addresses for pods and Services: each gets its own 127.x.y.z, as each pod gets an IP.

The kubelet (pods) and the service proxy (Services) allocate from separate pools; an address is
reused only after release (pod deleted). All of 127.0.0.0/8 reaches the loopback interface on Linux,
so binding needs no setup. Must not bind anything itself beyond a probe that closes at once.

Two fleets on one machine must never hand out the same address, yet a free-port check at allocation
is not enough: the pod's server binds seconds later. So every address in use is also reserved
machine-wide by an flock on `/tmp/modelfleet-local-addresses/<address>.lock`, held by the fleet's
process for as long as the address is in use. The kernel drops the lock when that process ends (even
on SIGKILL), so a crashed fleet leaves nothing to clean up; the fd is not inherited by pods.
"""

from __future__ import annotations

import errno
import fcntl
import ipaddress
import logging
import os
import socket
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)

RESERVATIONS_DIR = Path("/tmp/modelfleet-local-addresses")
"""Machine-wide, not $TMPDIR: every fleet of every user must see the same folder."""


def can_bind(address: str, port: int) -> bool:
    """Whether address:port is free now (another fleet or program on this machine may hold it).

    Without SO_REUSEPORT on purpose: a gRPC server listening with it (grpc's default) would
    otherwise share its port with the probe, and with a second server."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind: TIME_WAIT is no conflict
        try:
            sock.bind((address, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


class Reservations:
    """Machine-wide claims on addresses: one flock'ed file per address (see the module docstring)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._held: dict[str, int] = {}
        self._usable = True

    def _prepare(self) -> bool:
        if not self._usable:
            return False
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            if self.folder.stat().st_uid == os.getuid():
                self.folder.chmod(0o1777)  # like /tmp: every user's fleet reserves here
        except OSError as exc:
            log.warning(
                "cannot reserve addresses machine-wide in %s (%s): another fleet on this machine "
                "may pick the same addresses",
                self.folder,
                exc,
            )
            self._usable = False
        return self._usable

    def claim(self, address: str) -> bool:
        """Reserve `address` for this process; False when another process (or pool) holds it."""
        if address in self._held:
            return False
        if not self._prepare():
            return True  # no machine-wide reservations possible: the bind check alone decides
        path = self.folder / f"{address}.lock"
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)  # read-only is enough for flock
        except PermissionError:
            return False  # another user's file that we cannot open: treat as theirs
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._held[address] = fd
        return True

    def release(self, address: str) -> None:
        fd = self._held.pop(address, None)
        if fd is not None:
            os.close(fd)  # closing the only fd of the open file description drops the flock

    def release_all(self) -> None:
        for address in list(self._held):
            self.release(address)


class AddressPool:
    """Allocate addresses from `first` upward within `network`, lowest free first.

    An address reserved by another fleet (see the module docstring), or whose wanted ports something
    else on this machine already listens on (a test server), is skipped.
    """

    def __init__(self, network: str, *, first: str, reservations: Path | None = RESERVATIONS_DIR) -> None:
        self._network = ipaddress.ip_network(network)
        self._first = int(ipaddress.ip_address(first))
        self._last = int(self._network.broadcast_address) - 1
        self._used: set[int] = set()
        self._reservations = None if reservations is None else Reservations(reservations)

    def allocate(self, ports: Iterable[int] = ()) -> str:
        wanted = sorted(set(ports))
        for candidate in range(self._first, self._last + 1):
            # Skip x.y.z.0 and x.y.z.255: valid on loopback, but they confuse people reading logs.
            if candidate in self._used or candidate % 256 in (0, 255):
                continue
            address = str(ipaddress.ip_address(candidate))
            if self._reservations is not None and not self._reservations.claim(address):
                continue
            if all(can_bind(address, port) for port in wanted):
                self._used.add(candidate)
                return address
            if self._reservations is not None:
                self._reservations.release(address)
        raise RuntimeError(f"no free address left in {self._network}")

    def release(self, address: str) -> None:
        self._used.discard(int(ipaddress.ip_address(address)))
        if self._reservations is not None:
            self._reservations.release(address)

    def close(self) -> None:
        """Give every reservation back (the fleet is going away)."""
        self._used.clear()
        if self._reservations is not None:
            self._reservations.release_all()


def pod_pool(*, reservations: Path | None = RESERVATIONS_DIR) -> AddressPool:
    """127.0.0.2, 127.0.0.3, ... (127.0.0.1 is the API server's and the host's)."""
    return AddressPool("127.0.0.0/16", first="127.0.0.2", reservations=reservations)


def service_pool(*, reservations: Path | None = RESERVATIONS_DIR) -> AddressPool:
    """127.100.0.1, ...: Service cluster IPs, visibly apart from pods' (65,000 of them)."""
    return AddressPool("127.100.0.0/16", first="127.100.0.1", reservations=reservations)
