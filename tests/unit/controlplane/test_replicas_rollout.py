"""ReplicaStatus (what replicas learn from each other's status documents) and the rollout status
writer (status subresource counts, written by the leader only, changes only)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from opensergo.common.protocol import SubscriptionKey
from opensergo.controlplane.replicas import ReplicaStatus
from opensergo.controlplane.rollout import RolloutStatusWriter
from opensergo.controlplane.snapshots import SnapshotCache
from opensergo.controlplane.store.base import EventType, StoredObject, WatchEvent
from opensergo.controlplane.store.sqlite import SqliteStore
from opensergo.controlplane.tokens import rendezvous_owner
from opensergo.controlplane.transport import TransportService

pytestmark = pytest.mark.unit

FT = "fault-tolerance.opensergo.io/v1alpha1"
RATE = f"{FT}/RateLimitStrategy"


class StatusStore(SqliteStore):
    """The sqlite store with a recorded status subresource, standing in for Kubernetes."""

    status_subresource = True

    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir)
        self.statuses: list[tuple[str, str, str, dict[str, Any]]] = []

    async def set_status(self, kind: str, namespace: str, name: str, status: dict[str, Any]) -> StoredObject:
        self.statuses.append((kind, namespace, name, status))
        stored = await self.get(kind, namespace, name)
        assert stored is not None
        return stored


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[StatusStore]:
    store = StatusStore(tmp_path)
    await store.open()
    yield store
    await store.close()


def rate(name: str, app: str) -> dict[str, Any]:
    return {
        "apiVersion": FT,
        "kind": "RateLimitStrategy",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": app}},
        "spec": {"threshold": 1, "statDurationSeconds": 1},
    }


def subscription(app: str, **answer: Any) -> dict[str, Any]:
    return {"namespace": "default", "app": app, "kind": RATE, "state": "pending", "nacks": [], **answer}


def peer_document(*subscriptions: dict[str, Any]) -> dict[str, Any]:
    clients = [{"id": f"c{i}", "connected": True, "subscriptions": [s]} for i, s in enumerate(subscriptions)]
    return {"clients": clients, "clientsTotal": len(clients), "grpc": "10.0.0.2:10246"}


async def test_replicas_learn_each_other_and_agree_on_the_leader_and_key_owners(store: StatusStore) -> None:
    snapshots = SnapshotCache()
    a = ReplicaStatus(store, TransportService(snapshots, "osg-a"), "replica-a", lambda: "10.0.0.1:10246")
    b = ReplicaStatus(store, TransportService(snapshots, "osg-b"), "replica-b", lambda: "10.0.0.2:10246")
    assert a.is_leader() and b.is_leader()  # alone, each one leads
    await a.exchange(ttl=5)
    await b.exchange(ttl=5)
    await a.exchange(ttl=5)
    expected = {"replica-a": "10.0.0.1:10246", "replica-b": "10.0.0.2:10246"}
    assert a.peers == b.peers == expected
    assert a.live_ids() == {"replica-a", "replica-b"}
    assert a.documents["replica-b"] == {"clients": [], "clientsTotal": 0, "grpc": "10.0.0.2:10246"}
    assert a.is_leader() and not b.is_leader()
    owners = {}
    for i in range(20):
        key = ("default", "shop", f"GET:/{i}", "rl")
        owner = rendezvous_owner(key, expected)
        owners[owner] = owners.get(owner, 0) + 1
        # The owner answers locally (None); the other replica names the owner's address.
        assert (a.token_owner(key), b.token_owner(key)) == (
            (None, expected["replica-a"]) if owner == "replica-a" else (expected["replica-b"], None)
        )
    assert set(owners) == {"replica-a", "replica-b"}


async def test_rollout_writer_counts_every_replicas_clients_and_writes_changes_only(
    store: StatusStore,
) -> None:
    snapshots = SnapshotCache()
    for revision, name in ((1, "x"), (2, "y")):
        body = rate(name, "shop")
        stored = StoredObject(RATE, "default", name, body, revision)
        await store.put(RATE, "default", name, body)
        snapshots.apply(WatchEvent(EventType.ADDED, stored, revision))
    version = snapshots.get(SubscriptionKey("default", "shop", RATE)).version
    assert version == 2
    replicas = ReplicaStatus(store, TransportService(snapshots, "osg-a"), "replica-a", lambda: "10.0.0.1:1")
    # What the last exchange read: another replica holds three subscribed clients.
    replicas.documents = {
        "replica-b": peer_document(
            subscription("shop", ackedVersion=2, state="acked"),
            subscription("shop", ackedVersion=1, nacks=[{"version": 2, "message": "bad"}], state="nacked"),
            subscription("shop", pushedVersion=2),
        )
    }
    writer = RolloutStatusWriter(store, snapshots, replicas)
    assert writer.counts() == {("default", "shop", RATE): {"acked": 1, "nacked": 1, "pending": 1}}

    await writer.write()
    status = {"observedVersion": 2, "acked": 1, "nacked": 1, "pending": 1}
    assert sorted(store.statuses) == [(RATE, "default", "x", status), (RATE, "default", "y", status)]

    await writer.write()  # nothing changed: nothing written
    assert len(store.statuses) == 2

    replicas.documents = {}  # the other replica is gone: its clients no longer count
    await writer.write()
    gone = {"observedVersion": 2, "acked": 0, "nacked": 0, "pending": 0}
    assert sorted(store.statuses[2:]) == [(RATE, "default", "x", gone), (RATE, "default", "y", gone)]


async def test_stores_declare_their_status_subresource(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    assert store.status_subresource is False and store.shared is False
    with pytest.raises(NotImplementedError, match="no status subresource"):
        await store.set_status(RATE, "default", "x", {"acked": 1})
