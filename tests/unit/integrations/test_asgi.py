"""The ASGI middleware with real Starlette / FastAPI apps, in process (httpx ASGITransport)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI, HTTPException
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Host, Mount, Route

from opensergo.governance import CircuitBreakerOpenError, Engine, FallbackResponse, ManualClock
from opensergo.governance.routing import lanes
from opensergo.integrations.asgi import OpenSergoMiddleware, RouteResolver

from .conftest import apply, concurrency, error_breaker, fallback, limit, rule, throttling

pytestmark = pytest.mark.unit


def fastapi_app(engine: Engine, **options: Any) -> FastAPI:
    app = FastAPI()
    users = APIRouter(prefix="/api")

    @app.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "world"}

    @app.get("/users/{user_id}")
    async def user(user_id: int) -> dict[str, int]:
        return {"id": user_id}

    @users.get("/items/{item_id}")
    async def item(item_id: str) -> dict[str, str]:
        return {"item": item_id}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    @app.get("/status/{code}")
    async def status(code: int) -> Response:
        if code == 404:
            raise HTTPException(404)
        return PlainTextResponse("x", status_code=code)

    @app.get("/lane")
    async def lane() -> dict[str, str | None]:
        return {"lane": lanes.current_name()}

    app.include_router(users)
    app.add_middleware(OpenSergoMiddleware, engine=engine, **options)
    return app


def client(app: Any, raise_exceptions: bool = True) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_exceptions)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def scope(path: str, method: str = "GET", host: str = "test") -> dict[str, Any]:
    return {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", host.encode())],
    }


async def test_fastapi_route_template_is_the_resource(engine: Engine) -> None:
    limit(engine, "GET:/users/{user_id}", 1)
    async with client(fastapi_app(engine)) as c:
        assert (await c.get("/users/1")).status_code == 200
        blocked = await c.get("/users/2")  # another id, same template
        assert blocked.status_code == 429
        assert (await c.get("/hello")).status_code == 200
    assert engine.block_counts() == {("GET:/users/{user_id}", "r", "rl"): 1}


async def test_router_prefix_is_part_of_the_template(engine: Engine) -> None:
    limit(engine, "GET:/api/items/{item_id}", 1)
    async with client(fastapi_app(engine)) as c:
        assert (await c.get("/api/items/a")).status_code == 200
        assert (await c.get("/api/items/b")).status_code == 429


def test_route_resolver_mounts_hosts_converters_and_partial_matches() -> None:
    async def endpoint(request: Request) -> Response:  # pragma: no cover - never called
        return PlainTextResponse("")

    inner = Starlette(routes=[Route("/v1/{name}", endpoint)])
    routes = [
        Route("/items/{item_id:int}", endpoint),
        Route("/only-post", endpoint, methods=["POST"]),
        Mount(
            "/api", routes=[Route("/users/{id}", endpoint), Mount("/deep", routes=[Route("/x", endpoint)])]
        ),
        Mount("/sub", app=inner),
        Mount("/static", app=PlainTextResponse("static")),
        Host("admin.example.com", app=Starlette(routes=[Route("/panel", endpoint)])),
    ]
    mw = OpenSergoMiddleware(PlainTextResponse("x"), routes=routes)
    assert mw.resource_name(scope("/items/3")) == "GET:/items/{item_id}"
    assert mw.resource_name(scope("/only-post")) == "GET:/only-post"  # 405: still the route
    assert mw.resource_name(scope("/api/users/7")) == "GET:/api/users/{id}"
    assert mw.resource_name(scope("/api/deep/x", "PUT")) == "PUT:/api/deep/x"
    assert mw.resource_name(scope("/sub/v1/bob")) == "GET:/sub/v1/{name}"
    assert mw.resource_name(scope("/static/css/site.css")) == "GET:/static/{path}"
    assert mw.resource_name(scope("/panel", host="admin.example.com")) == "GET:/panel"
    assert mw.resource_name(scope("/panel", host="www.example.com")) == "GET:/panel"  # raw path
    assert mw.resource_name(scope("/nothing/here")) == "GET:/nothing/here"


def test_route_resolver_caches_per_method_and_path() -> None:
    calls = 0

    class Counting(Route):
        def matches(self, scope: Any) -> Any:
            nonlocal calls
            calls += 1
            return super().matches(scope)

    resolver = RouteResolver([Counting("/a/{x}", PlainTextResponse(""))])
    for _ in range(3):
        assert resolver.template(scope("/a/1")) == "/a/{x}"
    assert calls == 1
    assert resolver.template(scope("/a/1", "POST")) == "/a/{x}"
    assert calls == 2


async def test_wrapping_the_app_resolves_from_its_routes(engine: Engine) -> None:
    async def endpoint(request: Request) -> Response:
        return PlainTextResponse(request.path_params["name"])

    app = Starlette(routes=[Route("/hi/{name}", endpoint)])
    limit(engine, "GET:/hi/{name}", 1)
    async with client(OpenSergoMiddleware(app, engine=engine)) as c:
        assert (await c.get("/hi/a")).text == "a"
        assert (await c.get("/hi/b")).status_code == 429


async def test_blocked_request_gets_the_rules_fallback_action(engine: Engine) -> None:
    action = fallback(
        "busy", 503, '{"error": "busy"}', [("Content-Type", "application/json"), ("X-Reason", "busy")]
    )
    limit(engine, "GET:/hello", 1, action="busy", extra=action)
    async with client(fastapi_app(engine)) as c:
        assert (await c.get("/hello")).status_code == 200
        blocked = await c.get("/hello")
    assert blocked.status_code == 503
    assert blocked.json() == {"error": "busy"}
    assert blocked.headers["x-reason"] == "busy"
    assert blocked.headers["content-type"] == "application/json"
    assert blocked.headers["content-length"] == str(len(blocked.content))


async def test_default_block_response_and_its_configuration(engine: Engine) -> None:
    limit(engine, "GET:/hello", 0)
    async with client(fastapi_app(engine)) as c:
        blocked = await c.get("/hello")
    assert blocked.status_code == 429
    assert blocked.text == "Blocked by OpenSergo (flow limiting)"
    assert blocked.headers["content-type"].startswith("text/plain")

    custom = FallbackResponse(503, "try later", (("Retry-After", "1"),))
    async with client(fastapi_app(engine, default_response=custom)) as c:
        blocked = await c.get("/hello")
    assert (blocked.status_code, blocked.text, blocked.headers["retry-after"]) == (503, "try later", "1")


async def test_block_handler_renders_blocks(engine: Engine) -> None:
    limit(engine, "GET:/hello", 0)
    seen = []

    def handler(error: Any) -> FallbackResponse:
        seen.append((error.rule, error.strategy, error.kind))
        return FallbackResponse(418, f"blocked by {error.strategy}")

    async with client(fastapi_app(engine, block_handler=handler)) as c:
        blocked = await c.get("/hello")
    assert (blocked.status_code, blocked.text) == (418, "blocked by rl")
    assert seen == [("r", "rl", "RateLimitStrategy")]


async def test_blocks_are_logged_at_debug(engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    limit(engine, "GET:/hello", 0)
    with caplog.at_level(logging.DEBUG, logger="opensergo.governance"):
        async with client(fastapi_app(engine)) as c:
            await c.get("/hello")
    assert any("GET:/hello" in r.getMessage() and "'rl'" in r.getMessage() for r in caplog.records)


async def test_exceptions_count_as_errors_and_propagate(engine: Engine) -> None:
    apply(
        engine,
        error_breaker("cb", min_requests=2),
        rule("r", ["GET:/boom"], [("cb", "CircuitBreakerStrategy")]),
    )
    app = fastapi_app(engine)
    async with client(app) as c:
        for _ in range(2):
            with pytest.raises(RuntimeError, match="boom"):
                await c.get("/boom")
        blocked = await c.get("/boom")
    assert blocked.status_code == 429
    breaker = engine.breaker("GET:/boom", "cb")
    assert breaker is not None and breaker.current_state.name == "OPEN"


async def test_5xx_counts_as_error_4xx_does_not(engine: Engine) -> None:
    apply(
        engine,
        error_breaker("cb", min_requests=2),
        rule("r", ["GET:/status/{code}"], [("cb", "CircuitBreakerStrategy")]),
    )
    async with client(fastapi_app(engine)) as c:
        for _ in range(4):
            assert (await c.get("/status/404")).status_code == 404
            assert (await c.get("/status/200")).status_code == 200
        breaker = engine.breaker("GET:/status/{code}", "cb")
        assert breaker is not None and breaker.current_state.name == "CLOSED"
        assert (await c.get("/status/502")).status_code == 502
        assert (await c.get("/status/503")).status_code == 503
        # 2 errors out of 10: still closed (20% < 50%); now a burst of 5xx
        for _ in range(8):
            await c.get("/status/500")
        assert breaker.current_state.name == "OPEN"
        assert (await c.get("/status/200")).status_code == 429


async def test_error_status_threshold_is_configurable(engine: Engine) -> None:
    apply(
        engine,
        error_breaker("cb", min_requests=2),
        rule("r", ["GET:/status/{code}"], [("cb", "CircuitBreakerStrategy")]),
    )
    async with client(fastapi_app(engine, error_status=400)) as c:
        await c.get("/status/404")
        await c.get("/status/404")
        assert (await c.get("/status/200")).status_code == 429


async def test_concurrency_slot_is_held_until_the_response_ends(engine: Engine) -> None:
    apply(engine, concurrency("one", 1), rule("r", ["GET:/slow"], [("one", "ConcurrencyLimitStrategy")]))
    started = asyncio.Event()
    release = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        started.set()
        await release.wait()
        yield b"done"

    async def slow(request: Request) -> Response:
        from starlette.responses import StreamingResponse

        return StreamingResponse(body())

    app = OpenSergoMiddleware(Starlette(routes=[Route("/slow", slow)]), engine=engine)
    async with client(app) as c:
        first = asyncio.create_task(c.get("/slow"))
        await started.wait()
        assert engine.in_flight("GET:/slow") == 1
        assert (await c.get("/slow")).status_code == 429
        release.set()
        assert (await first).text == "done"
        assert engine.in_flight("GET:/slow") == 0
        release.clear()
        started.clear()
        task = asyncio.create_task(c.get("/slow"))
        await started.wait()
        release.set()
        assert (await task).status_code == 200


async def test_throttled_requests_wait_without_blocking_the_loop() -> None:
    engine = Engine()  # real clock: the waits are real
    apply(
        engine, throttling("pace", "100ms", "1s"), rule("r", ["GET:/hello"], [("pace", "ThrottlingStrategy")])
    )
    ticks = 0
    stop = False

    async def ticker() -> None:
        nonlocal ticks
        while not stop:
            ticks += 1
            await asyncio.sleep(0.01)

    async with client(fastapi_app(engine)) as c:
        tick_task = asyncio.create_task(ticker())
        start = time.monotonic()
        responses = await asyncio.gather(*(c.get("/hello") for _ in range(3)))
        elapsed = time.monotonic() - start
        stop = True
        await tick_task
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert elapsed >= 0.18  # paced 100 ms apart
    assert ticks >= 10  # the loop kept running while requests queued


async def test_request_enters_its_lane(engine: Engine) -> None:
    async with client(fastapi_app(engine)) as c:
        assert (await c.get("/lane", headers={"x-opensergo-traffic": "gray"})).json() == {"lane": "gray"}
        assert (await c.get("/lane", headers={"baggage": "x-opensergo-traffic=blue"})).json() == {
            "lane": "blue"
        }
        assert (await c.get("/lane")).json() == {"lane": None}
    assert lanes.current() is None


async def test_lanes_can_be_turned_off(engine: Engine) -> None:
    async with client(fastapi_app(engine, lanes=False)) as c:
        assert (await c.get("/lane", headers={"x-opensergo-traffic": "gray"})).json() == {"lane": None}


async def test_custom_resource_naming(engine: Engine) -> None:
    limit(engine, "api", 1)
    async with client(fastapi_app(engine, resource=lambda s: "api")) as c:
        assert (await c.get("/hello")).status_code == 200
        assert (await c.get("/users/1")).status_code == 429


async def test_non_http_scopes_pass_through(engine: Engine) -> None:
    limit(engine, "GET:/hello", 0)
    seen: list[str] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    mw = OpenSergoMiddleware(inner, engine=engine)

    async def receive() -> dict[str, Any]:  # pragma: no cover - never called
        return {}

    async def send(message: Any) -> None:  # pragma: no cover - never called
        pass

    await mw({"type": "lifespan"}, receive, send)
    await mw({"type": "websocket", "path": "/hello"}, receive, send)
    assert seen == ["lifespan", "websocket"]


async def test_rule_changes_apply_to_the_next_request(clock: ManualClock, engine: Engine) -> None:
    async with client(fastapi_app(engine)) as c:
        assert (await c.get("/hello")).status_code == 200
        limit(engine, "GET:/hello", 0)
        assert (await c.get("/hello")).status_code == 429
        engine.clear()
        assert (await c.get("/hello")).status_code == 200


def test_breaker_error_type_is_exported() -> None:
    assert issubclass(CircuitBreakerOpenError, Exception)


async def test_nested_middlewares_guard_once(engine: Engine) -> None:
    limit(engine, "GET:/hello", 1)
    app = OpenSergoMiddleware(fastapi_app(engine), engine=engine)  # twice: outside and inside
    async with client(app) as c:
        assert (await c.get("/hello")).status_code == 200  # would be blocked if counted twice
        assert (await c.get("/hello")).status_code == 429
