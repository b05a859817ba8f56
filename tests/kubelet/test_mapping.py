"""Pure parts: path → node subresource, method → verb, log query parsing, caches."""

from __future__ import annotations

import pytest

from gateway.kubelet.authn import UserInfo, user_from_peercert
from gateway.kubelet.authz import NodeAction, subresource_for_path, verb_for_method
from gateway.kubelet.cache import TtlCache
from gateway.kubelet.errors import BadLogQuery
from gateway.kubelet.log_query import LogQuery, parse_log_query


@pytest.mark.parametrize(
    ("path", "subresource"),
    [
        ("/stats/summary", "stats"),
        ("/stats", "stats"),
        ("/metrics/resource", "metrics"),
        ("/metrics", "metrics"),
        ("/logs/messages", "log"),
        ("/spec/", "spec"),
        ("/checkpoint/ns/pod/c", "checkpoint"),
        ("/containerLogs/ns/pod/c", "proxy"),
        ("/pods", "proxy"),
        ("/exec/ns/pod/c", "proxy"),
        ("/run/ns/pod/c", "proxy"),
        ("/statsfoo", "proxy"),
    ],
)
def test_paths_map_to_node_subresources_like_the_kubelet(path: str, subresource: str) -> None:
    assert subresource_for_path(path) == subresource


@pytest.mark.parametrize(
    ("method", "verb"),
    [
        ("GET", "get"),
        ("POST", "create"),
        ("PUT", "update"),
        ("PATCH", "patch"),
        ("DELETE", "delete"),
    ],
)
def test_methods_map_to_verbs(method: str, verb: str) -> None:
    assert verb_for_method(method) == verb


def test_forbidden_message_matches_the_kubelet() -> None:
    action = NodeAction("get", "proxy", "node-a")
    assert action.forbidden_message(UserInfo("alice")) == (
        "Forbidden (user=alice, verb=get, resource=nodes, subresource=proxy)"
    )


def test_peercert_subject_gives_user_and_groups() -> None:
    peercert = {
        "subject": (
            (("organizationName", "system:masters"),),
            (("organizationName", "devs"),),
            (("commonName", "kube-apiserver-kubelet-client"),),
        )
    }
    assert user_from_peercert(peercert) == UserInfo(
        "kube-apiserver-kubelet-client", ("system:masters", "devs")
    )
    assert user_from_peercert({"subject": ()}) is None


def test_log_query_defaults_and_values() -> None:
    now = 1_700_000_000_000_000_000
    assert parse_log_query({}, now_ns=now) == LogQuery()
    query = parse_log_query(
        {
            "follow": "true",
            "tailLines": "10",
            "limitBytes": "5",
            "timestamps": "1",
            "sinceSeconds": "3",
        },
        now_ns=now,
    )
    assert query == LogQuery(
        follow=True, timestamps=True, tail_lines=10, limit_bytes=5, since_ns=now - 3_000_000_000
    )
    query = parse_log_query({"sinceTime": "2023-11-14T22:13:20Z", "previous": "false"}, now_ns=now)
    assert query.since_ns == now and not query.previous


@pytest.mark.parametrize(
    "params",
    [
        {"follow": "yes"},
        {"tailLines": "-1"},
        {"tailLines": "x"},
        {"tailLines": "99999999999999999999"},
        {"limitBytes": str(1 << 63)},
        {"limitBytes": "0"},
        {"sinceSeconds": "0"},
        {"sinceTime": "yesterday"},
        {"sinceSeconds": "5", "sinceTime": "2023-11-14T22:13:20Z"},
    ],
)
def test_bad_log_queries_are_rejected(params: dict[str, str]) -> None:
    with pytest.raises(BadLogQuery):
        parse_log_query(params, now_ns=0)


def test_ttl_cache_expires_and_evicts() -> None:
    now = [0.0]
    cache: TtlCache[str, int] = TtlCache(max_entries=2, clock=lambda: now[0])
    cache.put("a", 1, ttl=10)
    cache.put("b", 2, ttl=1)
    assert cache.get("a") == 1
    now[0] = 2
    assert cache.get("b") is None
    cache.put("c", 3, ttl=10)
    cache.put("d", 4, ttl=10)
    assert cache.get("a") is None  # evicted as the oldest
    assert (cache.get("c"), cache.get("d")) == (3, 4)
