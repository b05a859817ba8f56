"""NodeRegistry: one device path per node name, the first to claim it."""

from __future__ import annotations

from gateway.node_registry import NodeRegistry


def test_the_first_path_to_claim_a_name_keeps_it() -> None:
    registry: NodeRegistry[str] = NodeRegistry()
    registry.add("/dev/serial/by-id/usb-emu-0", "node via by-id")
    registry.add("/dev/ttyACM0", "node via tty")
    assert registry.claim("wirelet-emu-0", "/dev/serial/by-id/usb-emu-0") is None
    # The same device reached through a second path: refused, told who has it.
    assert registry.claim("wirelet-emu-0", "/dev/ttyACM0") == "/dev/serial/by-id/usb-emu-0"
    # Claiming again from the owner (a reconnect) is fine.
    assert registry.claim("wirelet-emu-0", "/dev/serial/by-id/usb-emu-0") is None
    assert registry.by_name("wirelet-emu-0") == "node via by-id"


def test_nodes_are_found_by_path_and_by_claimed_name_only() -> None:
    registry: NodeRegistry[str] = NodeRegistry()
    registry.add("/dev/ttyACM0", "node a")
    assert registry.by_name("wirelet-a") is None  # not claimed yet
    registry.claim("wirelet-a", "/dev/ttyACM0")
    assert registry.by_name("wirelet-a") == "node a"
    assert registry.get("/dev/ttyACM0") == "node a"
    assert dict(registry) == {"/dev/ttyACM0": "node a"}
    assert len(registry) == 1
