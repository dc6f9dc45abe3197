"""KubernetesStore against the in-process fake API server (tests/unit/kubernetes/fake_apiserver.py),
only for what a real kube-apiserver cannot be made to do on demand: send watch bookmarks every
100 ms (a real one sends them about once a minute, and only from its watch cache).

The store's contract, 410 Gone after a compaction, resuming a dropped watch and the replicas'
instance expiry run against a real kube-apiserver: test_kube_apiserver.py and
test_kube_apiserver_gone.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from opensergo.controlplane.store.base import Bookmark, WatchEvent
from opensergo.controlplane.store.kubernetes import KubernetesStore, revision_of
from tests.helpers import RATE_LIMIT_KIND, rate_limit_body
from tests.unit.kubernetes.fake_apiserver import FakeApiServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

KIND = RATE_LIMIT_KIND


def body(name: str, threshold: int) -> dict[str, Any]:
    return rate_limit_body(name, threshold, statDuration="1s")


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
