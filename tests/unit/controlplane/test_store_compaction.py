"""SQLite history compaction (per object at each write, by age periodically) and server values."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from opensergo.controlplane.store.base import Bookmark, CompactedError
from opensergo.controlplane.store.sqlite import SqliteStore
from tests.helpers import RATE_LIMIT_KIND, rate_limit_body

pytestmark = [pytest.mark.unit, pytest.mark.timeout(20)]

KIND = RATE_LIMIT_KIND
body = rate_limit_body


async def test_history_per_object_is_trimmed_at_each_write(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path, history_per_object=3)
    await store.open()
    for i in range(10):
        await store.put(KIND, "default", "a", body("a", i))
    await store.put(KIND, "default", "b", body("b", 1))
    history = await store.history(KIND, "default", "a")
    assert [e.object.body["spec"]["threshold"] for e in history] == [7, 8, 9]
    assert len(await store.history(KIND, "default", "b")) == 1
    # A replay from 0 still reaches the current state.
    events = []
    async for event in store.watch(0):
        if isinstance(event, Bookmark):
            break
        events.append(event)
    assert [e.object.name for e in events][-2:] == ["a", "b"]
    await store.close()


async def test_compaction_by_age_keeps_current_states(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    await store.open()
    await store.put(KIND, "default", "kept", body("kept", 1))
    await store.put(KIND, "default", "kept", body("kept", 2))
    await store.put(KIND, "default", "gone", body("gone", 1))
    deleted = await store.delete(KIND, "default", "gone")
    assert await store.compact(100, 3600) == 0  # nothing is old yet
    await asyncio.sleep(0.05)
    assert await store.compact(100, 0.01) == 3
    assert [e.object.body["spec"]["threshold"] for e in await store.history(KIND, "default", "kept")] == [2]
    assert await store.history(KIND, "default", "gone") == []
    assert store.compacted_revision == deleted.revision == 4
    with pytest.raises(CompactedError):
        async for _ in store.watch(1):
            pass
    await store.close()
    # The compaction point survives a restart.
    again = SqliteStore(tmp_path)
    await again.open()
    assert again.compacted_revision == store.compacted_revision
    await again.close()


async def test_server_values_are_created_once_and_expire(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    await store.open()
    assert await store.get_value("k") is None
    assert await store.get_or_create_value("k", "first") == "first"
    assert await store.get_or_create_value("k", "second") == "first"
    assert await store.get_or_create_value("short", "v", ttl=0.05) == "v"
    await asyncio.sleep(0.1)
    assert await store.get_value("short") is None
    assert await store.get_or_create_value("short", "again", ttl=60) == "again"
    await store.close()
