"""Hardware-in-the-loop: the same checks against a real board instead of the emulator.

Set WIRELET_HIL_PORT to the board's tty (e.g. /dev/wirelet/E6614C31-if00 or /dev/ttyACM0) and run
`pytest -m hil`. Without it every test here is skipped with that hint.
"""

from __future__ import annotations

import os

import pytest

HIL_PORT_ENV = "WIRELET_HIL_PORT"


@pytest.fixture
def board_port() -> str:
    port = os.environ.get(HIL_PORT_ENV)
    if not port:
        pytest.skip(
            f"no real board: set {HIL_PORT_ENV}=/dev/ttyACM0 (a tty running wirelet firmware; "
            "to flash one see hil/qemu/README.md)"
        )
    if not os.path.exists(port):
        pytest.skip(f"{HIL_PORT_ENV}={port}: no such device (board unplugged?)")
    return port
