"""Build the C device library for the host and bind it with ctypes.

`build()` runs `make` in firmware_protocol/c (once per session and goal list) and returns the build
directory; `Library` wraps the conformance helpers of libwirelet_host.so and `CDevice` drives a
real `wirelet_device` with a fake clock, shaped like a `firmware_protocol.Link` so the protocol
simulator (tests/protocol/simnet.py) can run it against the Python gateway.
"""

from __future__ import annotations

import ctypes
import functools
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firmware_protocol import Event

C_DIR = Path(__file__).resolve().parents[2] / "firmware_protocol" / "c"
BUILD_DIR = C_DIR / "build"


def compiler() -> str | None:
    """The C compiler make will use, or None when there is none (the tests then skip)."""
    return shutil.which(os.environ.get("CC", "cc"))


@functools.cache
def build(*targets: str) -> Path:
    """Build Makefile targets of firmware_protocol/c (default: the strict C, C++ and small-profile
    compiles, the host library and wirelet-hostdev); return the build dir."""
    goals = targets or ("lib", "cxx", "small", "host", "hostdev")
    result = subprocess.run(
        ["make", "-C", str(C_DIR), "-s", *goals], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"building firmware_protocol/c failed:\n{result.stdout}{result.stderr}")
    return BUILD_DIR


_u8p = ctypes.POINTER(ctypes.c_uint8)


class Library:
    """The conformance helpers (firmware_protocol/c/test/wl_test.c)."""

    def __init__(self, path: Path) -> None:
        self.lib = lib = ctypes.CDLL(str(path))
        lib.wlt_crc32.restype = ctypes.c_uint32
        lib.wlt_crc32.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        lib.wlt_decode_stream.restype = ctypes.c_int
        lib.wlt_decode_stream.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_size_t,
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.POINTER(ctypes.c_uint32),
        ]
        lib.wlt_frame_wire.restype = ctypes.c_size_t
        lib.wlt_frame_wire.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_char_p,
            ctypes.c_size_t,
        ]
        lib.wlt_decode_json.restype = ctypes.c_int
        lib.wlt_decode_json.argtypes = [
            ctypes.c_uint8,
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.POINTER(ctypes.c_int),
            ctypes.c_char_p,
            ctypes.c_size_t,
        ]
        lib.wlt_reencode.restype = ctypes.c_int
        lib.wlt_reencode.argtypes = [
            ctypes.c_uint8,
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_char_p,
            ctypes.c_size_t,
        ]
        lib.wlt_task_list_page.restype = ctypes.c_int
        lib.wlt_request_id_of.restype = ctypes.c_uint32
        lib.wlt_request_id_of.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        lib.wlt_sizeof_device.restype = ctypes.c_size_t
        lib.wlt_dev_create.restype = ctypes.c_void_p
        lib.wlt_dev_create.argtypes = [
            ctypes.POINTER(ctypes.c_char_p),
            ctypes.c_uint32,
            ctypes.c_char_p,
            ctypes.c_uint32,
            ctypes.c_int,
            ctypes.POINTER(ctypes.c_uint32),
            ctypes.c_uint32,
        ]
        for name in ("free", "poll", "restart_link", "reboot"):
            getattr(lib, f"wlt_dev_{name}").argtypes = [ctypes.c_void_p]
            getattr(lib, f"wlt_dev_{name}").restype = None
        lib.wlt_dev_out_len.argtypes = [ctypes.c_void_p]
        lib.wlt_dev_out_len.restype = ctypes.c_size_t
        for name in ("idle", "boot_id", "reboots", "pending", "inflight", "rto"):
            getattr(lib, f"wlt_dev_{name}").argtypes = [ctypes.c_void_p]
            getattr(lib, f"wlt_dev_{name}").restype = ctypes.c_uint32
        lib.wlt_dev_is_up.argtypes = [ctypes.c_void_p]
        lib.wlt_dev_is_up.restype = ctypes.c_int
        lib.wlt_dev_set_time.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
        lib.wlt_dev_set_time.restype = None
        lib.wlt_dev_feed.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
        lib.wlt_dev_feed.restype = None
        lib.wlt_dev_take.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
        lib.wlt_dev_take.restype = ctypes.c_size_t
        lib.wlt_dev_rec.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
        lib.wlt_dev_rec.restype = ctypes.c_size_t
        lib.wlt_dev_log.argtypes = [ctypes.c_void_p, ctypes.c_uint8, ctypes.c_char_p]
        lib.wlt_dev_log.restype = ctypes.c_int
        lib.wlt_dev_stats.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint32)]
        lib.wlt_dev_stats.restype = None

    def crc32(self, data: bytes) -> int:
        return int(self.lib.wlt_crc32(data, len(data)))

    def decode_stream(self, wire: bytes, max_frame: int) -> tuple[list[bytes], dict[str, int]]:
        out = ctypes.create_string_buffer(len(wire) + 64)
        counters = (ctypes.c_uint32 * 5)()
        count = self.lib.wlt_decode_stream(wire, len(wire), max_frame, out, len(out), counters)
        assert count >= 0
        frames, pos, raw = [], 0, out.raw
        for _ in range(count):
            size = raw[pos] | raw[pos + 1] << 8
            frames.append(raw[pos + 2 : pos + 2 + size])
            pos += 2 + size
        names = ("frames", "bad_cobs", "too_short", "oversize", "bad_crc")
        return frames, dict(zip(names, counters, strict=True))

    def frame_wire(self, frame_without_crc: bytes) -> bytes:
        out = ctypes.create_string_buffer(len(frame_without_crc) * 2 + 16)
        n = self.lib.wlt_frame_wire(frame_without_crc, len(frame_without_crc), out, len(out))
        return out.raw[:n]

    def decode(self, msg_type: int, payload: bytes) -> DecodeResult:
        out = ctypes.create_string_buffer(65536)
        code = ctypes.c_int(0)
        field = ctypes.create_string_buffer(64)
        rc = self.lib.wlt_decode_json(
            msg_type, payload, len(payload), out, len(out), ctypes.byref(code), field, len(field)
        )
        assert rc in (0, -1), f"decode_json failed internally: {rc}"
        text = out.value.decode()
        if rc == 0:
            return DecodeResult(json=text, code=0, field="", text="")
        return DecodeResult(json="", code=code.value, field=field.value.decode(), text=text)

    def reencode(self, msg_type: int, payload: bytes) -> bytes | None:
        out = ctypes.create_string_buffer(8192)
        n = self.lib.wlt_reencode(msg_type, payload, len(payload), out, len(out))
        if n == -2:
            return None
        assert n >= 0, f"reencode failed: {n}"
        return out.raw[:n]

    def task_list_page(
        self, request_id: int, cursor: int, max_frame: int, table: list[dict[str, Any] | None]
    ) -> bytes:
        """The TASK_LIST payload the device's paging builds over `table` (paging.json form)."""
        n = len(table)

        def column(kind: Any, key: str, default: Any) -> Any:
            return (kind * n)(*(e[key] if e is not None and e[key] is not None else default
                                for e in table))  # fmt: skip

        ids = (ctypes.c_char_p * n)(*(e["task_id"].encode() if e else None for e in table))
        apps = (ctypes.c_char_p * n)(*(e["app"].encode() if e else None for e in table))
        out = ctypes.create_string_buffer(8192)
        size = self.lib.wlt_task_list_page(
            request_id,
            cursor,
            max_frame,
            n,
            ids,
            apps,
            column(ctypes.c_uint8, "running", 0),
            column(ctypes.c_int64, "exit_code", 0),
            column(ctypes.c_uint64, "stdout_end", 0),
            column(ctypes.c_uint64, "stderr_end", 0),
            out,
            len(out),
        )
        assert size >= 0, "the page does not fit"
        return out.raw[:size]

    def request_id_of(self, payload: bytes) -> int:
        return int(self.lib.wlt_request_id_of(payload, len(payload)))

    @property
    def sizeof_device(self) -> int:
        return int(self.lib.wlt_sizeof_device())


@dataclass(frozen=True)
class DecodeResult:
    json: str
    code: int
    field: str
    text: str


@dataclass(frozen=True)
class Identity:
    device_id: str = "c-dev-1"
    firmware_name: str = "wirelet-c-test"
    firmware_version: str = "1.0"
    arch: str | None = "host"
    vendor: str | None = None
    product: str | None = None
    serial: str | None = None
    memory_total: int = 32768


@dataclass(frozen=True)
class Timers:
    """Milliseconds; 0 takes the library's default (PROTOCOL.md section 13)."""

    rto_initial: int = 0
    rto_min: int = 0
    rto_max: int = 0
    hello_interval: int = 0
    heartbeat: int = 0
    link_lost: int = 0
    #: Not a timer: wirelet_set_output_frame_max() (bytes, 0 = the gateway's max_frame).
    output_frame_max: int = 0
    #: Not a timer: config.line_bytes_per_s (0 = unknown: timers run from queueing).
    line_rate: int = 0


STAT_NAMES = (
    "frames_sent",
    "frames_received",
    "retransmits",
    "duplicates",
    "out_of_order",
    "bad_cobs",
    "too_short",
    "oversize",
    "bad_crc",
    "rejected",
    "deferred",
    "link_losses",
    "handshakes",
    "peer_resets",
)


class CDevice:
    """A `wirelet_device` in the harness, with the interface `simnet.Simulation` drives.

    Time is the simulator's (seconds, float) turned into the device's milliseconds. Events are
    not reported (the C library has none): tests look at what the gateway receives and at the
    device's apps and counters."""

    def __init__(
        self,
        library: Library,
        *,
        apps: str = "rec,lines,blink",
        boot_id: int = 0x1A2B3C4D,
        identity: Identity = Identity(),
        timers: Timers = Timers(),
        exec_kind: int = 1,
        now: float = 0.0,
    ) -> None:
        self._lib = library.lib
        strings = (
            identity.device_id,
            identity.firmware_name,
            identity.firmware_version,
            identity.arch,
            identity.vendor,
            identity.product,
            identity.serial,
        )
        ident = (ctypes.c_char_p * 7)(*(s.encode() if s is not None else None for s in strings))
        t = (ctypes.c_uint32 * 8)(
            timers.rto_initial,
            timers.rto_min,
            timers.rto_max,
            timers.hello_interval,
            timers.heartbeat,
            timers.link_lost,
            timers.output_frame_max,
            timers.line_rate,
        )
        handle = self._lib.wlt_dev_create(
            ident, identity.memory_total, apps.encode(), boot_id, exec_kind, t, self._ms(now)
        )
        if not handle:
            raise ValueError(f"cannot create a C device with apps {apps!r}")
        self._h = ctypes.c_void_p(handle)
        self._now_ms = self._ms(now)

    @staticmethod
    def _ms(now: float) -> int:
        return round(now * 1000) & 0xFFFFFFFF

    def close(self) -> None:
        if self._h:
            self._lib.wlt_dev_free(self._h)
            self._h = ctypes.c_void_p(0)

    def __del__(self) -> None:
        self.close()

    # --- the Link-shaped interface of simnet.Simulation ----------------------------------

    def start(self, now: float) -> list[Event]:
        self.set_time(now)
        return []

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        self.feed(data, now)
        return []

    def on_timer(self, now: float) -> list[Event]:
        self.poll(now)
        return []

    def next_deadline(self) -> float | None:
        idle = int(self._lib.wlt_dev_idle(self._h))
        if idle == 0xFFFFFFFF:
            return None
        return self.now + idle / 1000

    def data_to_send(self) -> bytes:
        size = self._lib.wlt_dev_out_len(self._h)
        if not size:
            return b""
        out = ctypes.create_string_buffer(size)
        n = self._lib.wlt_dev_take(self._h, out, size)
        return out.raw[:n]

    # --- control and figures ----------------------------------------------------------------

    @property
    def now(self) -> float:
        return self._now_ms / 1000

    def set_time(self, now: float) -> None:
        self._now_ms = self._ms(now)
        self._lib.wlt_dev_set_time(self._h, self._now_ms)

    def feed(self, data: bytes, now: float) -> None:
        self.set_time(now)
        self._lib.wlt_dev_feed(self._h, data, len(data))

    def poll(self, now: float) -> None:
        self.set_time(now)
        self._lib.wlt_dev_poll(self._h)

    def restart_link(self) -> None:
        self._lib.wlt_dev_restart_link(self._h)

    def reboot(self) -> None:
        self._lib.wlt_dev_reboot(self._h)

    def log(self, level: int, text: str) -> bool:
        return bool(self._lib.wlt_dev_log(self._h, level, text.encode()))

    @property
    def is_up(self) -> bool:
        return bool(self._lib.wlt_dev_is_up(self._h))

    @property
    def boot_id(self) -> int:
        return int(self._lib.wlt_dev_boot_id(self._h))

    @property
    def pending(self) -> int:
        """Sequenced frames not yet acknowledged (in flight or queued)."""
        return int(self._lib.wlt_dev_pending(self._h))

    @property
    def inflight(self) -> int:
        return int(self._lib.wlt_dev_inflight(self._h))

    @property
    def rec_log(self) -> list[str]:
        """Argv of every start of the "rec" app, in order."""
        out = ctypes.create_string_buffer(1 << 16)
        n = self._lib.wlt_dev_rec(self._h, out, len(out))
        return out.raw[:n].decode().splitlines()

    @property
    def stats(self) -> dict[str, int]:
        values = (ctypes.c_uint32 * 14)()
        self._lib.wlt_dev_stats(self._h, values)
        return dict(zip(STAT_NAMES, values, strict=True))
