"""Node names and label values from device ids: always valid, never shared by two ids."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.config import NodeConfig
from gateway.kube.node_object import NodeFacts, node_manifest
from gateway.names import (
    HASH_LEN,
    is_dns_subdomain,
    is_label_value,
    label_value,
    node_name,
    stable_hash,
)

LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def valid_node_name(name: str) -> bool:
    # Also the kubernetes.io/hostname label value: <= 63.
    return len(name) <= 63 and bool(DNS_SUBDOMAIN.match(name)) and bool(LABEL_VALUE.match(name))


def test_a_valid_lower_case_id_is_used_as_is() -> None:
    assert node_name("wirelet-", "emu-0001") == "wirelet-emu-0001"
    assert node_name("wirelet-", "board.1") == "wirelet-board.1"
    assert node_name("", "abc") == "abc"


def test_a_64_byte_id_gives_a_name_within_63_characters() -> None:
    device_id = "d" * 64
    name = node_name("wirelet-", device_id)
    assert len(name) == 63
    assert valid_node_name(name)
    assert name.endswith("-" + stable_hash(device_id))
    # Two long ids that share their first 60 characters still get two nodes.
    assert node_name("wirelet-", "d" * 63 + "e") != name


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("EMU-0000", "emu-0000"),
        ("../../etc/evil", "etc-evil"),
        ("___", "..."),
        ("", "-"),
        ("a b", "a-b"),
        ("A.B", "a.b"),
        ("a..b", "a.b"),
    ],
)
def test_cleaning_never_lets_two_ids_share_a_node(one: str, other: str) -> None:
    a, b = node_name("wirelet-", one), node_name("wirelet-", other)
    assert a != b
    assert valid_node_name(a) and valid_node_name(b)


def test_an_id_cannot_pick_the_hashed_name_of_another() -> None:
    hashed = node_name("wirelet-", "EMU-0000")  # wirelet-emu-0000-<hash>
    forged_id = hashed.removeprefix("wirelet-")  # a valid lower-case id, equal to that name
    assert node_name("wirelet-", forged_id) != hashed


def test_ids_that_clean_to_nothing_get_a_hash_name() -> None:
    assert node_name("wirelet-", "___") == "wirelet-" + stable_hash("___")
    assert node_name("", "///") == stable_hash("///")
    assert len(stable_hash("x")) == HASH_LEN


@given(st.text(max_size=64), st.sampled_from(["wirelet-", "", "lab.a-", "x" * 29 + "-"]))
def test_every_id_gives_a_valid_name(device_id: str, prefix: str) -> None:
    name = node_name(prefix, device_id)
    assert valid_node_name(name), name
    assert is_dns_subdomain(name)
    assert name.startswith(prefix)


@given(st.text(max_size=64), st.text(max_size=64))
def test_distinct_ids_give_distinct_names(one: str, other: str) -> None:
    if one != other:
        assert node_name("wirelet-", one) != node_name("wirelet-", other)


@given(st.text(max_size=200))
def test_every_label_value_is_valid(text: str) -> None:
    for unique in (False, True):
        value = label_value(text, unique=unique)
        assert len(value) <= 63
        assert LABEL_VALUE.match(value), value
        assert is_label_value(value)
        assert (value == "") == (text == "")


def test_label_values_stay_readable_unless_too_long() -> None:
    assert label_value("Raspberry Pi") == "Raspberry-Pi"
    assert label_value("1.2.3") == "1.2.3"
    long = label_value("v" * 100)
    assert len(long) == 63 and long.endswith(stable_hash("v" * 100))
    # Identifying values: any change by cleaning adds the hash.
    assert label_value("EMU-0000", unique=True) == "EMU-0000"
    assert label_value("a b", unique=True) != label_value("a-b", unique=True)


def test_node_labels_of_a_64_byte_id_are_all_valid() -> None:
    device_id = "Z" * 32 + "/" * 16 + "é" * 8  # 64 bytes in UTF-8, most of them cleaned away
    facts = NodeFacts(
        device_id=device_id,
        vendor="V" * 80,
        product="P",
        serial=device_id,
        firmware_name="fw",
        firmware_version="1",
        transport="serial",
        task_slots=1,
        memory_bytes=1,
        apps=(),
        gateway_host="a-very-long-host-name." * 5,
    )
    name = node_name("wirelet-", device_id)
    manifest = node_manifest(name, facts, NodeConfig(), owner="gw-1")
    labels = manifest["metadata"]["labels"]
    assert labels["kubernetes.io/hostname"] == name
    for key, value in labels.items():
        assert is_label_value(value), (key, value)
    assert manifest["metadata"]["annotations"]["wirelet.io/device-id"] == device_id
    assert manifest["metadata"]["annotations"]["wirelet.io/owner"] == "gw-1"
