"""EtcdStore.apply_batch against a real etcd: one transaction, one revision, every event watched."""

from __future__ import annotations

import asyncio

import pytest

from opensergo.controlplane.store.base import Bookmark, Delete, EventType, Put, WatchEvent
from opensergo.controlplane.store.etcd import EtcdStore, parse_endpoints
from opensergo.controlplane.store.groupcommit import GroupCommit
from tests.helpers import INSTANCE_KIND as KIND
from tests.helpers import EtcdCluster
from tests.helpers import instance_body as body

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


async def test_a_batch_is_one_transaction_and_the_watch_delivers_all_of_it(etcd: EtcdCluster) -> None:
    store = EtcdStore(parse_endpoints(etcd.url))
    await store.open()
    await store.put(KIND, "default", "old", body("old"))
    start = store.revision
    results = await store.apply_batch(
        [Put(KIND, "default", "a", body("a"), ttl=30), Put(KIND, "default", "old", body("old", 81)),
         Delete(KIND, "default", "missing")]
    )  # fmt: skip
    a, old, missing = results
    assert a is not None and old is not None and missing is None
    assert a.revision == old.revision == store.revision == start + 1  # one transaction
    assert old.body["metadata"]["generation"] == 2
    assert await store.refresh(KIND, "default", "a")  # its own lease

    gone = await store.apply_batch([Delete(KIND, "default", "a"), Delete(KIND, "default", "old")])
    assert [g.name if g else None for g in gone] == ["a", "old"]
    assert await store.list(KIND) == []

    # Several objects at one revision: a watch from before delivers every one of them.
    events: list[WatchEvent] = []
    async for event in store.watch(start):
        if isinstance(event, Bookmark):
            break
        events.append(event)
    assert [(e.type, e.object.name) for e in events] == [
        (EventType.ADDED, "a"),
        (EventType.MODIFIED, "old"),
        (EventType.DELETED, "a"),
        (EventType.DELETED, "old"),
    ]
    await store.close()


async def test_group_commit_on_etcd_coalesces_concurrent_registrations(etcd: EtcdCluster) -> None:
    store = EtcdStore(parse_endpoints(etcd.url))
    await store.open()
    commit = GroupCommit(store, window=0.01)
    start = store.revision
    stored = await asyncio.gather(
        *(commit.put(Put(KIND, "default", f"i{n}", body(f"i{n}"), ttl=30)) for n in range(300))
    )
    revisions = {s.revision for s in stored}
    assert len(revisions) <= 6 and max(revisions) - start == len(revisions)  # 128 per transaction
    assert commit.max_batch == 128 and commit.batches == len(revisions)
    assert len(await store.list(KIND)) == 300
    await store.close()
