"""The embedded store opened ``shared``: the worker processes of one replica on one SQLite file.

Two SqliteStore objects in one process have their own connections and their own watchers, so
between them everything goes through the file, as between processes; one test uses real
processes as well."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from pathlib import Path

import pytest

from opensergo.controlplane.metadata import INSTANCE_KIND, NAMESPACE_HEADER, REPLICA_LABEL, MetadataRegistry
from opensergo.controlplane.store.base import Bookmark, ConflictError, Delete, Put, WatchEvent
from opensergo.controlplane.store.sqlite import SqliteStore
from opensergo.proto.service_contract.v1 import service_contract_pb2 as sc
from tests.helpers import RATE_LIMIT_KIND, rate_limit_body

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]

KIND = RATE_LIMIT_KIND
body = rate_limit_body


async def opened(path: Path) -> SqliteStore:
    store = SqliteStore(path, shared=True)
    await store.open()
    return store


def write_many(path: str, prefix: str, count: int) -> None:
    """A writer process: single puts and batches from concurrent tasks."""

    async def main() -> None:
        store = await opened(Path(path))

        async def singles(start: int) -> None:
            for i in range(start, count // 2, 4):
                await store.put(KIND, "default", f"{prefix}-{i}", body(f"{prefix}-{i}", i))

        batch = [
            Put(KIND, "default", f"{prefix}-{i}", body(f"{prefix}-{i}", i)) for i in range(count // 2, count)
        ]
        await asyncio.gather(*(singles(s) for s in range(4)), store.apply_batch(batch))
        await store.close()

    asyncio.run(main())


async def test_processes_writing_at_once_issue_each_revision_once_in_order(tmp_path: Path) -> None:
    reader = await opened(tmp_path)
    count = 200
    ctx = multiprocessing.get_context("spawn")
    writers = [ctx.Process(target=write_many, args=(str(tmp_path), p, count)) for p in ("p", "q")]
    for w in writers:
        w.start()
    seen: list[WatchEvent] = []

    async def follow() -> None:
        async for event in reader.watch(0):
            if isinstance(event, WatchEvent):
                seen.append(event)
                if len(seen) == 2 * count:
                    return

    await asyncio.wait_for(follow(), 45)
    for w in writers:
        await asyncio.to_thread(w.join, 10)
        assert w.exitcode == 0
    assert [e.revision for e in seen] == list(range(1, 2 * count + 1))
    for event in seen:
        assert event.object.body["metadata"]["resourceVersion"] == str(event.revision)
    assert len({e.object.name for e in seen}) == 2 * count
    stored = await reader.list(KIND)
    assert len(stored) == 2 * count
    await reader.close()


async def test_optimistic_concurrency_holds_across_processes(tmp_path: Path) -> None:
    a, b = await opened(tmp_path), await opened(tmp_path)
    first = await a.put(KIND, "default", "x", body("x", 1))
    second = await b.put(KIND, "default", "x", body("x", 2), expected_revision=first.revision)
    assert second.revision == first.revision + 1
    with pytest.raises(ConflictError):  # a's own last write is stale now
        await a.put(KIND, "default", "x", body("x", 3), expected_revision=first.revision)
    with pytest.raises(ConflictError):
        await a.put(KIND, "default", "x", body("x", 3), create_only=True)
    third = await a.put(KIND, "default", "y", body("y", 1))
    assert third.revision == second.revision + 1  # a continues from b's revision
    await a.close()
    await b.close()


async def test_watch_sees_the_other_process_writes_promptly(tmp_path: Path) -> None:
    a, b = await opened(tmp_path), await opened(tmp_path)
    await b.put(KIND, "default", "before", body("before", 1))
    watch = a.watch(0)
    replayed = await anext(watch)
    assert isinstance(replayed, WatchEvent) and replayed.object.name == "before"
    assert isinstance(await anext(watch), Bookmark)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await b.put(KIND, "default", "after", body("after", 2))
    live = await asyncio.wait_for(anext(watch), 5)
    assert isinstance(live, WatchEvent) and (live.object.name, live.revision) == ("after", 2)
    assert loop.time() - started < 1.0  # polled, not waited for a reopen
    # Its own writes come through the log too, in revision order with the other's.
    await a.put(KIND, "default", "own", body("own", 3))
    own = await asyncio.wait_for(anext(watch), 5)
    assert isinstance(own, WatchEvent) and (own.object.name, own.revision) == ("own", 3)
    await watch.aclose()
    await a.close()
    await b.close()


async def test_status_documents_are_shared_and_expire(tmp_path: Path) -> None:
    a, b = await opened(tmp_path), await opened(tmp_path)
    await a.publish_status("replica-a", {"grpc": "127.0.0.1:1"}, ttl=0.5)
    await b.publish_status("replica-b", {"grpc": "127.0.0.1:2"}, ttl=30)
    assert await b.read_status() == {
        "replica-a": {"grpc": "127.0.0.1:1"},
        "replica-b": {"grpc": "127.0.0.1:2"},
    }
    await asyncio.sleep(0.6)
    assert set(await a.read_status()) == {"replica-b"}
    await a.close()
    await b.close()


async def test_an_unshared_store_keeps_status_to_itself(tmp_path: Path) -> None:
    a = SqliteStore(tmp_path)
    await a.open()
    b = await opened(tmp_path)
    await a.publish_status("replica-a", {"grpc": "x"}, ttl=30)
    assert await a.read_status() == {"replica-a": {"grpc": "x"}}
    assert await b.read_status() == {}
    await a.close()
    await b.close()


async def test_an_instance_that_moved_is_not_deleted_by_the_replica_it_left(tmp_path: Path) -> None:
    """Its client connected again to another process, which registered it there: the expiry of
    the first process's stale copy must leave the other's write alone."""
    headers = {NAMESPACE_HEADER: "default"}
    store_a, store_b = await opened(tmp_path), await opened(tmp_path)
    a = MetadataRegistry(store_a, allow_loopback=True, replica_id="A", live_replicas=lambda: {"A", "B"})
    b = MetadataRegistry(store_b, allow_loopback=True, replica_id="B", live_replicas=lambda: {"A", "B"})
    report = sc.ReportMetadataRequest(app_name="shop")
    report.node.identifier.host_name, report.node.identifier.pid = "host", 7
    await a.report(report, "peer", headers)
    await b.report(report, "peer", headers)  # moved
    await a.expire_stale(now=time.time() + 3600)
    assert a.instances() == []
    (stored,) = await store_b.list(INSTANCE_KIND.full_kind)
    assert stored.body["metadata"]["labels"][REPLICA_LABEL] == "B"
    # B's own expiry deletes it.
    await b.expire_stale(now=time.time() + 3600)
    assert await store_a.list(INSTANCE_KIND.full_kind) == []
    for store in (store_a, store_b):
        await store.close()


async def test_a_delete_at_a_revision_spares_a_newer_write(tmp_path: Path) -> None:
    store = await opened(tmp_path)
    first = await store.put(KIND, "default", "x", body("x", 1))
    await store.put(KIND, "default", "x", body("x", 2))
    assert await store.apply_batch([Delete(KIND, "default", "x", first.revision)]) == [None]
    assert await store.get(KIND, "default", "x") is not None
    current = await store.get(KIND, "default", "x")
    assert current is not None
    (gone,) = await store.apply_batch([Delete(KIND, "default", "x", current.revision)])
    assert gone is not None and await store.get(KIND, "default", "x") is None
    await store.close()
