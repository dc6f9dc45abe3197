"""Group commit: batches of writes in one store transaction, answered once durable, in order."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from opensergo.controlplane.store.base import BatchOp, BatchResults, Delete, EventType, Put, WatchEvent
from opensergo.controlplane.store.groupcommit import GroupCommit
from opensergo.controlplane.store.sqlite import SqliteStore
from tests.helpers import INSTANCE_KIND as KIND
from tests.helpers import instance_body as body

pytestmark = [pytest.mark.unit, pytest.mark.timeout(20)]


class CountingStore(SqliteStore):
    """The SQLite store, counting its batches (and failing them on demand)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.batches: list[int] = []
        self.fail_next = False

    async def apply_batch(self, ops: Sequence[BatchOp]) -> BatchResults:
        self.batches.append(len(ops))
        if self.fail_next:
            self.fail_next = False
            raise OSError("disk full")
        return await super().apply_batch(ops)


async def test_apply_batch_is_one_transaction_with_ordered_revisions_and_events(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    await store.open()
    await store.put(KIND, "default", "old", body("old"))
    events: list[WatchEvent] = []

    async def follow() -> None:
        async for event in store.watch(store.revision):
            if isinstance(event, WatchEvent):
                events.append(event)

    watcher = asyncio.create_task(follow())
    await asyncio.sleep(0.05)
    results = await store.apply_batch(
        [Put(KIND, "default", "a", body("a")), Put(KIND, "default", "old", body("old", 81)),
         Delete(KIND, "default", "missing"), Delete(KIND, "default", "b")]
    )  # fmt: skip
    assert [r.revision if r else None for r in results] == [2, 3, None, None]
    assert results[1] is not None and results[1].body["metadata"]["generation"] == 2
    assert store.revision == 3
    await asyncio.sleep(0.05)
    assert [(e.type, e.object.name, e.revision) for e in events] == [
        (EventType.ADDED, "a", 2),
        (EventType.MODIFIED, "old", 3),
    ]
    gone = await store.apply_batch([Delete(KIND, "default", "a")])
    assert gone[0] is not None and gone[0].revision == 4 and gone[0].name == "a"
    assert [o.name for o in await store.list(KIND)] == ["old"]
    watcher.cancel()
    await store.close()

    # Durable: a reopened store has every write, and continues the revisions.
    again = SqliteStore(tmp_path)
    await again.open()
    assert again.revision == 4
    stored = await again.get(KIND, "default", "old")
    assert stored is not None and stored.body["spec"]["addresses"][0]["port"] == 81
    await again.close()


async def test_concurrent_writes_share_batches_and_each_waits_for_its_own(tmp_path: Path) -> None:
    store = CountingStore(tmp_path)
    await store.open()
    commit = GroupCommit(store, window=0.01, max_batch=50)
    stored = await asyncio.gather(
        *(commit.put(Put(KIND, "default", f"i{n}", body(f"i{n}"))) for n in range(120))
    )
    assert [s.name for s in stored] == [f"i{n}" for n in range(120)]
    assert sorted(store.batches) == [20, 50, 50]  # bounded batches, not 120 transactions
    assert len(await store.list(KIND)) == 120
    await store.close()


async def test_writes_of_one_object_keep_their_order_across_batches(tmp_path: Path) -> None:
    store = CountingStore(tmp_path)
    await store.open()
    commit = GroupCommit(store, window=0.01)
    first = commit.submit(Put(KIND, "default", "x", body("x", 1)))
    other = commit.submit(Put(KIND, "default", "y", body("y")))
    second = commit.submit(Put(KIND, "default", "x", body("x", 2)))
    gone = commit.submit(Delete(KIND, "default", "y"))
    results = await asyncio.gather(first, other, second, gone)
    assert [r.revision if r else None for r in results] == [1, 2, 3, 4]
    assert store.batches == [2, 2]  # the second write of x (and y) waits for the next batch
    final = await store.get(KIND, "default", "x")
    assert final is not None and final.body["spec"]["addresses"][0]["port"] == 2
    assert await store.get(KIND, "default", "y") is None
    await store.close()


async def test_a_failed_batch_fails_only_its_own_writers(tmp_path: Path) -> None:
    store = CountingStore(tmp_path)
    await store.open()
    commit = GroupCommit(store, window=0.0, max_batch=2)
    store.fail_next = True
    doomed = [commit.submit(Put(KIND, "default", f"d{n}", body(f"d{n}"))) for n in range(2)]
    fine = [commit.submit(Put(KIND, "default", f"f{n}", body(f"f{n}"))) for n in range(2)]
    results = await asyncio.gather(*doomed, *fine, return_exceptions=True)
    assert [type(r).__name__ for r in results[:2]] == ["OSError", "OSError"]
    assert all(not isinstance(r, BaseException) for r in results[2:])
    assert sorted(o.name for o in await store.list(KIND)) == ["f0", "f1"]  # nothing of the failed one
    await store.close()
