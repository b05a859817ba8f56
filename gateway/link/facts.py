"""What the device says about itself, as the session reports it: its facts from the handshake
and its load from heartbeat answers. Pure: the caller passes the clock reading."""

from __future__ import annotations

import firmware_protocol as wire
from gateway.link.events import DeviceFacts, DeviceLoad, TaskLoadFigures


def device_facts(
    hello: wire.Hello, welcome: wire.Welcome, transport: str, port: str
) -> DeviceFacts:
    """Who the device is (its HELLO), the terms agreed (our WELCOME), and where it was reached
    (`transport`: "serial", "usb"...; `port`: e.g. /dev/pts/7)."""
    return DeviceFacts(
        device_id=hello.device_id,
        boot_id=hello.boot_id,
        firmware_name=hello.firmware_name,
        firmware_version=hello.firmware_version,
        apps=hello.apps,
        task_slots=hello.task_slots,
        memory_bytes=hello.memory_total,
        arch=hello.arch,
        max_frame=hello.max_frame,
        window=hello.window,
        protocol_version=welcome.version,
        session_id=welcome.session_id,
        transport=transport,
        port=port,
        vendor=hello.vendor,
        product=hello.product,
        serial=hello.serial,
    )


def device_load(previous: DeviceLoad | None, load: wire.Load, now_ns: int) -> DeviceLoad:
    """The device's load report received at `now_ns` (wall clock). CPU time is integrated from
    the reported rate: the previous report's rate over the time since it."""
    core_ns = previous.cpu_core_ns if previous else 0
    if previous is not None:
        core_ns += previous.cpu_millicores * (now_ns - previous.sampled_ns) // 1000
    return DeviceLoad(
        sampled_ns=now_ns,
        memory_bytes=load.mem_used,
        cpu_millicores=load.cpu_permille,
        cpu_core_ns=core_ns,
        tasks={t.task_id: TaskLoadFigures(t.cpu_permille, t.mem_used) for t in load.tasks},
    )
