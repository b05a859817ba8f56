"""The TEST-NET address the API server's node proxy accepts: bindable here, never routed out."""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess

import pytest

from hil.cluster.node_address import TEST_NET, NodeAddress, NodeAddressUnavailable


@pytest.fixture
def address() -> NodeAddress:
    try:
        return NodeAddress.create()
    except NodeAddressUnavailable as exc:
        pytest.skip(f"cannot make a test address here: {exc}")


def _links() -> str:
    return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout


def test_the_address_is_global_unicast_local_and_removed(address: NodeAddress) -> None:
    ip = ipaddress.ip_address(address.ip)
    assert ip in TEST_NET
    # What the API server's node proxy requires (Go's IP.IsGlobalUnicast).
    assert not (ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified)
    with socket.socket() as server:
        server.bind((address.ip, 0))
        server.listen(1)
        with socket.create_connection(server.getsockname(), timeout=5):
            pass
    route = subprocess.run(
        ["ip", "route", "get", address.ip], capture_output=True, text=True, check=True
    ).stdout
    assert route.startswith("local "), route  # delivered on this machine, never sent out
    address.remove()
    assert address.interface not in _links()


def test_interfaces_of_dead_processes_are_removed(address: NodeAddress) -> None:
    # A pid that does not exist: an interface a SIGKILLed session left behind.
    dead = max(int(p) for p in os.listdir("/proc") if p.isdigit()) + 100_000
    stale = f"wlk{dead}n0"
    subprocess.run(
        ["ip", "link", "add", stale, "type", "veth", "peer", "name", f"{stale}p"], check=True
    )
    address.remove()
    again = NodeAddress.create()
    try:
        assert stale not in _links()
    finally:
        again.remove()


def test_two_addresses_of_one_process_are_independent(address: NodeAddress) -> None:
    # The session-wide address of the e2e tests and this module's own live in one process:
    # making and removing one must leave the other alone.
    other = NodeAddress.create()
    try:
        assert other.interface != address.interface and other.ip != address.ip
        other.remove()
        assert address.interface in _links()
    finally:
        other.remove()
