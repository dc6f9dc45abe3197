"""SnapshotCache: grouping by (namespace, app, kind), versions from revisions, shared encodings."""

from __future__ import annotations

from typing import Any

import pytest

from opensergo.common.protocol import Encoding, SubscriptionKey
from opensergo.controlplane.snapshots import Snapshot, SnapshotCache
from opensergo.controlplane.store.base import EventType, StoredObject, WatchEvent

pytestmark = pytest.mark.unit

FT = "fault-tolerance.opensergo.io/v1alpha1"
RATE = f"{FT}/RateLimitStrategy"
RULE = f"{FT}/FaultToleranceRule"


def rate(name: str, app: str, threshold: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": FT,
        "kind": "RateLimitStrategy",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": app}},
        "spec": {"threshold": threshold, "statDurationSeconds": 1},
    }


def event(kind: EventType, body: dict[str, Any], revision: int, full_kind: str = RATE) -> WatchEvent:
    meta = body["metadata"]
    return WatchEvent(
        kind, StoredObject(full_kind, meta["namespace"], meta["name"], body, revision), revision
    )


def test_groups_versions_and_moves() -> None:
    cache = SnapshotCache()
    seen: list[Snapshot] = []
    cache.add_listener(seen.append)
    a = SubscriptionKey("default", "a", RATE)
    b = SubscriptionKey("default", "b", RATE)
    assert cache.get(a).version == 0 and cache.get(a).resources == ()

    cache.apply(event(EventType.ADDED, rate("x", "a"), 1))
    cache.apply(event(EventType.ADDED, rate("y", "a"), 2))
    assert cache.get(a).version == 2
    assert [r.name for r in cache.get(a).resources] == ["x", "y"]

    # Relabelling moves the object: both groups change at the event's revision.
    changed = cache.apply(event(EventType.MODIFIED, rate("x", "b"), 3))
    assert {s.key for s in changed} == {a, b}
    assert (cache.get(a).version, [r.name for r in cache.get(a).resources]) == (3, ["y"])
    assert (cache.get(b).version, [r.name for r in cache.get(b).resources]) == (3, ["x"])

    cache.apply(event(EventType.DELETED, rate("y", "a"), 4))
    assert (cache.get(a).version, cache.get(a).resources) == (4, ())
    assert cache.get(b).version == 3  # untouched groups keep their version
    assert [s.key for s in seen] == [a, a, a, b, a]


def test_selector_app_and_unlabelled_objects() -> None:
    cache = SnapshotCache()
    rule = {
        "apiVersion": FT,
        "kind": "FaultToleranceRule",
        "metadata": {"name": "r", "namespace": "default"},
        "spec": {
            "selector": {"app": "via-selector"},
            "targets": [{"targetResourceName": "GET:/"}],
            "strategies": [{"name": "x", "kind": "RateLimitStrategy"}],
        },
    }
    cache.apply(event(EventType.ADDED, rule, 1, RULE))
    assert [r.name for r in cache.get(SubscriptionKey("default", "via-selector", RULE)).resources] == ["r"]
    body = rate("nolabel", "ignored")
    body["metadata"]["labels"] = {}
    assert cache.apply(event(EventType.ADDED, body, 2)) == []


def test_invalid_stored_object_is_reported_not_served() -> None:
    cache = SnapshotCache()
    bad = rate("bad", "a", threshold=-1)
    assert cache.apply(event(EventType.ADDED, bad, 1)) == []
    assert (RATE, "default", "bad") in cache.invalid


def test_encoding_is_built_once_and_shared() -> None:
    cache = SnapshotCache()
    cache.apply(event(EventType.ADDED, rate("x", "a"), 1))
    snapshot = cache.get(SubscriptionKey("default", "a", RATE))
    upstream = snapshot.encoded(Encoding.UPSTREAM)
    assert snapshot.encoded(Encoding.UPSTREAM) is upstream
    assert upstream[0].type_url.endswith("io.opensergo.proto.fault_tolerance.v1.RateLimitStrategy")
    assert snapshot.encoded(Encoding.NATIVE)[0].type_url.endswith("opensergo.ext.v1.Resource")
