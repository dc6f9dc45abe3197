"""ADS (xDS) and the Envoy RateLimitService with auth on: the node's namespace must be one where
the caller's credential (token or listed client certificate) is a data plane.

Before this, any caller got any namespace's listeners, routes, clusters and endpoints by naming
that namespace in its node metadata, and could lease any namespace's Global budget through
``ShouldRateLimit``.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from envoy.service.discovery.v3 import discovery_pb2
from envoy.service.ratelimit.v3 import rls_pb2
from google.protobuf import json_format, struct_pb2

from opensergo.controlplane.xds.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE
from tests.helpers import wait_until
from tests.integration.grpcauth.conftest import (
    BANK_AGENT,
    OPS,
    SHOP_AGENT,
    VIEWER,
    Pki,
    SecuredControlPlane,
    bearer,
)
from tests.integration.grpcauth.test_mtls import MtlsControlPlane

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

ADS = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
RLS = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"


def router(namespace: str, service: str, header: str) -> dict[str, Any]:
    """A TrafficRouter whose header route (``header: yes`` -> subset v2) marks its namespace."""
    return {
        "apiVersion": "traffic.opensergo.io/v1alpha1",
        "kind": "TrafficRouter",
        "metadata": {"name": service, "namespace": namespace, "labels": {"app": service}},
        "spec": {
            "hosts": [service],
            "http": [
                {
                    "match": [{"headers": {header: {"exact": "yes"}}}],
                    "route": [{"destination": {"host": service, "subset": "v2"}}],
                },
                {"route": [{"destination": {"host": service, "subset": "v1"}}]},
            ],
        },
    }


def node(namespace: str, app: str = "consumer") -> base_pb2.Node:
    metadata = struct_pb2.Struct()
    metadata.update({"app": app, "namespace": namespace})
    return base_pb2.Node(id=f"test~{app}~{namespace}", cluster=app, metadata=metadata)


class AdsCall:
    """A raw ADS stream: requests are sent one by one, responses read as they come."""

    def __init__(
        self,
        channel: grpc.Channel,
        first: discovery_pb2.DiscoveryRequest,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> None:
        self._requests: queue.Queue[discovery_pb2.DiscoveryRequest | None] = queue.Queue()
        self._requests.put(first)
        self.responses: queue.Queue[discovery_pb2.DiscoveryResponse | grpc.RpcError] = queue.Queue()
        method = channel.stream_stream(
            ADS,
            request_serializer=discovery_pb2.DiscoveryRequest.SerializeToString,
            response_deserializer=discovery_pb2.DiscoveryResponse.FromString,
        )
        self._call = method(self._iterate(), metadata=list(metadata), timeout=30)
        threading.Thread(target=self._read, daemon=True).start()

    def _iterate(self) -> Iterator[discovery_pb2.DiscoveryRequest]:
        while (request := self._requests.get()) is not None:
            yield request

    def _read(self) -> None:
        try:
            for response in self._call:
                self.responses.put(response)
        except grpc.RpcError as error:
            self.responses.put(error)

    def send(self, request: discovery_pb2.DiscoveryRequest) -> None:
        self._requests.put(request)

    def next(self, timeout: float = 10) -> discovery_pb2.DiscoveryResponse:
        item = self.responses.get(timeout=timeout)
        if isinstance(item, grpc.RpcError):
            raise item
        return item

    def close(self) -> None:
        self._requests.put(None)
        self._call.cancel()


def first_request(namespace: str, *listeners: str) -> discovery_pb2.DiscoveryRequest:
    return discovery_pb2.DiscoveryRequest(
        node=node(namespace), type_url=LISTENER, resource_names=list(listeners)
    )


def unpack_route(response: discovery_pb2.DiscoveryResponse) -> dict[str, Any]:
    [resource] = response.resources
    config = route_pb2.RouteConfiguration()
    resource.Unpack(config)
    out: dict[str, Any] = json_format.MessageToDict(config, preserving_proto_field_name=True)
    return out


def fetch_route(
    address: str,
    namespace: str,
    service: str,
    metadata: Sequence[tuple[str, str]],
    credentials: grpc.ChannelCredentials | None = None,
) -> tuple[discovery_pb2.DiscoveryResponse, dict[str, Any]]:
    """As a proxyless client of ``namespace``: the listener of ``service``, then its routes."""
    channel = (
        grpc.secure_channel(address, credentials)
        if credentials is not None
        else grpc.insecure_channel(address)
    )
    with channel:
        call = AdsCall(channel, first_request(namespace, service), metadata)
        try:
            listeners = call.next()
            assert listeners.type_url == LISTENER
            assert [r.type_url for r in listeners.resources] == [
                "type.googleapis.com/envoy.config.listener.v3.Listener"
            ]
            call.send(discovery_pb2.DiscoveryRequest(type_url=ROUTE, resource_names=[service]))
            routes = call.next()
            assert routes.type_url == ROUTE
            return listeners, unpack_route(routes)
        finally:
            call.close()


def refusal(
    address: str,
    namespace: str,
    metadata: Sequence[tuple[str, str]],
    credentials: grpc.ChannelCredentials | None = None,
) -> grpc.RpcError:
    """The error that ends a proxyless client's stream for ``namespace``; fails if anything is
    sent before it."""
    channel = (
        grpc.secure_channel(address, credentials)
        if credentials is not None
        else grpc.insecure_channel(address)
    )
    with channel:
        call = AdsCall(channel, first_request(namespace, "ledger"), metadata)
        call.send(discovery_pb2.DiscoveryRequest(type_url=CLUSTER))
        call.send(discovery_pb2.DiscoveryRequest(type_url=ROUTE, resource_names=["ledger"]))
        try:
            item = call.responses.get(timeout=10)
        finally:
            call.close()
    assert isinstance(item, grpc.RpcError), f"a response was sent: {item}"
    return item


def header_names(route_config: dict[str, Any]) -> set[str]:
    return {
        header["name"]
        for host in route_config.get("virtual_hosts", [])
        for route in host.get("routes", [])
        for header in route.get("match", {}).get("headers", [])
    }


@pytest.fixture(scope="module")
def routers(secured: SecuredControlPlane) -> SecuredControlPlane:
    secured.put(router("bank", "ledger", "x-bank-only"))
    secured.put(router("shop", "cart", "x-shop-only"))
    return secured


def test_an_ads_stream_without_credentials_gets_nothing(routers: SecuredControlPlane) -> None:
    error = refusal(routers.grpc_address, "bank", [])
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED
    error = refusal(routers.grpc_address, "bank", bearer("not-a-token"))
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED


def test_a_node_of_another_namespace_is_refused_before_anything_is_sent(routers: SecuredControlPlane) -> None:
    error = refusal(routers.grpc_address, "bank", bearer(SHOP_AGENT))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "'bank'" in (error.details() or "") and "xDS" in (error.details() or "")
    # A viewer is not a data plane, even in its own namespaces (routes hold as much as rules).
    assert refusal(routers.grpc_address, "bank", bearer(VIEWER)).code() == grpc.StatusCode.PERMISSION_DENIED
    # The refused streams are not listed as clients.
    clients = routers.get("/api/v1/clients")["items"]
    assert not [c for c in clients if c.get("protocol") == "xds" and c.get("connected")]


def test_a_namespaces_own_node_gets_only_its_namespaces_resources(routers: SecuredControlPlane) -> None:
    # The bank's agent gets the bank's router for ledger ...
    _, bank_routes = fetch_route(routers.grpc_address, "bank", "ledger", bearer(BANK_AGENT))
    assert "x-bank-only" in header_names(bank_routes)
    # ... and the shop's agent its own cart router, while asking the shop's namespace for the
    # bank's service name yields none of the bank's routes: names resolve in the node's namespace.
    _, cart = fetch_route(routers.grpc_address, "shop", "cart", bearer(SHOP_AGENT))
    assert "x-shop-only" in header_names(cart)
    _, ledger = fetch_route(routers.grpc_address, "shop", "ledger", bearer(SHOP_AGENT))
    assert header_names(ledger) == set()
    assert "bank" not in str(ledger)
    # An admin may be served any namespace.
    _, admin_view = fetch_route(routers.grpc_address, "bank", "ledger", bearer(OPS))
    assert "x-bank-only" in header_names(admin_view)


def test_endpoints_of_another_namespace_cannot_be_named(routers: SecuredControlPlane) -> None:
    with grpc.insecure_channel(routers.grpc_address) as channel:
        call = AdsCall(channel, first_request("shop", "ledger"), bearer(SHOP_AGENT))
        try:
            call.next()  # the listener
            bank_cluster = "outbound||v2|ledger.bank.svc.cluster.local"
            call.send(discovery_pb2.DiscoveryRequest(type_url=ENDPOINT, resource_names=[bank_cluster]))
            endpoints = call.next()
            assert endpoints.type_url == ENDPOINT
            assert list(endpoints.resources) == []
        finally:
            call.close()


def _descriptor(namespace: str) -> ratelimit_pb2.RateLimitDescriptor:
    entries = {"namespace": namespace, "app": "ledger", "resource": "GET:/", "strategy": "rl"}
    return ratelimit_pb2.RateLimitDescriptor(
        entries=[ratelimit_pb2.RateLimitDescriptor.Entry(key=k, value=v) for k, v in entries.items()]
    )


def should_rate_limit(address: str, namespace: str, metadata: Sequence[tuple[str, str]]) -> Any:
    with grpc.insecure_channel(address) as channel:
        method = channel.unary_unary(
            RLS,
            request_serializer=rls_pb2.RateLimitRequest.SerializeToString,
            response_deserializer=rls_pb2.RateLimitResponse.FromString,
        )
        request = rls_pb2.RateLimitRequest(domain="opensergo", descriptors=[_descriptor(namespace)])
        try:
            return method(request, metadata=list(metadata), timeout=10)
        except grpc.RpcError as error:
            return error


def test_the_rate_limit_service_leases_only_in_the_callers_namespaces(routers: SecuredControlPlane) -> None:
    address = routers.grpc_address
    assert should_rate_limit(address, "bank", []).code() == grpc.StatusCode.UNAUTHENTICATED
    refused = should_rate_limit(address, "bank", bearer(SHOP_AGENT))
    assert refused.code() == grpc.StatusCode.PERMISSION_DENIED
    answer = should_rate_limit(address, "bank", bearer(BANK_AGENT))
    assert answer.overall_code == rls_pb2.RateLimitResponse.OK


def test_a_listed_client_certificate_is_served_its_namespace_only(tmp_path: Path, pki: Pki) -> None:
    cp = MtlsControlPlane(tmp_path, pki)
    cp.start()
    try:
        cp.put(
            {
                "apiVersion": "fault-tolerance.opensergo.io/v1alpha1",
                "kind": "RateLimitStrategy",
                "metadata": {"name": "rl", "namespace": "shop", "labels": {"app": "cart"}},
                "spec": {
                    "metricType": "RequestAmount",
                    "limitMode": "Local",
                    "threshold": 1,
                    "statDuration": "1s",
                },
            }
        )
        listed = pki.client_credentials(listed=True)
        # cert-agent is the shop's agent: served the shop ...
        listener, _ = fetch_route(cp.grpc_address, "shop", "cart", [], credentials=listed)
        assert listener.resources
        # ... and refused the bank; an unlisted certificate is no identity at all.
        error = refusal(cp.grpc_address, "bank", [], credentials=listed)
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
        unlisted = pki.client_credentials(listed=False)
        error = refusal(cp.grpc_address, "shop", [], credentials=unlisted)
        assert error.code() == grpc.StatusCode.UNAUTHENTICATED
        wait_until(lambda: "xds stream of" in cp.logs(), timeout=5, what="the refusal logged")
    finally:
        cp.stop()
