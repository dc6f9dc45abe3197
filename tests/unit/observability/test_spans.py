"""Server and client spans of every integration, with OpenSergo's attributes, in process.

Real frameworks (Starlette, Flask, Django, grpc and grpc.aio servers on loopback, httpx,
requests and gRPC clients against real loopback servers); the spans go to memory.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import grpc.aio
import httpx
import pytest
import requests
from flask import Flask
from opentelemetry.trace import SpanKind, StatusCode
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from opensergo.common import trace_names as tn
from opensergo.governance import Engine
from opensergo.governance.routing import Instance, lanes
from opensergo.integrations.asgi import OpenSergoMiddleware
from opensergo.integrations.grpc_client import routing_channel
from opensergo.integrations.grpc_server import AioServerInterceptor, ServerInterceptor
from opensergo.integrations.httpx import RoutingTransport
from opensergo.integrations.requests import routing_session
from opensergo.integrations.wsgi import instrument_flask
from tests.unit.integrations.conftest import limit
from tests.unit.routing.helpers import CANONICAL, SERVICE, directory, router

from .conftest import Traced

pytestmark = pytest.mark.unit

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT}-01"
log = logging.getLogger("tests.spans")
log.setLevel(logging.INFO)  # the app decides what it logs; the handler exports INFO and up


def _server_span(traced: Traced) -> Any:
    found = [s for s in traced.spans() if s.kind is SpanKind.SERVER]
    assert len(found) == 1, [(s.name, s.kind) for s in traced.spans()]
    return found[0]


# --- ASGI -------------------------------------------------------------------------------------


def starlette_app(engine: Engine) -> Starlette:
    async def user(request: Request) -> JSONResponse:
        log.info("handling user %s", request.path_params["user_id"])
        return JSONResponse({"lane": lanes.current_name()})

    app = Starlette(routes=[Route("/users/{user_id:int}", user)])
    app.add_middleware(OpenSergoMiddleware, engine=engine)
    return app


async def test_asgi_server_span_continues_the_trace_with_our_attributes(
    traced: Traced, engine: Engine
) -> None:
    app = starlette_app(engine)
    headers = {"traceparent": TRACEPARENT, "baggage": "x-opensergo-traffic=gray,other=1"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        response = await client.get("/users/42", headers=headers)
    assert response.json() == {"lane": "gray"}
    span = _server_span(traced)
    assert span.name == "GET /users/{user_id}"
    assert f"{span.context.trace_id:032x}" == TRACE_ID
    assert span.parent is not None and f"{span.parent.span_id:016x}" == PARENT
    attributes = dict(span.attributes or {})
    assert attributes[tn.RESOURCE] == "GET:/users/{user_id}"
    assert attributes[tn.HTTP_ROUTE] == "/users/{user_id}"
    assert attributes[tn.LANE] == "gray"
    assert attributes.get("http.status_code", attributes.get("http.response.status_code")) == 200
    assert tn.BLOCKED not in attributes
    # The log record of the handler carries the request's trace and span.
    traced.handle.force_flush()
    records = [
        r.log_record for r in traced.logs.get_finished_logs() if r.log_record.body == "handling user 42"
    ]
    assert len(records) == 1
    assert records[0].trace_id == span.context.trace_id and records[0].span_id == span.context.span_id


async def test_asgi_blocked_request_has_a_span_naming_the_rule(traced: Traced, engine: Engine) -> None:
    limit(engine, "GET:/users/{user_id}", 0)
    app = starlette_app(engine)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        assert (await client.get("/users/1")).status_code == 429
    attributes = dict(_server_span(traced).attributes or {})
    assert attributes[tn.BLOCKED] is True
    assert (attributes[tn.RULE], attributes[tn.STRATEGY]) == ("r", "rl")
    assert attributes[tn.STRATEGY_KIND] == "RateLimitStrategy"
    assert attributes[tn.RESOURCE] == "GET:/users/{user_id}"


async def test_fastapi_native_server_span_is_annotated_not_doubled(traced: Traced, engine: Engine) -> None:
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/orders/{order_id}")
    async def order(order_id: int) -> dict[str, int]:
        return {"id": order_id}

    app.add_middleware(OpenSergoMiddleware, engine=engine)
    limit(engine, "GET:/orders/{order_id}", 1)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        assert (await client.get("/orders/1", headers={"traceparent": TRACEPARENT})).status_code == 200
        assert (await client.get("/orders/2", headers={"traceparent": TRACEPARENT})).status_code == 429
    servers = [s for s in traced.spans() if s.kind is SpanKind.SERVER]
    assert len(servers) == 2  # one per request: FastAPI's own, with our attributes on it
    first, second = sorted(servers, key=lambda s: s.start_time or 0)
    assert dict(first.attributes or {})[tn.RESOURCE] == "GET:/orders/{order_id}"
    assert f"{first.context.trace_id:032x}" == TRACE_ID
    assert tn.BLOCKED not in (first.attributes or {})
    assert dict(second.attributes or {})[tn.BLOCKED] is True


async def test_no_spans_while_tracing_is_off(engine: Engine) -> None:
    from opensergo.observability import spans

    assert not spans.enabled()
    app = starlette_app(engine)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        assert (await client.get("/users/42")).status_code == 200


# --- WSGI: Flask and Django -------------------------------------------------------------------


def test_flask_server_span(traced: Traced, engine: Engine) -> None:
    app = Flask("demo")

    @app.get("/items/<int:item_id>")
    def item(item_id: int) -> dict[str, Any]:
        return {"lane": lanes.current_name()}

    instrument_flask(app, engine=engine)
    response = app.test_client().get(
        "/items/7", headers={"traceparent": TRACEPARENT, "x-opensergo-traffic": "blue"}
    )
    assert response.json == {"lane": "blue"}
    span = _server_span(traced)
    assert span.name == "GET /items/<int:item_id>"
    assert f"{span.context.trace_id:032x}" == TRACE_ID
    attributes = dict(span.attributes or {})
    assert attributes[tn.RESOURCE] == "GET:/items/<item_id>"
    assert attributes[tn.HTTP_ROUTE] == "/items/<int:item_id>"
    assert attributes[tn.LANE] == "blue"
    # An unmatched path: the span keeps the method alone (no raw path as a span name).
    traced.exporter.clear()
    with app.test_client().get("/nope") as missing:  # the span ends when the body is closed
        assert missing.status_code == 404
    span = _server_span(traced)
    assert span.name == "GET" and tn.HTTP_ROUTE not in (span.attributes or {})


def test_django_server_span() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tests.unit.observability.django_spans", "/api/users/42", TRACEPARENT],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    span = json.loads(out.stdout.strip().splitlines()[-1])
    assert span["status"].startswith("200") and span["kind"] == "SERVER"
    assert span["trace_id"] == TRACE_ID
    assert span["name"] == "GET /api/users/<int:user_id>"
    assert span["attributes"][tn.RESOURCE] == "GET:/api/users/<user_id>"
    assert span["attributes"][tn.HTTP_ROUTE] == "/api/users/<int:user_id>"


# --- gRPC servers -----------------------------------------------------------------------------


def _echo_handler() -> grpc.GenericRpcHandler:
    def call(request: bytes, context: grpc.ServicerContext) -> bytes:
        return json.dumps({"lane": lanes.current_name()}).encode()

    return grpc.method_handlers_generic_handler(
        "test.Echo", {"Call": grpc.unary_unary_rpc_method_handler(call)}
    )


def test_grpc_sync_server_span(traced: Traced, engine: Engine) -> None:
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=2), interceptors=[ServerInterceptor(engine=engine)]
    )
    server.add_generic_rpc_handlers((_echo_handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        tracer = traced.handle.tracer_provider.get_tracer("test")
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary("/test.Echo/Call")
            with tracer.start_as_current_span("caller") as caller:
                metadata = (("x-opensergo-traffic", "gray"),)
                assert json.loads(call(b"x", timeout=5, metadata=metadata)) == {"lane": "gray"}
            limit(engine, "/test.Echo/Call", 0)
            with pytest.raises(grpc.RpcError) as info:
                call(b"x", timeout=5)
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        server.stop(None)
    servers = [s for s in traced.spans() if s.kind is SpanKind.SERVER]
    assert len(servers) == 2
    first, second = servers
    assert first.name == "/test.Echo/Call"
    assert first.context.trace_id == caller.get_span_context().trace_id  # through the client span
    assert dict(first.attributes or {})[tn.RESOURCE] == "/test.Echo/Call"
    assert dict(first.attributes or {})[tn.LANE] == "gray"
    assert dict(first.attributes or {})["rpc.system"] == "grpc"
    assert dict(second.attributes or {})[tn.BLOCKED] is True
    # RESOURCE_EXHAUSTED is not a server error by the gRPC conventions: status left unset.
    assert (
        dict(second.attributes or {})["rpc.grpc.status_code"] == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    )
    assert second.status.status_code is StatusCode.UNSET


async def test_grpc_aio_server_span(traced: Traced, engine: Engine) -> None:
    async def call(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        return json.dumps({"lane": lanes.current_name()}).encode()

    handler = grpc.method_handlers_generic_handler(
        "test.Echo", {"Call": grpc.unary_unary_rpc_method_handler(call)}
    )
    server = grpc.aio.server(interceptors=[AioServerInterceptor(engine=engine)])
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    tracer = traced.handle.tracer_provider.get_tracer("test")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            with tracer.start_as_current_span("caller") as caller, lanes.use("gray"):
                reply = await channel.unary_unary("/test.Echo/Call")(b"x", timeout=5)
            assert json.loads(reply) == {"lane": "gray"}  # through the OTel baggage alone
    finally:
        await server.stop(None)
    server_span = _server_span(traced)
    assert server_span.context.trace_id == caller.get_span_context().trace_id
    assert dict(server_span.attributes or {})[tn.RESOURCE] == "/test.Echo/Call"


# --- clients: httpx, requests, gRPC with routing ----------------------------------------------


class _Echo(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps(
            {
                "port": self.server.server_address[1],
                "traceparent": self.headers.get("traceparent"),
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
    for s in servers:
        threading.Thread(target=s.serve_forever, daemon=True).start()
    try:
        yield [s.server_address[1] for s in servers]
    finally:
        for s in servers:
            s.shutdown()
            s.server_close()


def provider(name: str, port: int, protocol: str = "http", **labels: str) -> Instance:
    return Instance(SERVICE, name, [("127.0.0.1", port, protocol)], labels, 100, name)


def _client_span(traced: Traced) -> Any:
    found = [s for s in traced.spans() if s.kind is SpanKind.CLIENT]
    assert len(found) == 1, [(s.name, s.kind) for s in traced.spans()]
    return found[0]


def _check_routed_client_span(traced: Traced, span: Any, subset: str, instance: str) -> None:
    attributes = dict(span.attributes or {})
    assert attributes[tn.ROUTE_HOST] == SERVICE
    assert attributes[tn.SUBSET] == subset
    assert attributes[tn.INSTANCE] == instance
    assert attributes[tn.LANE] == "Gray"
    assert str(attributes[tn.ROUTE_RULE])


def test_httpx_client_span_routes_and_propagates(traced: Traced, http_servers: list[int]) -> None:
    v1 = provider("v1", http_servers[0], version="v1")
    v2 = provider("v2", http_servers[1], version="v2")
    d = directory([v1, v2], [router(CANONICAL)], lanes=lanes.default_manager())
    tracer = traced.handle.tracer_provider.get_tracer("test")
    with (
        httpx.Client(transport=RoutingTransport(d)) as client,
        tracer.start_as_current_span("parent") as parent,
        lanes.use("Gray"),
    ):
        body = client.get("http://service-provider/x", headers={"tag": "v2"}).json()
    assert body["port"] == http_servers[1]
    trace_id = f"{parent.get_span_context().trace_id:032x}"
    assert body["traceparent"].split("-")[1] == trace_id
    assert "x-opensergo-traffic=Gray" in body["baggage"]
    span = _client_span(traced)
    assert span.parent is not None and span.parent.span_id == parent.get_span_context().span_id
    _check_routed_client_span(traced, span, "v2", "v2")


def test_requests_client_span_routes_and_propagates(traced: Traced, http_servers: list[int]) -> None:
    v1 = provider("v1", http_servers[0], version="v1")
    d = directory([v1], [router(CANONICAL)], lanes=lanes.default_manager())
    with routing_session(d) as session, lanes.use("Gray"):
        body = session.get("http://service-provider/y", timeout=5).json()
    assert body["port"] == http_servers[0] and body["traceparent"]
    span = _client_span(traced)
    assert span.attributes is not None
    assert body["traceparent"].split("-")[2] == f"{span.context.span_id:016x}"
    _check_routed_client_span(traced, span, "v1", "v1")
    # A plain requests call (not routed) has a client span too.
    traced.exporter.clear()
    assert requests.get(f"http://127.0.0.1:{http_servers[0]}/z", timeout=5).status_code == 200
    assert tn.ROUTE_HOST not in (_client_span(traced).attributes or {})


def test_grpc_client_span_routes_and_propagates(traced: Traced) -> None:
    seen: list[dict[str, str]] = []

    def call(request: bytes, context: grpc.ServicerContext) -> bytes:
        seen.append({k: v for k, v in context.invocation_metadata() if isinstance(v, str)})
        return b"ok"

    handler = grpc.method_handlers_generic_handler(
        "test.Echo", {"Call": grpc.unary_unary_rpc_method_handler(call)}
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        d = directory(
            [provider("v1", port, "grpc", version="v1")], [router(CANONICAL)], lanes=lanes.default_manager()
        )
        with routing_channel(d, SERVICE) as channel, lanes.use("Gray"):
            assert channel.unary_unary("/test.Echo/Call")(b"x", timeout=5) == b"ok"
    finally:
        server.stop(None)
    span = _client_span(traced)
    assert seen[0]["traceparent"].split("-")[1] == f"{span.context.trace_id:032x}"
    assert "x-opensergo-traffic=Gray" in seen[0]["baggage"]
    _check_routed_client_span(traced, span, "v1", "v1")
