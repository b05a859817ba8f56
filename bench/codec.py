"""Codec benchmark: throughput of the wire codec and its wire overhead.

    python -m bench.codec [--quick]

For TASK_OUTPUT messages carrying 32, 256 and 1024 bytes of task output it measures, on one core:

- ``wirelet``: message -> msgpack -> header + CRC-32 -> COBS -> wire, and back through
  ``FrameDecoder.feed`` and ``parse`` (with full field validation);
- ``baseline``: the same msgpack payload with a CRC-32 appended and nothing else (no COBS, no
  header, no validation): the floor any framed msgpack codec pays.

Throughput is MB/s of task output (application payload, 1 MB = 1e6 bytes), the median of several
runs with min..max spread; overhead is wire bytes over payload bytes. Results also go to
bench/results/codec.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack

from firmware_protocol import FrameDecoder, OutputStream, TaskOutput, frame_for, parse
from firmware_protocol.crc import crc32

SIZES = (32, 256, 1024)
RESULTS = (
    Path(os.environ.get("WIRELET_BENCH_RESULTS") or Path(__file__).parent / "results")
    / "codec.json"
)
_CRC = struct.Struct(">I")


def _messages(size: int, count: int) -> list[TaskOutput]:
    # Varied bytes including zeros so COBS does real work.
    data = bytes((i * 37) % 256 for i in range(size))
    return [TaskOutput("pod-1/app", OutputStream.STDOUT, i * size, data) for i in range(count)]


def wirelet_encode(messages: list[TaskOutput]) -> bytes:
    return b"".join(frame_for(m, seq=i & 0xFFFF, ack=0).to_bytes() for i, m in enumerate(messages))


def wirelet_decode(stream: bytes) -> int:
    decoder = FrameDecoder()
    messages = [parse(f) for f in decoder.feed(stream)]
    return len(messages)


def baseline_encode(messages: list[TaskOutput]) -> list[bytes]:
    out = []
    for m in messages:
        body = msgpack.packb({1: m.task_id, 2: int(m.stream), 3: m.offset, 4: m.data})
        out.append(body + _CRC.pack(crc32(body)))
    return out


def baseline_decode(blobs: list[bytes]) -> int:
    count = 0
    for blob in blobs:
        body = blob[:-4]
        if crc32(body) == _CRC.unpack_from(blob, len(body))[0]:
            msgpack.unpackb(body, strict_map_key=False)
            count += 1
    return count


def _time(fn: Callable[[], Any], repeats: int) -> list[float]:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def _rates(payload_bytes: int, seconds: list[float]) -> dict[str, float]:
    rates = sorted(payload_bytes / s / 1e6 for s in seconds)
    return {"median": statistics.median(rates), "min": rates[0], "max": rates[-1]}


def measure(size: int, count: int, repeats: int) -> dict[str, Any]:
    messages = _messages(size, count)
    payload_bytes = size * count
    stream = wirelet_encode(messages)
    blobs = baseline_encode(messages)
    assert wirelet_decode(stream) == count and baseline_decode(blobs) == count
    return {
        "payload_bytes": size,
        "messages_per_run": count,
        "wire_bytes_per_message": len(stream) / count,
        "overhead_pct": 100 * (len(stream) - payload_bytes) / payload_bytes,
        "baseline_overhead_pct": 100 * (sum(map(len, blobs)) - payload_bytes) / payload_bytes,
        "encode_mb_s": _rates(payload_bytes, _time(lambda: wirelet_encode(messages), repeats)),
        "decode_mb_s": _rates(payload_bytes, _time(lambda: wirelet_decode(stream), repeats)),
        "baseline_encode_mb_s": _rates(
            payload_bytes, _time(lambda: baseline_encode(messages), repeats)
        ),
        "baseline_decode_mb_s": _rates(
            payload_bytes, _time(lambda: baseline_decode(blobs), repeats)
        ),
    }


def _fmt(r: dict[str, float]) -> str:
    return f"{r['median']:7.2f} ({r['min']:.2f}..{r['max']:.2f})"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="wirelet codec benchmark")
    parser.add_argument("--quick", action="store_true", help="fewer, shorter runs")
    args = parser.parse_args(argv)
    repeats = 3 if args.quick else 9
    budget = 200_000 if args.quick else 2_000_000  # payload bytes per run
    results = []
    print("payload  overhead  | MB/s median (min..max)  encode            decode")
    for size in SIZES:
        r = measure(size, max(budget // size, 100), repeats)
        results.append(r)
        print(
            f"{size:5d} B  {r['overhead_pct']:6.1f} %  | wirelet   "
            f"{_fmt(r['encode_mb_s'])}  {_fmt(r['decode_mb_s'])}"
        )
        print(
            f"         {r['baseline_overhead_pct']:6.1f} %  | baseline  "
            f"{_fmt(r['baseline_encode_mb_s'])}  {_fmt(r['baseline_decode_mb_s'])}"
        )
    report = {
        "benchmark": "codec",
        "unit": "MB/s of application payload (1e6 bytes), one core",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "repeats": repeats,
        "results": results,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
