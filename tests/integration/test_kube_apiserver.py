"""The Kubernetes store against a real kube-apiserver v1.34.1 (built from Go modules by
scripts/build-kube-apiserver.sh) on a real etcd: the CRDs, the store's contract, and two
control-plane replicas on `--store kubernetes` serving SDK clients.

One API server serves the whole module; each test works in its own namespace. 410 Gone after an
etcd compaction needs a server without the watch cache: test_kube_apiserver_gone.py. What the real
server cannot be made to do on demand (bookmarks every 100 ms) is in test_kubernetes_store.py.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from opensergo.client import OpenSergoClient
from opensergo.controlplane.metadata import INSTANCE_KIND, NAMESPACE_HEADER, REPLICA_LABEL, MetadataRegistry
from opensergo.controlplane.snapshots import SnapshotCache
from opensergo.controlplane.store.base import (
    Bookmark,
    ConflictError,
    EventType,
    InvalidObjectError,
    NotFoundError,
    WatchEvent,
)
from opensergo.controlplane.store.kubernetes import KubernetesStore
from opensergo.proto.service_contract.v1 import service_contract_pb2 as sc
from opensergo.spec.kinds import all_kinds, by_api_version_kind
from tests.helpers import ControlPlaneProcess, put_object, wait_until
from tests.kube import NAMESPACE, Follower, KubeApiServer, Relay

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

FT = "fault-tolerance.opensergo.io/v1alpha1"
KIND = f"{FT}/RateLimitStrategy"
SAMPLES = Path(__file__).parents[1] / "unit" / "spec" / "samples"
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def body(name: str, threshold: int, app: str = "a") -> dict[str, Any]:
    return {
        "apiVersion": FT,
        "kind": "RateLimitStrategy",
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {"threshold": threshold, "statDuration": "1s"},
    }


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeApiServer]:
    server = KubeApiServer(tmp_path_factory.mktemp("kube"))
    try:
        server.start()
        for namespace in (
            "crud",
            "crud-other",
            "watch",
            "resume",
            "status",
            "status-docs",
            "samples",
            "prod",
            "cache",
            "expiry",
            "team",
        ):
            server.create_namespace(namespace)
        yield server
    finally:
        server.stop()


@pytest.fixture
async def store(kube: KubeApiServer) -> AsyncIterator[KubernetesStore]:
    s = KubernetesStore(kubeconfig=str(kube.kubeconfig), namespace=NAMESPACE, watch_timeout=30)
    await s.open()
    yield s
    await s.close()


def test_every_crd_is_established(kube: KubeApiServer) -> None:
    with kube.client() as c:
        for info in all_kinds():
            assert kube.established(c, f"{info.plural}.{info.group}"), info.full_kind


async def test_crud_conflicts_and_revisions(store: KubernetesStore) -> None:
    ns = "crud"
    a = await store.put(KIND, ns, "a", body("a", 1))
    assert a.revision > 0 and a.body["metadata"]["resourceVersion"] == str(a.revision)
    with pytest.raises(ConflictError):
        await store.put(KIND, ns, "a", body("a", 2), create_only=True)
    with pytest.raises(ConflictError):
        await store.put(KIND, ns, "a", body("a", 2), expected_revision=a.revision + 1000)
    with pytest.raises(ConflictError):
        await store.put(KIND, ns, "new", body("new", 2), expected_revision=7)
    a2 = await store.put(KIND, ns, "a", body("a", 2), expected_revision=a.revision)
    assert a2.revision > a.revision and a2.body["metadata"]["generation"] == 2
    assert a2.body["metadata"]["uid"] == a.body["metadata"]["uid"]
    a3 = await store.put(KIND, ns, "a", body("a", 3))  # unconditional
    assert a3.revision > a2.revision and store.revision >= a3.revision
    await store.put(KIND, ns, "b", body("b", 1))
    await store.put(KIND, "crud-other", "c", body("c", 1))
    assert [o.name for o in await store.list(KIND, ns)] == ["a", "b"]
    assert [o.name for o in await store.list(None, "crud-other")] == ["c"]
    assert {"a", "b", "c"} <= {o.name for o in await store.list(KIND)}
    got = await store.get(KIND, ns, "a")
    assert got is not None and got.body["spec"]["threshold"] == 3
    assert await store.get(KIND, ns, "missing") is None
    with pytest.raises(ConflictError):
        await store.delete(KIND, ns, "a", expected_revision=a.revision)
    deleted = await store.delete(KIND, ns, "a", expected_revision=a3.revision)
    assert deleted.body["spec"]["threshold"] == 3
    assert await store.get(KIND, ns, "a") is None
    with pytest.raises(NotFoundError):
        await store.delete(KIND, ns, "a")
    assert await store.refresh(KIND, ns, "b") and not await store.refresh(KIND, ns, "a")
    assert store.supports_ttl is False


async def test_history_records_every_change_made_through_the_store(store: KubernetesStore) -> None:
    ns = "crud"
    a = await store.put(KIND, ns, "h", body("h", 1))
    await store.put(KIND, ns, "h", body("h", 2))
    await store.put(KIND, ns, "h", body("h", 3))
    await store.delete(KIND, ns, "h")
    history = await store.history(KIND, ns, "h")
    assert [e.type for e in history] == [
        EventType.ADDED,
        EventType.MODIFIED,
        EventType.MODIFIED,
        EventType.DELETED,
    ]
    assert history[0].revision == a.revision
    assert [e.revision for e in history] == sorted({e.revision for e in history})  # one per change


async def test_watch_replays_then_follows(store: KubernetesStore) -> None:
    ns = "watch"
    await store.put(KIND, ns, "a", body("a", 1))
    since = store.revision
    await store.put(KIND, ns, "b", body("b", 1))
    watch = store.watch(since)

    async def next_events(count: int) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        async for item in watch:
            if isinstance(item, WatchEvent) and item.object.namespace == ns:
                out.append((item.type.value, item.object.name))
                if len(out) == count:
                    return out
        return out

    async def replay_bookmark() -> Bookmark:
        async for item in watch:
            if isinstance(item, Bookmark):
                return item
        raise AssertionError("watch ended")

    assert await asyncio.wait_for(next_events(1), 20) == [("ADDED", "b")]  # only after `since`
    assert (await asyncio.wait_for(replay_bookmark(), 20)).revision >= since
    await store.put(KIND, ns, "a", body("a", 2))
    await store.put(KIND, ns, "c", body("c", 1))
    await store.delete(KIND, ns, "b")
    live = await asyncio.wait_for(next_events(3), 20)
    assert live == [("MODIFIED", "a"), ("ADDED", "c"), ("DELETED", "b")]
    await watch.aclose()  # type: ignore[attr-defined]


async def test_a_dropped_watch_resumes_from_its_resource_version(kube: KubeApiServer, tmp_path: Path) -> None:
    # The store reaches the API server through a relay that cuts its connections: a real drop.
    relay = Relay(kube.port)
    await relay.start()
    relayed = kube.write_kubeconfig(tmp_path / "relayed-kubeconfig", relay.url)
    store = KubernetesStore(kubeconfig=str(relayed), namespace=NAMESPACE, watch_timeout=120)
    direct = KubernetesStore(kubeconfig=str(kube.kubeconfig), namespace=NAMESPACE)
    await store.open()
    await direct.open()
    ns = "resume"
    follower = Follower(store, ns)
    try:
        await follower.replayed.wait()
        await store.put(KIND, ns, "before", body("before", 1))
        assert await follower.take(1) == [("ADDED", "before", 1)]
        connections = relay.accepted

        relay.cut()
        await direct.put(KIND, ns, "during", body("during", 1))
        await direct.put(KIND, ns, "before", body("before", 2))
        await direct.put(KIND, ns, "before", body("before", 3))
        await direct.put(KIND, ns, "brief", body("brief", 1))
        await direct.delete(KIND, ns, "brief")
        assert follower.events.empty()  # the watch is down
        relay.resume()

        # Every step since the last version seen, in order, and nothing seen before again: a
        # resumed watch (a re-list would give "before" once, at 3, and nothing for "brief").
        assert await follower.take(5) == [
            ("ADDED", "during", 1),
            ("MODIFIED", "before", 2),
            ("MODIFIED", "before", 3),
            ("ADDED", "brief", 1),
            ("DELETED", "brief", 1),
        ]
        assert relay.accepted > connections  # over new connections
    finally:
        await follower.stop()
        await store.close()
        await direct.close()
        await relay.stop()


async def test_status_subresource_carries_rollout_counts(store: KubernetesStore) -> None:
    ns = "status"
    a = await store.put(KIND, ns, "a", body("a", 1))
    patched = await store.set_status(KIND, ns, "a", {"acked": 2, "nacked": 1, "pending": 0})
    assert patched.body["status"] == {"acked": 2, "nacked": 1, "pending": 0}
    assert patched.revision > a.revision
    await store.set_status(KIND, ns, "a", {"pending": 3})  # merged into the status
    # A spec write neither takes the status away nor sets it (status subresource semantics).
    updated = await store.put(KIND, ns, "a", {**body("a", 2), "status": {"acked": 99}})
    assert updated.body["status"] == {"acked": 2, "nacked": 1, "pending": 3}
    with pytest.raises(NotFoundError):
        await store.set_status(KIND, ns, "missing", {"acked": 1})


async def test_replica_status_documents_expire(kube: KubeApiServer) -> None:
    # In a namespace of its own: the control planes of the last test read opensergo-system's.
    store = KubernetesStore(kubeconfig=str(kube.kubeconfig), namespace="status-docs")
    await store.open()
    await store.publish_status("replica-A:1/x", {"clients": 3}, ttl=30)
    await store.publish_status("replica-A:1/x", {"clients": 4}, ttl=30)
    await store.publish_status("replica-b", {"clients": 1}, ttl=0.5)
    status = await store.read_status()
    assert status["replica-A:1/x"] == {"clients": 4} and status["replica-b"] == {"clients": 1}
    await asyncio.sleep(0.7)
    assert "replica-b" not in await store.read_status()
    await store.close()


async def test_every_spec_sample_is_stored_and_invalid_objects_are_refused(store: KubernetesStore) -> None:
    count = refused = 0
    for path in sorted(SAMPLES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc:
                continue
            info = by_api_version_kind(doc["apiVersion"], doc["kind"])
            name = doc["metadata"]["name"]
            if not DNS_SUBDOMAIN.fullmatch(name):
                # Some upstream samples are named like `readwrite_splitting_db`: Kubernetes
                # refuses such names, and the store says so in the API server's words.
                with pytest.raises(InvalidObjectError, match="RFC 1123 subdomain"):
                    await store.put(info.full_kind, "samples", name, doc)
                refused += 1
                continue
            stored = await store.put(info.full_kind, "samples", name, doc)
            assert stored.body["spec"] == doc["spec"], path.name
            count += 1
    assert count >= 10 and refused >= 1
    bad = body("bad", 1)
    bad["spec"]["threshold"] = -1
    with pytest.raises(InvalidObjectError, match=r"spec\.threshold"):
        await store.put(KIND, "samples", "bad", bad)
    with pytest.raises(NotFoundError, match='namespace "nowhere" not found'):
        await store.put(KIND, "nowhere", "a", body("a", 1))


async def test_snapshot_cache_follows_the_store(store: KubernetesStore) -> None:
    ns = "cache"
    cache = SnapshotCache()
    ready = asyncio.Event()
    await store.put(KIND, ns, "a", body("a", 1))
    task = asyncio.create_task(cache.follow(store, ready))
    try:
        await asyncio.wait_for(ready.wait(), 20)
        b = await store.put(KIND, ns, "b", body("b", 1))
        for _ in range(250):
            if {r.name for r in cache.objects(KIND) if r.namespace == ns} == {"a", "b"}:
                break
            await asyncio.sleep(0.02)
        assert {r.name for r in cache.objects(KIND) if r.namespace == ns} == {"a", "b"}
        assert cache.revision >= b.revision
    finally:
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
    headers = {NAMESPACE_HEADER: "expiry"}

    async def stored() -> dict[int, str]:
        """pid -> the replica label, of the instances stored in this test's namespace."""
        return {
            o.body["spec"]["pid"]: o.body["metadata"]["labels"][REPLICA_LABEL]
            for o in await store.list(INSTANCE_KIND.full_kind, "expiry")
        }

    alive = {"A", "B"}
    a = MetadataRegistry(store, allow_loopback=True, replica_id="A", live_replicas=lambda: set(alive))
    b = MetadataRegistry(store, allow_loopback=True, replica_id="B", live_replicas=lambda: set(alive))
    await a.report(_report("shop", 1), "peer", headers)
    await b.report(_report("shop", 2), "peer", headers)
    assert await stored() == {1: "A", 2: "B"}
    # A restarts under a new id: it adopts neither B's instance nor its own old one...
    alive = {"A2", "B"}
    a2 = MetadataRegistry(store, allow_loopback=True, replica_id="A2", live_replicas=lambda: set(alive))
    await a2.start()
    await a2.stop()
    assert a2.instances() == []
    # ...and its old instance, whose replica is gone, is deleted on the second look; B's stays.
    await a2.collect_orphans()
    await b.collect_orphans()
    assert await stored() == {1: "A", 2: "B"}
    await a2.collect_orphans()
    assert await stored() == {2: "B"}
    # The instance moves to A2 (its client reconnected there): registered again, labelled A2.
    await a2.report(_report("shop", 1), "peer", headers)
    await b.collect_orphans()
    await b.collect_orphans()
    assert await stored() == {1: "A2", 2: "B"}
    # It moves again, to B: A2's expiry of its stale copy leaves B's write alone.
    await b.report(_report("shop", 1), "peer", headers)
    await a2.expire_stale(now=time.time() + 3600)
    assert await stored() == {1: "B", 2: "B"}


def test_two_replicas_on_kubernetes_serve_sdk_clients_and_write_rollout_status(
    kube: KubeApiServer, tmp_path: Path
) -> None:
    env = {"KUBECONFIG": str(kube.kubeconfig), "OPENSERGO_NAMESPACE": NAMESPACE}
    args = ["--store", "kubernetes", "--allow-loopback"]
    replicas = [ControlPlaneProcess(tmp_path / f"d{i}", tmp_path, extra_args=args, env=env) for i in range(2)]
    for i, cp in enumerate(replicas):
        cp.log_dir = tmp_path / f"logs{i}"
        cp.log_dir.mkdir()
        cp.start(timeout=60)
    a, b = replicas
    client = OpenSergoClient(b.grpc_address, app="kube-app", namespace="team", snapshot=None)
    client.subscribe(KIND)
    client.start()
    try:
        # Written through replica A's REST API: reaches the client connected to replica B.
        response = put_object(a, {**body("via-rest", 5, app="kube-app"), "metadata": {
            "name": "via-rest", "namespace": "team", "labels": {"app": "kube-app"}}})  # fmt: skip
        assert response.status_code in (200, 201), response.text

        def thresholds() -> dict[str, int]:
            return {r.name: r.spec.threshold for r in client.cache.get(KIND)}

        wait_until(lambda: thresholds() == {"via-rest": 5}, timeout=20, what="the rule via replica A")
        # Written straight to the API server, as `kubectl apply` would: reaches the client too.
        direct = {**body("via-kubectl", 7, app="kube-app")}
        direct["metadata"]["namespace"] = "team"
        with kube.client() as c:
            created = c.post(f"/apis/{FT}/namespaces/team/ratelimitstrategies", json=direct)
            assert created.status_code == 201, created.text
        wait_until(
            lambda: thresholds() == {"via-rest": 5, "via-kubectl": 7},
            timeout=20,
            what="the kubectl-style rule",
        )

        # The replica the client is on writes its ACK into each object's status subresource.
        def status(name: str) -> dict[str, Any]:
            with kube.client() as c:
                obj = c.get(f"/apis/{FT}/namespaces/team/ratelimitstrategies/{name}").json()
            return dict(obj.get("status") or {})

        wait_until(lambda: status("via-kubectl").get("acked") == 1, timeout=20, what="rollout status acked=1")
        assert status("via-kubectl")["pending"] == 0 and status("via-rest").get("acked") == 1
        # The objects are in the API server, not in a replica: both replicas list them.
        for cp in replicas:
            items = httpx.get(
                f"{cp.http_url}/apis/{FT}/namespaces/team/ratelimitstrategies", timeout=30
            ).json()
            assert sorted(i["metadata"]["name"] for i in items["items"]) == ["via-kubectl", "via-rest"]
    finally:
        client.stop()
        for cp in replicas:
            cp.stop()
