"""The virtual-kubelet fleet's ports: each process its own, never one another's."""

from __future__ import annotations

import socket

from bench.vk import distinct_free_ports


def test_fleet_ports_are_distinct_and_free() -> None:
    # 50 nodes x (kubelet API port, metrics port), as at 1000x50.
    ports = distinct_free_ports(100)
    assert len(ports) == len(set(ports)) == 100
    for port in ports[:5]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", port))  # free when handed out
