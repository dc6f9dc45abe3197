"""The ADS protocol over a real gRPC stream on loopback: nonces, ACK, NACK parking, pushes on
change, stale nonces, and the ACK/NACK record in the transport's client list."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import struct_pb2
from google.rpc import status_pb2

from opensergo.controlplane.tokens import GlobalLimits
from opensergo.controlplane.transport import TransportService
from opensergo.controlplane.xds import add_to_server
from opensergo.controlplane.xds.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE
from tests.unit.xds.test_translate import PROVIDER_RULES, Cache

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]


def sidecar_node() -> base_pb2.Node:
    metadata = struct_pb2.Struct()
    metadata.update(
        {"app": "consumer", "opensergo.io/app-port": "8080", "opensergo.io/inbound-port": "15006",
         "opensergo.io/outbound-port": "15001"}
    )  # fmt: skip
    return base_pb2.Node(id="sidecar~consumer~test", cluster="consumer", metadata=metadata)


class Client:
    """One ADS stream driven by hand."""

    def __init__(self, stub: Any) -> None:
        self._requests: asyncio.Queue[discovery_pb2.DiscoveryRequest | None] = asyncio.Queue()
        self.call = stub.StreamAggregatedResources(self._iterate())
        self._responses: asyncio.Queue[discovery_pb2.DiscoveryResponse] = asyncio.Queue()
        # Cancelling a read cancels the whole call: one task reads, the test waits on a queue.
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for response in self.call:
            self._responses.put_nowait(response)

    async def _iterate(self) -> AsyncIterator[discovery_pb2.DiscoveryRequest]:
        while True:
            item = await self._requests.get()
            if item is None:
                return
            yield item

    def send(self, type_url: str, nonce: str = "", version: str = "", names: tuple[str, ...] = (),
             error: str | None = None, node: bool = False) -> None:  # fmt: skip
        request = discovery_pb2.DiscoveryRequest(
            type_url=type_url, response_nonce=nonce, version_info=version, resource_names=names
        )
        if node:
            request.node.CopyFrom(sidecar_node())
        if error is not None:
            request.error_detail.CopyFrom(status_pb2.Status(code=13, message=error))
        self._requests.put_nowait(request)

    async def receive(self, timeout: float = 5) -> discovery_pb2.DiscoveryResponse:
        return await asyncio.wait_for(self._responses.get(), timeout)

    async def nothing(self, wait: float = 0.3) -> bool:
        try:
            await asyncio.wait_for(self._responses.get(), wait)
        except TimeoutError:
            return True
        return False

    def close(self) -> None:
        self._requests.put_nowait(None)
        self._reader.cancel()


async def serve(cache: Cache) -> tuple[grpc.aio.Server, TransportService, int]:
    server = grpc.aio.server()
    transport = TransportService(cache.cache, "test")
    add_to_server(server, cache.cache, transport, GlobalLimits(cache.cache), "test")
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, transport, port


async def test_ack_nack_parking_and_pushes() -> None:
    cache = Cache()
    cache.instance("p1", "provider", 9001, version="v1")
    cache.instance("p2", "provider", 9002, version="v2")
    server, transport, port = await serve(cache)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        client = Client(ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel))
        client.send(CLUSTER, node=True)
        clusters = await client.receive()
        assert clusters.type_url == CLUSTER and clusters.nonce and clusters.version_info
        assert clusters.control_plane.identifier == "test"
        client.send(CLUSTER, nonce=clusters.nonce, version=clusters.version_info)  # ACK
        names = tuple(sorted(c.name for c in _clusters(clusters) if c.type == 3))  # EDS clusters
        client.send(ENDPOINT, names=names)
        endpoints = await client.receive()
        assert endpoints.type_url == ENDPOINT and len(endpoints.resources) == len(names)
        client.send(ENDPOINT, nonce=endpoints.nonce, version=endpoints.version_info, names=names)
        client.send(LISTENER)
        listeners = await client.receive()
        client.send(LISTENER, nonce=listeners.nonce, version=listeners.version_info)
        client.send(ROUTE, names=("inbound", "outbound"))
        routes = await client.receive()
        assert len(routes.resources) == 2
        assert await client.nothing()  # an ACK needs no answer

        # A change: only the types whose content changed are pushed.
        client.send(ROUTE, nonce=routes.nonce, version=routes.version_info, names=("inbound", "outbound"))
        cache.put(PROVIDER_RULES)
        pushed = {}
        for _ in range(3):
            response = await client.receive()
            pushed[response.type_url] = response
        # New subset clusters, the endpoints of the subscribed clusters again (an updated cluster
        # warms until they arrive), new routes; new endpoints once the client names them.
        assert list(pushed) == [CLUSTER, ENDPOINT, ROUTE]
        assert len(pushed[ENDPOINT].resources) == 1
        names = tuple(sorted(c.name for c in _clusters(pushed[CLUSTER]) if c.type == 3))
        client.send(
            ENDPOINT, nonce=pushed[ENDPOINT].nonce, version=pushed[ENDPOINT].version_info, names=names
        )
        endpoints = await client.receive()
        assert len(endpoints.resources) == len(names) == 4
        # NACK the routes: the same content is not sent again (no resend loop)...
        route = pushed[ROUTE]
        client.send(ROUTE, nonce=route.nonce, version=routes.version_info, names=("inbound", "outbound"),
                    error="bad route")  # fmt: skip
        client.send(CLUSTER, nonce=pushed[CLUSTER].nonce, version=pushed[CLUSTER].version_info)
        assert await client.nothing()
        [stream] = [c for c in transport.clients() if c.identifier == "sidecar~consumer~test"]
        info = stream.to_dict()
        assert info["protocol"] == "xds" and info["xds"]["RDS"]["state"] == "nacked"
        assert info["xds"]["RDS"]["error"] == "bad route"
        router = next(
            s
            for s in info["subscriptions"]
            if s["kind"].endswith("/TrafficRouter") and s["app"] == "provider"
        )
        assert router["state"] == "nacked" and router["nacks"][-1]["message"] == "bad route"
        # ... a stale nonce is ignored ...
        client.send(ROUTE, nonce="1", names=("inbound",))
        assert await client.nothing()
        # ... and new content is sent.
        cache.delete("TrafficRouter", "provider")
        response = await client.receive()
        while response.type_url != ROUTE:
            assert response.type_url in (CLUSTER, ENDPOINT)  # the mirror's cluster is gone
            subscribed = names if response.type_url == ENDPOINT else ()
            client.send(
                response.type_url, nonce=response.nonce, version=response.version_info, names=subscribed
            )
            response = await client.receive()
        client.send(ROUTE, nonce=response.nonce, version=response.version_info, names=("inbound", "outbound"))
        await asyncio.sleep(0.2)
        info = stream.to_dict()
        assert info["xds"]["RDS"]["state"] == "acked"
        router = next(
            s
            for s in info["subscriptions"]
            if s["kind"].endswith("/TrafficRouter") and s["app"] == "provider"
        )
        assert router["ackedVersion"] == cache.revision
        client.close()
    await server.stop(None)


def _clusters(response: discovery_pb2.DiscoveryResponse) -> list[Any]:
    from envoy.config.cluster.v3 import cluster_pb2

    out = []
    for item in response.resources:
        cluster = cluster_pb2.Cluster()
        item.Unpack(cluster)
        out.append(cluster)
    return out


async def test_node_without_app_is_refused() -> None:
    cache = Cache()
    server, _, port = await serve(cache)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)

        async def requests() -> AsyncIterator[discovery_pb2.DiscoveryRequest]:
            yield discovery_pb2.DiscoveryRequest(type_url=CLUSTER, node=base_pb2.Node(id="x"))

        call = stub.StreamAggregatedResources(requests())
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call.read()
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "app" in (raised.value.details() or "")
    await server.stop(None)
