"""The embedded store: revisions, optimistic concurrency, durable log, replayable watch."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from opensergo.controlplane.store.base import Bookmark, ConflictError, EventType, NotFoundError
from opensergo.controlplane.store.sqlite import SqliteStore
from tests.helpers import RATE_LIMIT_KIND, rate_limit_body

pytestmark = [pytest.mark.unit, pytest.mark.timeout(20)]

KIND = RATE_LIMIT_KIND
body = rate_limit_body


async def test_put_get_list_delete_and_revisions(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    await store.open()
    a = await store.put(KIND, "default", "a", body("a", 1))
    b = await store.put(KIND, "default", "b", body("b", 2))
    assert (a.revision, b.revision, store.revision) == (1, 2, 2)
    assert a.body["metadata"]["resourceVersion"] == "1"
    assert a.body["metadata"]["namespace"] == "default"
    uid = a.body["metadata"]["uid"]

    a2 = await store.put(KIND, "default", "a", body("a", 5))
    assert a2.revision == 3
    assert a2.body["metadata"]["uid"] == uid  # identity survives updates
    assert a2.body["metadata"]["generation"] == 2
    got = await store.get(KIND, "default", "a")
    assert got is not None and got.body["spec"]["threshold"] == 5
    assert [o.name for o in await store.list(KIND, "default")] == ["a", "b"]
    assert await store.list(KIND, "other") == []

    deleted = await store.delete(KIND, "default", "b")
    assert deleted.body["spec"]["threshold"] == 2
    assert store.revision == 4
    assert await store.get(KIND, "default", "b") is None
    with pytest.raises(NotFoundError):
        await store.delete(KIND, "default", "b")
    await store.close()


async def test_conflicts(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    await store.open()
    await store.put(KIND, "default", "a", body("a", 1))
    with pytest.raises(ConflictError):
        await store.put(KIND, "default", "a", body("a", 2), create_only=True)
    with pytest.raises(ConflictError):
        await store.put(KIND, "default", "a", body("a", 2), expected_revision=7)
    ok = await store.put(KIND, "default", "a", body("a", 2), expected_revision=1)
    assert ok.revision == 2
    with pytest.raises(ConflictError):
        await store.delete(KIND, "default", "a", expected_revision=1)
    await store.close()


async def test_revision_and_data_survive_reopen(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    await store.open()
    await store.put(KIND, "default", "a", body("a", 1))
    await store.delete(KIND, "default", "a")
    await store.close()

    reopened = SqliteStore(tmp_path)
    await reopened.open()
    assert reopened.revision == 2
    c = await reopened.put(KIND, "default", "c", body("c", 1))
    assert c.revision == 3  # never reuses a revision
    history = await reopened.history(KIND, "default", "a")
    assert [(e.type, e.revision) for e in history] == [(EventType.ADDED, 1), (EventType.DELETED, 2)]
    await reopened.close()


async def test_watch_replays_then_follows(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    await store.open()
    await store.put(KIND, "default", "a", body("a", 1))
    await store.put(KIND, "default", "a", body("a", 2))

    seen: list[tuple[EventType, int]] = []

    async def consume() -> None:
        async for event in store.watch(1):
            if isinstance(event, Bookmark):
                continue
            seen.append((event.type, event.revision))
            if len(seen) == 3:
                return

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    await store.put(KIND, "default", "b", body("b", 1))
    await store.delete(KIND, "default", "a")
    await asyncio.wait_for(task, 5)
    assert seen == [(EventType.MODIFIED, 2), (EventType.ADDED, 3), (EventType.DELETED, 4)]
    await store.close()
