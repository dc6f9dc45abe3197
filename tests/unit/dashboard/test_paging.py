"""/api/v1/clients and /api/v1/instances: filtered and paged on the server, whole without limit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from opensergo.common.protocol import Encoding, SubscriptionKey
from opensergo.controlplane.api.server import create_app
from opensergo.controlplane.metadata import MetadataRegistry
from opensergo.controlplane.snapshots import SnapshotCache
from opensergo.controlplane.store.sqlite import SqliteStore
from opensergo.controlplane.transport import ClientStream, SubscriptionState, TransportService
from opensergo.proto.service_contract.v1 import service_contract_pb2 as sc

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]

RATE = "fault-tolerance.opensergo.io/v1alpha1/RateLimitStrategy"


def report(app: str, i: int) -> sc.ReportMetadataRequest:
    request = sc.ReportMetadataRequest(app_name=app)
    request.node.identifier.host_name = f"host-{i}"
    request.node.identifier.pid = 100 + i
    metadata = request.service_metadata.add(protocols=["http"])
    metadata.listening_addresses.add(address=f"10.0.0.{i}", port_value=8080)
    return request


@pytest.fixture
async def setup(
    tmp_path: Path,
) -> AsyncIterator[tuple[httpx.AsyncClient, TransportService, MetadataRegistry]]:
    store = SqliteStore(tmp_path)
    await store.open()
    snapshots = SnapshotCache()
    ready = asyncio.Event()
    follower = asyncio.create_task(snapshots.follow(store, ready))
    await ready.wait()
    transport = TransportService(snapshots, "osg-test")
    registry = MetadataRegistry(store, allow_loopback=True)
    app = create_app(store, snapshots, transport, registry, "r1")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cp.test") as client:
        yield client, transport, registry
    follower.cancel()
    await store.close()


def stream(transport: TransportService, identifier: str, app: str) -> ClientStream:
    s = ClientStream("ipv4:10.1.1.1:5000", None, lambda *_: None)
    s.identifier = identifier
    key = SubscriptionKey("default", app, RATE)
    s.subscriptions[key] = SubscriptionState(key, Encoding.UPSTREAM)
    transport.attach(s)
    return s


async def test_instances_are_filtered_and_paged(
    setup: tuple[httpx.AsyncClient, TransportService, MetadataRegistry],
) -> None:
    client, _, registry = setup
    await asyncio.gather(*(registry.report(report("shop", i), "ipv4:1.2.3.4:1") for i in range(1, 26)))
    await registry.report(report("cart", 99), "ipv4:1.2.3.4:1")

    whole = (await client.get("/api/v1/instances")).json()
    assert len(whole["items"]) == whole["total"] == 26 and whole["limit"] is None  # as before paging

    page: dict[str, Any] = (
        await client.get("/api/v1/instances", params={"app": "shop", "limit": 10, "offset": 20})
    ).json()
    assert (page["total"], page["offset"], page["limit"], len(page["items"])) == (25, 20, 10, 5)
    names = [
        i["name"] for i in (await client.get("/api/v1/instances", params={"app": "shop"})).json()["items"]
    ]
    assert [i["name"] for i in page["items"]] == names[20:]

    found = (await client.get("/api/v1/instances", params={"q": "10.0.0.7:"})).json()
    assert [i["hostName"] for i in found["items"]] == ["host-7"] and found["total"] == 1
    assert (await client.get("/api/v1/instances", params={"q": "HOST-99"})).json()["items"][0][
        "app"
    ] == "cart"
    assert (await client.get("/api/v1/instances", params={"healthy": "false"})).json()["total"] == 0
    clamped = (await client.get("/api/v1/instances", params={"limit": 5000})).json()
    assert clamped["limit"] == 1000


async def test_clients_are_filtered_and_paged(
    setup: tuple[httpx.AsyncClient, TransportService, MetadataRegistry],
) -> None:
    client, transport, _ = setup
    streams = [stream(transport, f"sdk-{i:02d}", "shop" if i % 2 else "cart") for i in range(30)]
    transport.detach(streams[1])  # disconnected: listed unless connected=true

    whole = (await client.get("/api/v1/clients")).json()
    assert len(whole["items"]) == whole["total"] == 30
    connected = (await client.get("/api/v1/clients", params={"connected": "true"})).json()
    assert connected["total"] == 29

    shop = (
        await client.get("/api/v1/clients", params={"app": "shop", "connected": "true", "limit": 5})
    ).json()
    assert shop["total"] == 14 and len(shop["items"]) == 5
    assert all(c["subscriptions"][0]["app"] == "shop" for c in shop["items"])
    second = (
        await client.get(
            "/api/v1/clients", params={"app": "shop", "connected": "true", "limit": 5, "offset": 5}
        )
    ).json()
    assert {c["id"] for c in second["items"]}.isdisjoint({c["id"] for c in shop["items"]})

    found = (await client.get("/api/v1/clients", params={"q": "SDK-07"})).json()
    assert [c["identifier"] for c in found["items"]] == ["sdk-07"]
    assert (await client.get("/api/v1/clients", params={"namespace": "other"})).json()["total"] == 0


async def test_the_app_page_can_leave_the_instance_list_out(
    setup: tuple[httpx.AsyncClient, TransportService, MetadataRegistry],
) -> None:
    client, _, registry = setup
    await asyncio.gather(*(registry.report(report("shop", i), "ipv4:1.2.3.4:1") for i in range(1, 6)))
    whole = (await client.get("/api/v1/apps/default/shop")).json()
    assert len(whole["instances"]) == whole["instanceCount"] == 5  # as before: the list is there
    summary = (await client.get("/api/v1/apps/default/shop", params={"instances": "false"})).json()
    assert "instances" not in summary
    assert (summary["instanceCount"], summary["healthyInstances"]) == (5, whole["healthyInstances"])
    assert summary["services"] == whole["services"]
