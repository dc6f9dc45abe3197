"""Outbound integrations: the httpx transports, the requests adapter and the gRPC routing channel."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import httpx
import pytest
import requests

from opensergo.governance.routing import Instance, LaneManager, ServiceDirectory
from opensergo.integrations.grpc_client import RoutingRpcError, routing_channel
from opensergo.integrations.httpx import (
    AsyncRoutingTransport,
    RoutingTransport,
    async_routing_client,
    default_should_route,
    routing_client,
)
from opensergo.integrations.requests import routing_session

from .helpers import CANONICAL, SERVICE, directory, router, simple_router

pytestmark = pytest.mark.unit


def provider(name: str, port: int, protocol: str = "http", **labels: str) -> Instance:
    return Instance(SERVICE, name, [("127.0.0.1", port, protocol)], labels, 100, name)


V1 = provider("v1", 8001, version="v1")
V2 = provider("v2", 8002, version="v2", tag="gray")


def echo(request: httpx.Request) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "url": str(request.url),
            "host": request.headers.get("host"),
            "lane": request.headers.get("x-opensergo-traffic"),
            "baggage": request.headers.get("baggage"),
        },
    )


@pytest.fixture
def manager() -> LaneManager:
    return LaneManager(use_otel=False)


@pytest.fixture
def routed(manager: LaneManager) -> ServiceDirectory:
    return directory([V1, V2], [router(CANONICAL)], lanes=manager)


def test_default_should_route() -> None:
    assert default_should_route("service-provider")
    assert default_should_route("svc.default.svc.cluster.local")
    for host in ("localhost", "127.0.0.1", "example.com", "::1", ""):
        assert not default_should_route(host)


def test_httpx_transport_rewrites_the_url_and_keeps_the_host_header(routed: ServiceDirectory) -> None:
    with httpx.Client(transport=RoutingTransport(routed, httpx.MockTransport(echo))) as client:
        body = client.get("http://service-provider/hello?x=1", headers={"tag": "v2"}).json()
        assert body["url"] == "http://127.0.0.1:8002/hello?x=1"
        assert body["host"] == "service-provider"
        assert body["lane"] is None and body["baggage"] is None
        assert client.get("http://service-provider:9999/hello").json()["url"] == "http://127.0.0.1:8001/hello"
        # Not a service name: untouched.
        assert client.get("http://example.com/x").json()["url"] == "http://example.com/x"


def test_httpx_transport_rewrite_host_option(routed: ServiceDirectory) -> None:
    transport = RoutingTransport(routed, httpx.MockTransport(echo), rewrite_host=True)
    with httpx.Client(transport=transport) as client:
        assert client.get("http://service-provider/").json()["host"] == "127.0.0.1:8001"


def test_httpx_transport_propagates_and_routes_by_lane(manager: LaneManager) -> None:
    d = directory([V1, V2], lanes=manager)
    with routing_client(d, transport=httpx.MockTransport(echo)) as client:
        with manager.use("Gray"):
            body = client.get("http://service-provider/", headers={"baggage": "user=1"}).json()
        assert body["lane"] == "Gray" and body["baggage"] == "user=1,x-opensergo-traffic=Gray"
        assert body["url"].startswith("http://127.0.0.1:8002/")
        # An explicit lane header on the request routes too and is kept.
        body = client.get("http://service-provider/", headers={"x-opensergo-traffic": "gray"}).json()
        assert body["lane"] == "gray" and body["url"].startswith("http://127.0.0.1:8002/")
        assert client.get("http://service-provider/").json()["lane"] is None
        with manager.use("Gray"):  # external hosts do not get the lane by default
            assert client.get("http://example.com/").json()["lane"] is None
    with (
        routing_client(d, transport=httpx.MockTransport(echo), propagate_lane="all") as client,
        manager.use("Gray"),
    ):
        assert client.get("http://example.com/").json()["lane"] == "Gray"
    with (
        routing_client(d, transport=httpx.MockTransport(echo), propagate_lane="never") as client,
        manager.use("Gray"),
    ):
        body = client.get("http://service-provider/").json()
        assert body["lane"] is None and body["url"].startswith("http://127.0.0.1:8002/")


def test_httpx_transport_services_option(routed: ServiceDirectory) -> None:
    transport = RoutingTransport(routed, httpx.MockTransport(echo), services={"service-provider"})
    with httpx.Client(transport=transport) as client:
        assert client.get("http://service-provider/").json()["url"] == "http://127.0.0.1:8001/"
        assert client.get("http://other/").json()["url"] == "http://other/"


def test_httpx_routing_errors_become_connect_errors(manager: LaneManager) -> None:
    d = directory([V1], [router(CANONICAL).model_copy()], lanes=manager)
    d.update_routers(
        SERVICE,
        [
            simple_router(
                [
                    {
                        "match": [{"headers": {"x": {"exact": "1"}}}],
                        "route": [{"destination": {"host": SERVICE}}],
                    }
                ]
            )
        ],
    )
    with httpx.Client(transport=RoutingTransport(d, httpx.MockTransport(echo))) as client:
        with pytest.raises(httpx.ConnectError) as info:
            client.get("http://service-provider/")
        assert "no TrafficRouter rule" in str(info.value)
        assert info.value.__cause__ is not None


class _Chunks(httpx.SyncByteStream):
    def __iter__(self) -> Iterator[bytes]:
        yield b"a"
        yield b"b"


def test_httpx_transport_tracks_in_flight_until_the_response_is_closed(routed: ServiceDirectory) -> None:
    def streaming(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=_Chunks())

    with httpx.Client(transport=RoutingTransport(routed, httpx.MockTransport(streaming))) as client:
        with client.stream("GET", "http://service-provider/") as response:
            assert V1.active == 1
            assert response.read() == b"ab"
        assert V1.active == 0
        assert client.get("http://service-provider/").content == b"ab"
        assert V1.active == 0
    with httpx.Client(transport=RoutingTransport(routed, httpx.MockTransport(echo))) as client:
        client.get("http://service-provider/")  # a response read at once
        assert V1.active == 0

    def boom(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    failing = httpx.Client(transport=RoutingTransport(routed, httpx.MockTransport(boom)))
    with failing, pytest.raises(httpx.ConnectError):
        failing.get("http://service-provider/")
    assert V1.active == 0


async def test_async_httpx_transport(routed: ServiceDirectory, manager: LaneManager) -> None:
    async def aecho(request: httpx.Request) -> httpx.Response:
        return echo(request)

    async with httpx.AsyncClient(
        transport=AsyncRoutingTransport(routed, httpx.MockTransport(aecho))
    ) as client:
        response = await client.get("http://service-provider/a", headers={"tag": "v2"})
        assert response.json()["url"] == "http://127.0.0.1:8002/a"
        with manager.use("Gray"):
            body = (await client.get("http://service-provider/b")).json()
        assert body["lane"] == "Gray" and body["url"] == "http://127.0.0.1:8001/b"  # router sends to v1
        assert V1.active == 0 and V2.active == 0
    async with async_routing_client(routed, transport=httpx.MockTransport(aecho)) as client:
        assert (await client.get("http://service-provider/")).json()["url"] == "http://127.0.0.1:8001/"


# --- requests ---------------------------------------------------------------------------------


class _Echo(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps(
            {
                "port": self.server.server_address[1],
                "path": self.path,
                "host": self.headers.get("host"),
                "lane": self.headers.get("x-opensergo-traffic"),
                "baggage": self.headers.get("baggage"),
            }
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def http_servers() -> Iterator[list[int]]:
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), _Echo) for _ in range(2)]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for t in threads:
        t.start()
    try:
        yield [s.server_address[1] for s in servers]
    finally:
        for s in servers:
            s.shutdown()
            s.server_close()


def test_requests_adapter(http_servers: list[int], manager: LaneManager) -> None:
    v1 = provider("v1", http_servers[0], version="v1")
    v2 = provider("v2", http_servers[1], version="v2", tag="gray")
    d = directory([v1, v2], [router(CANONICAL)], lanes=manager)
    with routing_session(d) as session:
        body = session.get("http://service-provider/hi?a=1", headers={"tag": "v2"}, timeout=5).json()
        assert body == {
            "port": http_servers[1],
            "path": "/hi?a=1",
            "host": "service-provider",
            "lane": None,
            "baggage": None,
        }
        with manager.use("Gray"):
            body = session.get("http://service-provider/", timeout=5).json()
        assert (body["port"], body["lane"], body["baggage"]) == (
            http_servers[0],
            "Gray",
            "x-opensergo-traffic=Gray",
        )
        with session.get("http://service-provider/", stream=True, timeout=5) as response:
            assert v1.active == 1
            response.json()
        assert v1.active == 0
        # Other hosts pass through.
        assert session.get(f"http://127.0.0.1:{http_servers[1]}/x", timeout=5).json()["path"] == "/x"
    d.update_instances(SERVICE, [])
    with routing_session(d) as session, pytest.raises(requests.ConnectionError, match="OpenSergo routing"):
        session.get("http://service-provider/", timeout=5)


# --- gRPC -------------------------------------------------------------------------------------


def _grpc_server(name: str) -> tuple[grpc.Server, int]:
    def call(request: bytes, context: grpc.ServicerContext) -> bytes:
        metadata = dict(context.invocation_metadata())
        return json.dumps(
            {
                "name": name,
                "request": request.decode(),
                "lane": metadata.get("x-opensergo-traffic"),
                "baggage": metadata.get("baggage"),
            }
        ).encode()

    def stream(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        for n in range(3):
            yield f"{name}-{n}".encode()

    handler = grpc.method_handlers_generic_handler(
        "test.Echo",
        {
            "Call": grpc.unary_unary_rpc_method_handler(call),
            "Stream": grpc.unary_stream_rpc_method_handler(stream),
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


def test_grpc_routing_channel(manager: LaneManager) -> None:
    (s1, p1), (s2, p2) = _grpc_server("v1"), _grpc_server("v2")
    try:
        v1 = provider("v1", p1, "grpc", version="v1")
        v2 = provider("v2", p2, "grpc", version="v2")
        d = directory([v1, v2], [router(CANONICAL)], lanes=manager)
        with routing_channel(d, SERVICE) as channel:
            call = channel.unary_unary("/test.Echo/Call")
            assert json.loads(call(b"x", timeout=5))["name"] == "v1"
            assert json.loads(call(b"x", timeout=5, metadata=(("tag", "v2"),)))["name"] == "v2"
            with manager.use("Gray"):
                body = json.loads(call.future(b"y", timeout=5).result())
            assert (body["lane"], body["baggage"]) == ("Gray", "x-opensergo-traffic=Gray")
            response, rpc = call.with_call(b"z", timeout=5, metadata=(("tag", "v2"),))
            assert json.loads(response)["name"] == "v2" and rpc.code() == grpc.StatusCode.OK
            responses = channel.unary_stream("/test.Echo/Stream")(b"", timeout=5, metadata=(("tag", "v2"),))
            assert list(responses) == [b"v2-0", b"v2-1", b"v2-2"]
            assert v1.active == 0 and v2.active == 0
            assert set(channel.channels()) == {("127.0.0.1", p1), ("127.0.0.1", p2)}
            # v2 leaves: its sub-channel is closed when the next new one is opened.
            d.update_instances(SERVICE, [v1])
            assert json.loads(call(b"x", timeout=5, metadata=(("tag", "v2"),)))["name"] == "v1"  # fallback
            d.update_instances(SERVICE, [])
            with pytest.raises(RoutingRpcError) as info:
                call(b"x", timeout=5)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        s1.stop(None)
        s2.stop(None)


def test_grpc_no_route_is_unimplemented(manager: LaneManager) -> None:
    d = directory(
        [provider("v1", 1, "grpc", version="v1")],
        [
            simple_router(
                [
                    {
                        "match": [{"headers": {"x": {"exact": "1"}}}],
                        "route": [{"destination": {"host": SERVICE}}],
                    }
                ]
            )
        ],
        lanes=manager,
    )
    channel = routing_channel(d, SERVICE)
    with pytest.raises(RoutingRpcError) as info:
        channel.unary_unary("/test.Echo/Call")(b"")
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    channel.close()


def test_grpc_stub_style_methods_match_paths(manager: LaneManager) -> None:
    (s1, p1), (s2, p2) = _grpc_server("v1"), _grpc_server("v2")
    try:
        http = [
            {
                "match": [{"uri": {"prefix": "/test.Echo/"}, "headers": {"tag": {"exact": "v2"}}}],
                "route": [{"destination": {"host": SERVICE, "subset": "v2"}}],
            },
            {"route": [{"destination": {"host": SERVICE, "subset": "v1"}}]},
        ]
        d = directory(
            [provider("v1", p1, "grpc", version="v1"), provider("v2", p2, "grpc", version="v2")],
            [simple_router(http)],
            lanes=manager,
        )
        channel = routing_channel(d, SERVICE)
        # Generated stubs pass _registered_method=True.
        call = channel.unary_unary("/test.Echo/Call", None, None, _registered_method=True)
        assert json.loads(call(b"", timeout=5, metadata=[("tag", "v2")]))["name"] == "v2"
        channel.close()
    finally:
        s1.stop(None)
        s2.stop(None)


def test_url_rewrite_fast_path_matches_copy_with() -> None:
    from opensergo.integrations.httpx import _with_address

    for original, address, port in (
        ("http://service-provider/a/b?x=1&y=%20#f", "10.0.0.5", 8080),
        ("http://service-provider:9000/", "10.0.0.5", 80),
        ("https://svc.default.svc.cluster.local/p", "Host-Name", 443),
        ("http://service-provider/", "::1", 8080),  # IPv6: the copy_with path
    ):
        url = httpx.URL(original)
        assert _with_address(url, address, port) == url.copy_with(host=address, port=port)
