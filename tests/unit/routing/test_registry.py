"""ServiceDirectory with a client: lazy subscriptions, the bounded first wait, updates from pushes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from opensergo.client.cache import CacheEntry
from opensergo.common.protocol import SubscriptionKey
from opensergo.governance.routing import LaneManager, NoAvailableInstance, ServiceDirectory, SimpleRequest
from opensergo.governance.routing.registry import INSTANCE_KIND, LANE_KIND, ROUTER_KIND, WORKLOAD_KIND
from opensergo.spec import ServiceInstance, parse_object
from opensergo.spec.base import Resource

from .helpers import CANONICAL, GRAY_LANE_SPEC, lane, router

pytestmark = pytest.mark.unit


class FakeSubscription:
    def __init__(self, client: FakeClient, key: SubscriptionKey) -> None:
        self.client, self.key, self.active = client, key, True

    def unsubscribe(self) -> None:
        self.active = False
        self.client.unsubscribed.append(self.key)


class FakeCache:
    def __init__(self) -> None:
        self.entries: dict[SubscriptionKey, CacheEntry] = {}

    def entry(self, key: SubscriptionKey) -> CacheEntry | None:
        return self.entries.get(key)


class FakeClient:
    """What ServiceDirectory uses of OpenSergoClient: subscribe, cache.entry, app/namespace/identifier."""

    def __init__(self, app: str = "consumer", labels: dict[str, str] | None = None) -> None:
        self.app = app
        self.namespace = "default"
        self.identifier = "consumer-1"
        self.instance_labels = {"app": app, **(labels or {})}
        self.cache = FakeCache()
        self.callbacks: dict[SubscriptionKey, Callable[[list[Resource], int], None]] = {}
        self.unsubscribed: list[SubscriptionKey] = []

    def subscribe(
        self, kind: str, *, app: str, namespace: str, callback: Callable[[list[Resource], int], None]
    ) -> FakeSubscription:
        key = SubscriptionKey(namespace, app, kind)
        self.callbacks[key] = callback
        return FakeSubscription(self, key)

    def push(self, app: str, kind: str, items: list[Resource], version: int = 1, live: bool = True) -> None:
        key = SubscriptionKey("default", app, kind)
        self.cache.entries[key] = CacheEntry(version, tuple(items), live)
        self.callbacks[key](items, version)

    def push_all(self, app: str, instances: list[Resource], routers: list[Resource] = ()) -> None:  # type: ignore[assignment]
        self.push(app, INSTANCE_KIND, instances)
        self.push(app, ROUTER_KIND, list(routers))
        self.push(app, WORKLOAD_KIND, [])


def service_instance(
    app: str, node: str, port: int, status: dict[str, Any] | None = None, **labels: str
) -> Resource:
    body: dict[str, Any] = {
        "apiVersion": "discovery.opensergo.io/v1alpha1",
        "kind": "ServiceInstance",
        "metadata": {"name": f"{app}-{node}", "labels": {"app": app}},
        "spec": {
            "app": app,
            "nodeId": node,
            "addresses": [{"address": "10.1.0.1", "port": port, "protocol": "http"}],
            "labels": labels,
        },
    }
    if status is not None:
        body["status"] = status
    resource = parse_object(body)
    assert isinstance(resource, ServiceInstance)
    return resource


def make(client: FakeClient, **kwargs: Any) -> ServiceDirectory:
    kwargs.setdefault("lanes", LaneManager(use_otel=False))
    return ServiceDirectory(client, **kwargs)  # type: ignore[arg-type]


def test_subscribes_lanes_for_the_local_app_at_once_and_services_lazily() -> None:
    client = FakeClient(labels={"version": "v1"})
    d = make(client, initial_wait=0.01)
    assert list(client.callbacks) == [SubscriptionKey("default", "consumer", LANE_KIND)]
    assert d.local_labels == {"app": "consumer", "version": "v1"}
    with pytest.raises(NoAvailableInstance):
        d.choose("service-provider")
    assert set(client.callbacks) == {
        SubscriptionKey("default", "consumer", LANE_KIND),
        *(
            SubscriptionKey("default", "service-provider", k)
            for k in (INSTANCE_KIND, ROUTER_KIND, WORKLOAD_KIND)
        ),
    }


def test_first_call_waits_for_the_initial_pushes() -> None:
    client = FakeClient()
    d = make(client, initial_wait=30)  # returning well before 30 s means the pushes ended the wait

    def pushes() -> None:
        while SubscriptionKey("default", "service-provider", WORKLOAD_KIND) not in client.callbacks:
            time.sleep(0.005)
        time.sleep(0.05)
        client.push_all(
            "service-provider",
            [service_instance("service-provider", "a", 8001, version="v1"),
             service_instance("service-provider", "b", 8002, version="v2")],
            [router(CANONICAL)],
        )  # fmt: skip

    thread = threading.Thread(target=pushes)
    thread.start()
    started = time.monotonic()
    chosen = d.choose("service-provider", SimpleRequest(headers={"tag": "v2"}))
    assert time.monotonic() - started < 15
    thread.join()
    assert chosen.labels["version"] == "v2" and chosen.address() == ("10.1.0.1", 8002)


def test_first_wait_is_bounded_and_not_repeated() -> None:
    client = FakeClient()
    d = make(client, initial_wait=1.0)
    started = time.monotonic()
    with pytest.raises(NoAvailableInstance):
        d.choose("slow")
    assert 0.95 < time.monotonic() - started < 10  # it waited, and it gave up
    started = time.monotonic()
    with pytest.raises(NoAvailableInstance):
        d.choose("slow")
    assert time.monotonic() - started < 0.5  # half the wait: a second wait would take all of it


def test_snapshot_data_is_used_but_does_not_count_as_ready() -> None:
    client = FakeClient()
    d = make(client, initial_wait=0.1)
    d.prepare("svc", timeout=0)
    client.push("svc", INSTANCE_KIND, [service_instance("svc", "a", 8001)], live=False)
    assert d.choose("svc").name == "svc-a"


def test_pushes_replace_state_and_filter_unhealthy_instances() -> None:
    client = FakeClient()
    d = make(client)
    assert d.prepare("svc", timeout=0) is False
    client.push_all(
        "svc",
        [service_instance("svc", "a", 8001), service_instance("svc", "b", 8002, status={"healthy": False}),
         service_instance("svc", "c", 8003, status={"enabled": False})],
    )  # fmt: skip
    assert d.prepare("svc", timeout=1) is True
    assert [i.name for i in d.instances("svc")] == ["svc-a"]
    client.push("svc", INSTANCE_KIND, [], version=2)
    with pytest.raises(NoAvailableInstance):
        d.choose("svc")


def test_fallback_host_is_subscribed_when_the_router_arrives() -> None:
    client = FakeClient()
    d = make(client, initial_wait=1)
    tr = router(
        CANONICAL.replace("fallback: {host: service-provider, subset: v1}", "fallback: {host: backup}")
    )
    d.prepare("service-provider", timeout=0)
    client.push_all("service-provider", [service_instance("service-provider", "a", 8001, version="v1")], [tr])
    assert SubscriptionKey("default", "backup", INSTANCE_KIND) in client.callbacks
    client.push_all("backup", [service_instance("backup", "z", 9000)])
    assert d.choose("service-provider", SimpleRequest(headers={"tag": "v2"})).name == "backup-z"


def test_lane_pushes_configure_the_lane_manager() -> None:
    client = FakeClient(app="spring-cloud-a")
    manager = LaneManager(use_otel=False)
    make(client, lanes=manager)
    client.push("spring-cloud-a", LANE_KIND, [lane(GRAY_LANE_SPEC)])
    token = manager.enter_from_headers({"X-User-Id": "12345"}, path="/index")
    assert manager.current_name() == "Gray"
    manager.reset(token)


def test_close_unsubscribes_everything() -> None:
    client = FakeClient()
    d = make(client)
    d.prepare("svc", timeout=0)
    d.close()
    assert len(client.unsubscribed) == 4


def test_local_labels_from_a_real_client_object() -> None:
    from opensergo.client import InstanceInfo, OpenSergoClient

    instance = InstanceInfo(labels={"version": "v3"}, tag="gray", zone="z1")
    client = OpenSergoClient("127.0.0.1:1", app="web", instance=instance, snapshot=None)
    d = ServiceDirectory(client, watch_lanes=False)
    assert d.local_labels == {"app": "web", "version": "v3", "tag": "gray", "zone": "z1"}


async def test_achoose_waits_in_a_worker_thread() -> None:
    client = FakeClient()
    d = make(client, initial_wait=0.3)
    started = time.monotonic()
    with pytest.raises(NoAvailableInstance):
        await d.achoose("svc")
    assert time.monotonic() - started >= 0.25
