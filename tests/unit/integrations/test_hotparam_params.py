"""Hot-parameter limits through the inbound integrations: each source read from real requests
(FastAPI over httpx's ASGI transport, Flask over werkzeug's client, Django in its own process,
gRPC on real loopback servers)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from concurrent import futures
from typing import Any

import grpc
import grpc.aio
import httpx
import pytest
from fastapi import FastAPI
from flask import Flask
from werkzeug.test import Client

from opensergo.governance import Engine, load_rules
from opensergo.integrations.asgi import OpenSergoMiddleware
from opensergo.integrations.grpc_server import AioServerInterceptor, ServerInterceptor
from opensergo.integrations.params import path_value, peer_host, query_value
from opensergo.integrations.wsgi import OpenSergoWSGIMiddleware, instrument_flask

pytestmark = pytest.mark.unit

HEAD = "apiVersion: fault-tolerance.opensergo.io/v1alpha1\n"


def hot_rule(target: str, param: str, threshold: int = 2) -> str:
    return (
        f"{HEAD}kind: HotParamRateLimitStrategy\nmetadata: {{name: hot}}\n"
        f"spec: {{param: {param}, threshold: {threshold}, statDuration: 1m}}\n---\n"
        f"{HEAD}kind: FaultToleranceRule\nmetadata: {{name: r}}\n"
        f"spec: {{targets: [{{targetResourceName: '{target}'}}], strategies: [{{name: hot}}]}}\n"
    )


def limited(engine: Engine, target: str, param: str, threshold: int = 2) -> Engine:
    result = load_rules(hot_rule(target, param, threshold), app=None, engine=engine)
    assert not result.problems
    return engine


# -- the readers ----------------------------------------------------------------------------


def test_query_value() -> None:
    assert query_value("a=1&user_id=u%201&user_id=second", "user_id") == "u 1"
    assert query_value("flag&x=1", "flag") == ""
    assert query_value("a=1", "user_id") is None
    assert query_value("", "a") is None


def test_path_value_from_templates() -> None:
    assert path_value("/users/{user_id}", "/users/42", "user_id") == "42"
    assert path_value("/api/users/<int:user_id>/posts/<post>", "/api/users/7/posts/x", "post") == "x"
    assert path_value("/files/<path:name>", "/files/a/b.txt", "name") == "a/b.txt"
    assert path_value("/users/{user_id}", "/users/42/extra", "user_id") is None
    assert path_value("/users/{user_id}", "/users/42", "other") is None
    assert path_value(None, "/users/42", "user_id") is None


def test_peer_host() -> None:
    assert peer_host("ipv4:127.0.0.1:5000") == "127.0.0.1"
    assert peer_host("ipv6:[::1]:5000") == "::1"
    assert peer_host("unix:/tmp/sock") == "/tmp/sock"


# -- ASGI -----------------------------------------------------------------------------------


def fastapi_app(engine: Engine) -> FastAPI:
    app = FastAPI()

    @app.get("/items")
    async def items() -> dict[str, str]:
        return {"ok": "yes"}

    @app.get("/users/{user_id}")
    async def user(user_id: str) -> dict[str, str]:
        return {"id": user_id}

    app.add_middleware(OpenSergoMiddleware, engine=engine)
    return app


def asgi_statuses(
    app: Any, requests: list[tuple[str, dict[str, str]]], client: str = "127.0.0.1"
) -> list[int]:
    async def run() -> list[int]:
        transport = httpx.ASGITransport(app=app, client=(client, 1234))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            return [(await c.get(url, headers=headers)).status_code for url, headers in requests]

    return asyncio.run(run())


@pytest.mark.parametrize(
    ("target", "param", "requests"),
    [
        (
            "GET:/items",
            "{source: query, name: user_id}",
            [
                ("/items?user_id=a", {}),
                ("/items?user_id=a", {}),
                ("/items?user_id=a", {}),
                ("/items?user_id=b", {}),
            ],
        ),
        (
            "GET:/items",
            "{source: header, name: X-User}",
            [
                ("/items", {"x-user": "a"}),
                ("/items", {"X-User": "a"}),
                ("/items", {"X-USER": "a"}),
                ("/items", {"x-user": "b"}),
            ],
        ),
        (
            "GET:/users/{user_id}",
            "{source: path, name: user_id}",
            [("/users/a", {}), ("/users/a", {}), ("/users/a", {}), ("/users/b", {})],
        ),
    ],
)
def test_asgi_sources(target: str, param: str, requests: list[tuple[str, dict[str, str]]]) -> None:
    engine = limited(Engine(), target, param)
    app = fastapi_app(engine)
    assert asgi_statuses(app, requests) == [200, 200, 429, 200]


def test_asgi_client_ip_and_missing_query() -> None:
    engine = limited(Engine(), "GET:/items", "{source: clientIP}", threshold=1)
    app = fastapi_app(engine)
    assert asgi_statuses(app, [("/items", {})] * 2, client="10.0.0.1") == [200, 429]
    assert asgi_statuses(app, [("/items", {})], client="10.0.0.2") == [200]
    engine2 = limited(Engine(), "GET:/items", "{source: query, name: user_id}", threshold=1)
    assert asgi_statuses(fastapi_app(engine2), [("/items", {})] * 5) == [200] * 5


# -- WSGI (Flask) ---------------------------------------------------------------------------


def flask_client(engine: Engine) -> Client:
    app = Flask("hot")

    @app.get("/items")
    def items() -> str:
        return "ok"

    @app.get("/users/<int:user_id>")
    def user(user_id: int) -> str:
        return str(user_id)

    instrument_flask(app, engine=engine)
    return Client(app)


def wsgi_statuses(
    c: Client, requests: list[tuple[str, dict[str, str]]], addr: str = "127.0.0.1"
) -> list[int]:
    out = []
    for url, headers in requests:
        response = c.get(url, headers=headers, environ_overrides={"REMOTE_ADDR": addr})
        response.get_data()
        response.close()
        out.append(response.status_code)
    return out


def test_wsgi_query_header_path_and_client_ip() -> None:
    c = flask_client(limited(Engine(), "GET:/items", "{source: query, name: user_id}"))
    assert wsgi_statuses(c, [("/items?user_id=a", {})] * 3 + [("/items?user_id=b", {}), ("/items", {})]) == [
        200,
        200,
        429,
        200,
        200,
    ]
    c = flask_client(limited(Engine(), "GET:/items", "{source: header, name: X-User}"))
    assert wsgi_statuses(c, [("/items", {"X-User": "a"})] * 3 + [("/items", {"X-User": "b"})]) == [
        200,
        200,
        429,
        200,
    ]
    c = flask_client(limited(Engine(), "GET:/users/<user_id>", "{source: path, name: user_id}"))
    assert wsgi_statuses(c, [("/users/1", {})] * 3 + [("/users/2", {})]) == [200, 200, 429, 200]
    c = flask_client(limited(Engine(), "GET:/items", "{source: clientIP}", threshold=1))
    assert wsgi_statuses(c, [("/items", {})] * 2, addr="10.1.1.1") + wsgi_statuses(
        c, [("/items", {})], addr="10.1.1.2"
    ) == [
        200,
        429,
        200,
    ]


def test_plain_wsgi_app_reads_query() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    engine = limited(Engine(), "GET:/raw", "{source: query, name: k}", threshold=1)
    c = Client(OpenSergoWSGIMiddleware(app, engine=engine))
    assert wsgi_statuses(c, [("/raw?k=1", {}), ("/raw?k=1", {}), ("/raw?k=2", {})]) == [200, 429, 200]


# -- Django (configured once per process, so in a child) -------------------------------------


def test_django_path_parameters_come_from_the_resolver() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tests.unit.integrations.django_hotparam"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(out.stdout) == {"api": [200, 200, 429, 200], "article": [200, 429, 200]}, out.stderr


# -- gRPC -----------------------------------------------------------------------------------

METHOD = "/demo.Svc/Unary"


def handlers() -> grpc.GenericRpcHandler:
    def unary(request: bytes, context: grpc.ServicerContext) -> bytes:
        return b"ok"

    return grpc.method_handlers_generic_handler(
        "demo.Svc", {"Unary": grpc.unary_unary_rpc_method_handler(unary)}
    )


def codes(channel: grpc.Channel, users: list[str | None]) -> list[str]:
    call = channel.unary_unary(METHOD)
    out = []
    for user in users:
        try:
            call(b"x", metadata=(("x-user", user),) if user is not None else ())
            out.append("OK")
        except grpc.RpcError as err:
            out.append(err.code().name)  # type: ignore[attr-defined]
    return out


def test_grpc_sync_metadata_and_peer() -> None:
    engine = limited(Engine(), METHOD, "{source: grpcMetadata, name: X-User}")
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=4), interceptors=[ServerInterceptor(engine=engine)]
    )
    server.add_generic_rpc_handlers((handlers(),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            assert (
                codes(channel, ["a", "a", "a", "b", None, None, None])
                == ["OK", "OK", "RESOURCE_EXHAUSTED"] + ["OK"] * 4
            )
            limited(engine, METHOD, "{source: clientIP}", threshold=1)
            assert codes(channel, [None, None]) == ["OK", "RESOURCE_EXHAUSTED"]
    finally:
        server.stop(None)


def test_grpc_aio_metadata() -> None:
    engine = limited(Engine(), METHOD, "{source: grpcMetadata, name: x-user}")

    async def run() -> list[str]:
        server = grpc.aio.server(interceptors=[AioServerInterceptor(engine=engine)])

        async def unary(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
            return b"ok"

        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    "demo.Svc", {"Unary": grpc.unary_unary_rpc_method_handler(unary)}
                ),
            )
        )
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        out = []
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                call = channel.unary_unary(METHOD)
                for user in ["a", "a", "a", "b"]:
                    try:
                        await call(b"x", metadata=(("x-user", user),))
                        out.append("OK")
                    except grpc.aio.AioRpcError as err:
                        out.append(err.code().name)
        finally:
            await server.stop(None)
        return out

    assert asyncio.run(run()) == ["OK", "OK", "RESOURCE_EXHAUSTED", "OK"]
