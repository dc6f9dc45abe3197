"""KubernetesStore against the in-process fake API server (tests/unit/kubernetes/fake_apiserver.py).

The same contract as the etcd and SQLite stores, plus what only Kubernetes has: bookmarks from
the server, re-listing on 410 Gone, the status subresource, and CRD schema validation on write.
Why a fake and not a real kube-apiserver: see docs/kubernetes.md ("How it is tested").
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from opensergo.controlplane.metadata import INSTANCE_KIND, REPLICA_LABEL, MetadataRegistry
from opensergo.controlplane.snapshots import SnapshotCache
from opensergo.controlplane.store.base import (
    Bookmark,
    ConflictError,
    EventType,
    InvalidObjectError,
    NotFoundError,
    WatchEvent,
)
from opensergo.controlplane.store.kubernetes import KubernetesStore, revision_of
from opensergo.proto.service_contract.v1 import service_contract_pb2 as sc
from opensergo.spec.kinds import by_api_version_kind
from tests.unit.kubernetes.fake_apiserver import FakeApiServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

KIND = "fault-tolerance.opensergo.io/v1alpha1/RateLimitStrategy"
SAMPLES = Path(__file__).parents[1] / "unit" / "spec" / "samples"


def body(name: str, threshold: int) -> dict[str, Any]:
    return {
        "apiVersion": "fault-tolerance.opensergo.io/v1alpha1",
        "kind": "RateLimitStrategy",
        "metadata": {"name": name, "labels": {"app": "a"}},
        "spec": {"threshold": threshold, "statDuration": "1s"},
    }


@pytest.fixture
async def server() -> AsyncIterator[FakeApiServer]:
    fake = FakeApiServer(bookmark_interval=0.1)
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def store(server: FakeApiServer) -> AsyncIterator[KubernetesStore]:
    kube = KubernetesStore(host=server.url, namespace="opensergo-system", watch_timeout=30)
    await kube.open()
    yield kube
    await kube.close()


async def collect(
    it: AsyncIterator[WatchEvent | Bookmark], count: int, *, bookmarks: bool = False
) -> list[WatchEvent | Bookmark]:
    out: list[WatchEvent | Bookmark] = []

    async def run() -> None:
        async for item in it:
            if isinstance(item, Bookmark) and not bookmarks:
                continue
            out.append(item)
            if len(out) == count:
                return

    await asyncio.wait_for(run(), 10)
    return out


def summary(items: Sequence[WatchEvent | Bookmark]) -> list[tuple[str, str]]:
    return [("BOOKMARK", "") if isinstance(i, Bookmark) else (i.type.value, i.object.name) for i in items]


def test_revision_of() -> None:
    assert revision_of("123") == 123
    assert revision_of(None) == 0
    assert revision_of("not-a-number") == 0


async def test_crud_conflicts_and_revisions(store: KubernetesStore) -> None:
    start = store.revision
    a = await store.put(KIND, "default", "a", body("a", 1))
    assert a.revision > start and a.body["metadata"]["resourceVersion"] == str(a.revision)
    assert a.body["metadata"]["generation"] == 1 and a.body["metadata"]["uid"]
    with pytest.raises(ConflictError):
        await store.put(KIND, "default", "a", body("a", 2), create_only=True)
    with pytest.raises(ConflictError):
        await store.put(KIND, "default", "a", body("a", 2), expected_revision=a.revision + 50)
    with pytest.raises(ConflictError):
        await store.put(KIND, "default", "new", body("new", 2), expected_revision=7)
    a2 = await store.put(KIND, "default", "a", body("a", 2), expected_revision=a.revision)
    assert a2.revision > a.revision
    assert a2.body["metadata"]["uid"] == a.body["metadata"]["uid"]
    assert a2.body["metadata"]["generation"] == 2
    a3 = await store.put(KIND, "default", "a", body("a", 3))  # unconditional
    assert a3.revision > a2.revision and store.revision >= a3.revision
    await store.put(KIND, "other", "b", body("b", 1))
    assert [o.name for o in await store.list(KIND)] == ["a", "b"]
    assert [o.name for o in await store.list(KIND, "default")] == ["a"]
    assert [o.name for o in await store.list(None, "other")] == ["b"]
    got = await store.get(KIND, "default", "a")
    assert got is not None and got.body["spec"]["threshold"] == 3
    assert await store.get(KIND, "default", "missing") is None
    with pytest.raises(ConflictError):
        await store.delete(KIND, "default", "a", expected_revision=a.revision)
    deleted = await store.delete(KIND, "default", "a", expected_revision=a3.revision)
    assert deleted.body["spec"]["threshold"] == 3
    with pytest.raises(NotFoundError):
        await store.delete(KIND, "default", "a")
    assert await store.refresh(KIND, "other", "b") and not await store.refresh(KIND, "default", "a")
    history = await store.history(KIND, "default", "a")
    assert [e.type for e in history] == [
        EventType.ADDED,
        EventType.MODIFIED,
        EventType.MODIFIED,
        EventType.DELETED,
    ]
    assert store.supports_ttl is False


async def test_watch_replays_then_bookmarks_then_follows(store: KubernetesStore) -> None:
    await store.put(KIND, "default", "a", body("a", 1))
    await store.put(KIND, "default", "b", body("b", 1))
    watch = store.watch(0)
    first = await collect(watch, 3, bookmarks=True)
    assert summary(first) == [("ADDED", "a"), ("ADDED", "b"), ("BOOKMARK", "")]
    assert isinstance(first[2], Bookmark) and first[2].revision >= store.revision
    await store.put(KIND, "default", "a", body("a", 2))
    await store.put(KIND, "default", "c", body("c", 1))
    await store.delete(KIND, "default", "b")
    live = await collect(watch, 3)
    assert summary(live) == [("MODIFIED", "a"), ("ADDED", "c"), ("DELETED", "b")]
    revisions = [e.revision for e in live if isinstance(e, WatchEvent)]
    assert revisions == sorted(revisions)
    deleted = live[2]
    assert isinstance(deleted, WatchEvent) and deleted.object.body["spec"]["threshold"] == 1
    # Server bookmarks come through as Bookmark markers.
    marks = await collect(watch, 2, bookmarks=True)
    assert all(isinstance(m, Bookmark) for m in marks)
    await watch.aclose()  # type: ignore[attr-defined]


async def test_watch_since_replays_only_later_changes(store: KubernetesStore) -> None:
    await store.put(KIND, "default", "old", body("old", 1))
    since = store.revision
    await store.put(KIND, "default", "new", body("new", 1))
    watch = store.watch(since)
    assert summary(await collect(watch, 2, bookmarks=True)) == [("ADDED", "new"), ("BOOKMARK", "")]
    await watch.aclose()  # type: ignore[attr-defined]


async def test_410_gone_relists_and_emits_the_difference(
    server: FakeApiServer, store: KubernetesStore
) -> None:
    await store.put(KIND, "default", "kept", body("kept", 1))
    await store.put(KIND, "default", "changed", body("changed", 1))
    await store.put(KIND, "default", "removed", body("removed", 1))
    watch = store.watch(0)
    assert len(await collect(watch, 3)) == 3
    # While the watch is down, change everything and compact the history it would resume from.
    server.drop_watches()
    await asyncio.sleep(0)
    other = KubernetesStore(host=server.url, namespace="opensergo-system")
    await other.open()
    await other.put(KIND, "default", "changed", body("changed", 2))
    await other.delete(KIND, "default", "removed")
    await other.put(KIND, "default", "added", body("added", 1))
    await other.close()
    server.compact()
    got = await collect(watch, 4, bookmarks=True)
    events = [g for g in got if isinstance(g, WatchEvent)]
    while len(events) < 3:
        more = await collect(watch, 1)
        events.extend(m for m in more if isinstance(m, WatchEvent))
    assert sorted(summary(events)) == [("ADDED", "added"), ("DELETED", "removed"), ("MODIFIED", "changed")]
    changed = next(e for e in events if e.object.name == "changed")
    assert changed.object.body["spec"]["threshold"] == 2
    # Then it follows live changes again, from the re-listed resourceVersion.
    await store.put(KIND, "default", "kept", body("kept", 5))
    live = [e for e in await collect(watch, 1) if isinstance(e, WatchEvent)]
    assert summary(live) == [("MODIFIED", "kept")]
    await watch.aclose()  # type: ignore[attr-defined]


async def test_broken_watch_resumes_without_losing_events(
    server: FakeApiServer, store: KubernetesStore
) -> None:
    watch = store.watch(0)
    await collect(watch, 1, bookmarks=True)  # the replay bookmark
    server.drop_watches()
    await store.put(KIND, "default", "during", body("during", 1))  # while disconnected
    items = await collect(watch, 1)
    assert summary(items) == [("ADDED", "during")]
    await watch.aclose()  # type: ignore[attr-defined]


async def test_status_subresource_carries_rollout_counts(store: KubernetesStore) -> None:
    a = await store.put(KIND, "default", "a", body("a", 1))
    patched = await store.set_status(KIND, "default", "a", {"acked": 2, "nacked": 1, "pending": 0})
    assert patched.body["status"] == {"acked": 2, "nacked": 1, "pending": 0}
    assert patched.revision > a.revision
    await store.set_status(KIND, "default", "a", {"pending": 3})
    # A spec write keeps the status (status subresource semantics) and does not take it from us.
    updated = await store.put(KIND, "default", "a", {**body("a", 2), "status": {"acked": 99}})
    assert updated.body["status"] == {"acked": 2, "nacked": 1, "pending": 3}
    with pytest.raises(NotFoundError):
        await store.set_status(KIND, "default", "missing", {"acked": 1})


async def test_replica_status_documents_expire(store: KubernetesStore) -> None:
    await store.publish_status("replica-A:1/x", {"clients": 3}, ttl=30)
    await store.publish_status("replica-A:1/x", {"clients": 4}, ttl=30)
    await store.publish_status("replica-b", {"clients": 1}, ttl=0.2)
    assert await store.read_status() == {"replica-A:1/x": {"clients": 4}, "replica-b": {"clients": 1}}
    await asyncio.sleep(0.3)
    assert await store.read_status() == {"replica-A:1/x": {"clients": 4}}


async def test_every_spec_sample_is_stored_and_invalid_objects_are_refused(store: KubernetesStore) -> None:
    count = 0
    for path in sorted(SAMPLES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc:
                continue
            info = by_api_version_kind(doc["apiVersion"], doc["kind"])
            ns = doc["metadata"].get("namespace", "default")
            stored = await store.put(info.full_kind, ns, doc["metadata"]["name"], doc)
            assert stored.body["spec"] == doc["spec"]
            count += 1
    assert count >= 10
    bad = body("bad", 1)
    bad["spec"]["threshold"] = -1
    with pytest.raises(InvalidObjectError, match="threshold"):  # the API server's 422, in its words
        await store.put(KIND, "default", "bad", bad)


async def test_snapshot_cache_follows_the_store(store: KubernetesStore) -> None:
    cache = SnapshotCache()
    ready = asyncio.Event()
    await store.put(KIND, "default", "a", body("a", 1))
    task = asyncio.create_task(cache.follow(store, ready))
    await asyncio.wait_for(ready.wait(), 5)
    assert [r.name for r in cache.objects(KIND)] == ["a"]
    b = await store.put(KIND, "default", "b", body("b", 1))
    for _ in range(100):
        if len(cache.objects(KIND)) == 2:
            break
        await asyncio.sleep(0.02)
    assert [r.name for r in cache.objects(KIND)] == ["a", "b"]
    assert cache.revision >= b.revision
    task.cancel()


def _report(app: str, pid: int) -> sc.ReportMetadataRequest:
    request = sc.ReportMetadataRequest(app_name=app)
    request.node.identifier.host_name = "host"
    request.node.identifier.pid = pid
    metadata = request.service_metadata.add()
    metadata.protocols.append("http")
    address = metadata.listening_addresses.add()
    address.address, address.port_value = "10.0.0.1", 8000 + pid
    return request


async def test_replicas_expire_only_their_own_instances_and_orphans(store: KubernetesStore) -> None:
    # Kubernetes has no TTLs: each replica expires the instances it registered, and a restarted
    # replica must not adopt (and then expire) the live instances of another one.
    alive = {"A", "B"}
    a = MetadataRegistry(store, allow_loopback=True, replica_id="A", live_replicas=lambda: set(alive))
    b = MetadataRegistry(store, allow_loopback=True, replica_id="B", live_replicas=lambda: set(alive))
    await a.report(_report("shop", 1), "peer")
    await b.report(_report("shop", 2), "peer")
    stored = await store.list(INSTANCE_KIND.full_kind)
    assert sorted(o.body["metadata"]["labels"][REPLICA_LABEL] for o in stored) == ["A", "B"]
    # A restarts under a new id: it adopts neither B's instance nor its own old one...
    alive = {"A2", "B"}
    a2 = MetadataRegistry(store, allow_loopback=True, replica_id="A2", live_replicas=lambda: set(alive))
    await a2.start()
    await a2.stop()
    assert a2.instances() == []
    # ...and its old instance, whose replica is gone, is deleted on the second look; B's stays.
    assert await a2.collect_orphans() == 0 and await b.collect_orphans() == 0
    assert await a2.collect_orphans() == 1
    assert [o.body["spec"]["pid"] for o in await store.list(INSTANCE_KIND.full_kind)] == [2]
    # The instance moves to A2 (its client reconnected there): registered again, labelled A2.
    await a2.report(_report("shop", 1), "peer")
    assert await b.collect_orphans() == 0 and await b.collect_orphans() == 0
    labels = sorted(
        o.body["metadata"]["labels"][REPLICA_LABEL] for o in await store.list(INSTANCE_KIND.full_kind)
    )
    assert labels == ["A2", "B"]
