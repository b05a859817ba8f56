"""Open one USB device through `DevicePort` (as the gateway does) and print the outcome as JSON.

    python -m tests.usb.open_probe NODE [OPEN_TIMEOUT_S]   (with a timeout: runs until killed)

Run under hil/emulator/usb_gadget.py by test_usb_umockdev.py; not collected by pytest.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

from gateway.devices.port import DevicePort
from gateway.errors import WireletError
from gateway.transport.serial import SerialSettings


def emit(result: dict[str, str]) -> None:
    os.write(sys.stdout.fileno(), (json.dumps(result) + "\n").encode())


async def main(node: str, timeout_s: float | None) -> None:
    emit(await open_once(node, timeout_s))
    if timeout_s is not None:
        await asyncio.Event().wait()  # keep running: an abandoned open finishes in the background


async def open_once(node: str, timeout_s: float | None) -> dict[str, str]:
    port = DevicePort(
        "usb:test",
        node,
        SerialSettings(),
        follow_link=False,
        transport="usb",
        open_timeout_s=timeout_s or 10.0,
    )
    try:
        transport = await port.open()
    except WireletError as exc:
        return {"event": "open", "error": type(exc).__name__, "message": str(exc)}
    description = transport.description
    await transport.close()
    return {"event": "open", "error": "", "message": description}


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else None))
