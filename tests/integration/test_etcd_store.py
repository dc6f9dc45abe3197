"""EtcdStore against a real etcd: the same contract as the SQLite store, plus leases and status."""

from __future__ import annotations

import asyncio

import pytest

from opensergo.controlplane.store.base import Bookmark, ConflictError, EventType, NotFoundError
from opensergo.controlplane.store.etcd import EtcdStore, parse_endpoints
from tests.helpers import RATE_LIMIT_KIND, EtcdCluster, rate_limit_body

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

KIND = RATE_LIMIT_KIND
body = rate_limit_body


def test_parse_endpoints() -> None:
    assert parse_endpoints("etcd://h1:1,h2:2") == [("h1", 1), ("h2", 2)]
    assert parse_endpoints("h1") == [("h1", 2379)]
    with pytest.raises(ValueError):
        parse_endpoints("etcd://")


async def test_crud_revisions_and_watch(etcd: EtcdCluster) -> None:
    store = EtcdStore(parse_endpoints(etcd.url))
    await store.open()
    start = store.revision
    a = await store.put(KIND, "default", "a", body("a", 1))
    assert a.revision > start and a.body["metadata"]["resourceVersion"] == str(a.revision)
    with pytest.raises(ConflictError):
        await store.put(KIND, "default", "a", body("a", 2), create_only=True)
    with pytest.raises(ConflictError):
        await store.put(KIND, "default", "a", body("a", 2), expected_revision=a.revision + 50)
    a2 = await store.put(KIND, "default", "a", body("a", 2), expected_revision=a.revision)
    assert a2.revision > a.revision
    assert a2.body["metadata"]["uid"] == a.body["metadata"]["uid"]
    await store.put(KIND, "other", "b", body("b", 1))
    assert [o.name for o in await store.list(KIND)] == ["a", "b"]
    assert [o.name for o in await store.list(KIND, "default")] == ["a"]
    got = await store.get(KIND, "default", "a")
    assert got is not None and got.body["spec"]["threshold"] == 2
    deleted = await store.delete(KIND, "default", "a")
    assert deleted.body["spec"]["threshold"] == 2
    with pytest.raises(NotFoundError):
        await store.delete(KIND, "default", "a")

    events = []
    async for event in store.watch(start):
        if isinstance(event, Bookmark):
            continue
        events.append((event.type, event.object.name, event.revision))
        if len(events) == 4:
            break
    assert [(t, n) for t, n, _ in events] == [
        (EventType.ADDED, "a"),
        (EventType.MODIFIED, "a"),
        (EventType.ADDED, "b"),
        (EventType.DELETED, "a"),
    ]
    assert [r for *_, r in events] == sorted(r for *_, r in events)
    history = await store.history(KIND, "default", "a")
    assert [e.type for e in history] == [EventType.ADDED, EventType.MODIFIED, EventType.DELETED]
    await store.close()


async def test_ttl_objects_expire_unless_refreshed(etcd: EtcdCluster) -> None:
    store = EtcdStore(parse_endpoints(etcd.url))
    await store.open()
    await store.put(KIND, "default", "kept", body("kept", 1), ttl=1)
    await store.put(KIND, "default", "dropped", body("dropped", 1), ttl=1)
    for _ in range(8):
        await asyncio.sleep(0.3)
        assert await store.refresh(KIND, "default", "kept")
    names = [o.name for o in await store.list(KIND, "default")]
    assert names == ["kept"]
    await store.publish_status("replica-a", {"clients": 3}, ttl=5)
    assert (await store.read_status())["replica-a"] == {"clients": 3}
    await store.close()
