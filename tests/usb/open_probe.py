"""Open one USB device through `DevicePort` (as the gateway does) and print the outcome as JSON.

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


async def main(node: str) -> dict[str, str]:
    port = DevicePort("usb:test", node, SerialSettings(), follow_link=False, transport="usb")
    try:
        transport = await port.open()
    except WireletError as exc:
        return {"event": "open", "error": type(exc).__name__, "message": str(exc)}
    description = transport.description
    await transport.close()
    return {"event": "open", "error": "", "message": description}


if __name__ == "__main__":
    result = asyncio.run(main(sys.argv[1]))
    os.write(sys.stdout.fileno(), (json.dumps(result) + "\n").encode())
