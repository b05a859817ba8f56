"""Whole blocks of CRI records turned into `kubectl logs` output by C-level passes.

A log of short lines is mostly headers: a 16-byte line carries a 40-byte header, so work per
record in Python caps a whole-log fetch at a few MB/s. These functions take a block of
complete records (each ended by a newline) and do a handful of passes of the regular
expression engine and of bytes methods over it, whatever the number of records. They return
None for a block holding anything they do not handle (a malformed record, a multi-tag field,
P records with timestamps): the reader then formats that block record by record, which is what
defines the output.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

# A record's header with the newline ending the record before it. Matching from the newline
# lets the engine look for the literal first byte; each match stands for one record, so the
# number of matches tells whether every record of the block was recognised.
_F_HEADER = re.compile(rb"\n[0-9][^ \n]* (?:stdout|stderr) F ")
_P_HEADER = re.compile(rb"[0-9][^ \n]* (?:stdout|stderr) P ")
# The stream and tag of an F record once its header is known to be one (see `stamped_content`).
_F_FIELDS = (b" stdout F ", b" stderr F ")


def content(block: bytes) -> bytes | None:
    """What `kubectl logs` shows for the block: each F record's content and newline, each P
    record's content alone (the next record continues the line)."""
    text = b"\n" + block  # every record now follows a newline; text[i + 1] is block[i]
    pieces: list[bytes] = []
    matched = 0
    # The newline ahead of the next piece is the first one (ours) or ends a P record: dropped.
    drop_newline = True
    position = 0
    # The stretches of F records between P records (a line cut by a flush or by the partial
    # line limit; most blocks have none) lose their headers in one pass each.
    for start, content_at in partial_records(block):
        if start > position:
            segment, found = _F_HEADER.subn(b"\n", text[position:start])
            matched += found
            pieces.append(segment[1:] if drop_newline else segment)
            drop_newline = False
        if not drop_newline:
            pieces.append(b"\n")
        end = block.index(b"\n", content_at)
        pieces.append(block[content_at:end])
        matched += 1
        drop_newline = True
        position = end + 1  # in text: the newline ending the P record
    segment, found = _F_HEADER.subn(b"\n", text[position:])
    matched += found
    pieces.append(segment[1:] if drop_newline else segment)
    return b"".join(pieces) if matched == block.count(b"\n") else None


def partial_records(block: bytes) -> Iterator[tuple[int, int]]:
    """(offset of the record, offset of its content) of each P record in a block of records.

    Found from the tag's bytes, which are rare, and checked against the header pattern from
    the start of their line (content may hold " P " too)."""
    found = block.find(b" P ")
    while found >= 0:
        line_start = block.rfind(b"\n", 0, found) + 1
        header = _P_HEADER.match(block, line_start)
        if header is not None and header.end() == found + 3:
            yield line_start, header.end()
            found = block.find(b" P ", block.find(b"\n", header.end()))
        else:
            found = block.find(b" P ", found + 1)


def stamped_content(block: bytes) -> bytes | None:
    """The block as `kubectl logs --timestamps` shows it, for a block of F records only: each
    line is its record's timestamp, a space and the content. (The writer stamps records in
    the format `--timestamps` shows, RFC3339Nano in UTC, so the stamp is kept as it is.)"""
    lines = block.count(b"\n")
    if _F_HEADER.subn(b"", b"\n" + block)[1] != lines:
        return None
    # Every record has an F header; when the block holds no other occurrence of the stream
    # and tag fields (content that quotes a header), removing them all removes exactly those.
    if sum(block.count(fields) for fields in _F_FIELDS) != lines:
        return None
    return block.replace(_F_FIELDS[0], b" ").replace(_F_FIELDS[1], b" ")
