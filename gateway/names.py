"""Kubernetes names and label values made from device-supplied text: always valid, never shared.

A device chooses its own id (up to 64 bytes of anything the protocol allows), so the node name
and every label value built from it must be cleaned. Cleaning alone would let two devices share
a node (`EMU-0000` and `emu-0000`, `../../etc/evil` and `etc-evil`), so whenever cleaning changes
the id, or the result is too long, a stable hash of the original id is appended. A name that
ends like a hash suffix is hashed too, so a device cannot pick the hashed name of another.
"""

from __future__ import annotations

import hashlib
import re

# A node name is a DNS-1123 subdomain (<= 253), but it is also the value of its
# `kubernetes.io/hostname` label, so it is kept within a label value's 63 characters.
NODE_NAME_MAX = 63
LABEL_VALUE_MAX = 63
# Hex digits of sha256 appended after a "-": 40 bits, unique for any realistic fleet.
HASH_LEN = 10
# The longest node name prefix: leaves room for a readable part of the id and the hash.
PREFIX_MAX = 30

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_HASH_SUFFIX = re.compile(rf"-[0-9a-f]{{{HASH_LEN}}}$")


def stable_hash(text: str) -> str:
    """The suffix that keeps a cleaned name unique: the same for the same text, on every host."""
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:HASH_LEN]


def is_dns_subdomain(name: str, limit: int = 253) -> bool:
    return 0 < len(name) <= limit and bool(_DNS_SUBDOMAIN.match(name))


def is_label_value(value: str) -> bool:
    return len(value) <= LABEL_VALUE_MAX and bool(_LABEL_VALUE.match(value))


def is_label_key(key: str) -> bool:
    """`[prefix/]name`: prefix a DNS subdomain (<= 253), name <= 63 of [A-Za-z0-9._-]."""
    prefix, _, name = key.rpartition("/")
    if prefix and not is_dns_subdomain(prefix):
        return False
    return len(name) <= LABEL_VALUE_MAX and bool(_LABEL_NAME.match(name))


def is_node_name_prefix(prefix: str) -> bool:
    """A prefix that yields a valid name with any suffix starting with a letter or digit."""
    return prefix == "" or (len(prefix) <= PREFIX_MAX and is_dns_subdomain(prefix + "x"))


def _dns_slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9.]+", "-", text.lower())
    slug = re.sub(r"-*\.[-.]*", ".", slug)  # no empty labels, no label ending or starting in "-"
    return slug.strip("-.")


def node_name(prefix: str, device_id: str) -> str:
    """The node for a device id: `prefix + id` when the id is already a valid name, otherwise
    `prefix + cleaned id (shortened) + "-" + hash(id)`; always a DNS-1123 subdomain <= 63."""
    slug = _dns_slug(device_id)
    plain = f"{prefix}{slug}"
    if slug and slug == device_id and len(plain) <= NODE_NAME_MAX and not _HASH_SUFFIX.search(slug):
        return plain
    room = NODE_NAME_MAX - len(prefix) - 1 - HASH_LEN
    base = slug[: max(room, 0)].rstrip("-.")
    name = f"{prefix}{base}-{stable_hash(device_id)}" if base else prefix + stable_hash(device_id)
    if not is_dns_subdomain(name, NODE_NAME_MAX):  # only a prefix that skipped validation
        raise ValueError(f"node name prefix {prefix!r} gives no valid node name ({name!r})")
    return name


def label_value(text: str, *, unique: bool = False) -> str:
    """A valid label value (<= 63 of [A-Za-z0-9._-], alphanumeric at both ends) for `text`.

    Too long: shortened with a hash suffix. `unique` (values that identify, like the device
    id): any change by cleaning adds the hash too, so two ids never share one value.
    """
    if not text:
        return ""
    clean = re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-._")
    changed = clean != text or bool(_HASH_SUFFIX.search(text))
    if len(clean) <= LABEL_VALUE_MAX and clean and not (unique and changed):
        return clean
    base = clean[: LABEL_VALUE_MAX - 1 - HASH_LEN].rstrip("-._")
    return f"{base}-{stable_hash(text)}" if base else stable_hash(text)
