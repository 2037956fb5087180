"""Pod and Service addresses: each its own loopback address, reused after release, and never one whose
ports something else on this machine already listens on (two fleets side by side do not collide)."""

from __future__ import annotations

import socket

from modelfleet.local.addresses import AddressPool


def test_addresses_are_distinct_and_reused_after_release():
    pool = AddressPool("127.57.0.0/16", first="127.57.0.2")
    first, second = pool.allocate(), pool.allocate()
    assert (first, second) == ("127.57.0.2", "127.57.0.3")
    pool.release(first)
    assert pool.allocate() == first


def test_an_address_whose_port_is_taken_elsewhere_is_skipped():
    pool = AddressPool("127.58.0.0/16", first="127.58.0.2")
    with socket.create_server(("127.58.0.2", 0)) as busy:
        port = busy.getsockname()[1]
        assert pool.allocate([port]) == "127.58.0.3"
