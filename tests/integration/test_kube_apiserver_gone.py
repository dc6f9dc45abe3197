"""The Kubernetes store's 410 Gone path against a real kube-apiserver: the store's watches are cut
off (tests/kube.py Relay), the objects change meanwhile, and etcd is compacted with etcdctl, so
the version the store resumes from is gone and the API server answers 410.

This API server runs with ``--watch-cache=false``: with the watch cache, a resumed watch is
answered from the server's memory while its version is within the cache's window (at least 75 s
of history), whatever etcd has compacted, so compaction could not produce a 410 on demand.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from opensergo.controlplane.store.kubernetes import KubernetesStore
from tests.kube import NAMESPACE, Follower, KubeApiServer, Relay

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

FT = "fault-tolerance.opensergo.io/v1alpha1"
KIND = f"{FT}/RateLimitStrategy"
NS = "gone"


def body(name: str, threshold: int) -> dict[str, Any]:
    return {
        "apiVersion": FT,
        "kind": "RateLimitStrategy",
        "metadata": {"name": name, "labels": {"app": "a"}},
        "spec": {"threshold": threshold, "statDuration": "1s"},
    }


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeApiServer]:
    server = KubeApiServer(tmp_path_factory.mktemp("kube-gone"), watch_cache=False)
    try:
        server.start()
        server.create_namespace(NS)
        yield server
    finally:
        server.stop()


@pytest.fixture
async def relay(kube: KubeApiServer) -> AsyncIterator[Relay]:
    r = Relay(kube.port)
    await r.start()
    yield r
    await r.stop()


def watch_answer(kube: KubeApiServer, resource_version: int) -> int:
    """The status code with which the API server answers a watch from ``resource_version``
    (410 comes as the HTTP status or as the stream's first ERROR event)."""
    params = {"watch": "true", "resourceVersion": str(resource_version), "timeoutSeconds": "5"}
    with (
        kube.client() as c,
        c.stream("GET", f"/apis/{FT}/namespaces/{NS}/ratelimitstrategies", params=params) as r,
    ):
        if r.status_code != 200:
            return r.status_code
        for line in r.iter_lines():
            if line.strip():
                event: dict[str, Any] = json.loads(line)
                return int(event["object"]["code"]) if event["type"] == "ERROR" else 200
    return 200


async def test_410_gone_relists_and_emits_the_difference(
    kube: KubeApiServer, relay: Relay, tmp_path: Path
) -> None:
    relayed = kube.write_kubeconfig(tmp_path / "relayed-kubeconfig", relay.url)
    store = KubernetesStore(kubeconfig=str(relayed), namespace=NAMESPACE, watch_timeout=120)
    direct = KubernetesStore(kubeconfig=str(kube.kubeconfig), namespace=NAMESPACE)
    await store.open()
    await direct.open()
    follower = Follower(store, NS)
    try:
        await follower.replayed.wait()
        for name in ("kept", "changed", "removed"):
            await store.put(KIND, NS, name, body(name, 1))
        assert sorted(await follower.take(3)) == [("ADDED", n, 1) for n in ("changed", "kept", "removed")]
        last_seen = store.revision  # the version its watch of the kind resumes from

        relay.cut()
        # While the store is cut off: a history it would replay step by step if etcd kept it.
        await direct.put(KIND, NS, "changed", body("changed", 2))
        await direct.put(KIND, NS, "changed", body("changed", 3))
        await direct.delete(KIND, NS, "removed")
        await direct.put(KIND, NS, "added", body("added", 1))
        await direct.put(KIND, NS, "brief", body("brief", 1))
        await direct.delete(KIND, NS, "brief")
        assert kube.compact_etcd() > last_seen
        assert watch_answer(kube, last_seen) == 410  # the real server's answer, not a fake's
        assert follower.events.empty()
        relay.resume()

        # A re-list: the difference from what the store delivered, not the steps in between
        # (no MODIFIED to 2, nothing for "brief"); the deleted object as last delivered.
        difference = await follower.take(3)
        assert sorted(difference) == [
            ("ADDED", "added", 1),
            ("DELETED", "removed", 1),
            ("MODIFIED", "changed", 3),
        ]
        # Then it follows live changes again, from the re-listed resourceVersion.
        await direct.put(KIND, NS, "kept", body("kept", 5))
        assert await follower.take(1) == [("MODIFIED", "kept", 5)]
    finally:
        await follower.stop()
        await store.close()
        await direct.close()
