"""Outbound guards: httpx transports (sync, async) and the requests adapter."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import requests
from requests.adapters import BaseAdapter
from requests.models import PreparedRequest, Response

from opensergo.governance import (
    CircuitBreakerOpenError,
    ConcurrencyLimitedError,
    Engine,
    RateLimitedError,
    default_engine,
)
from opensergo.integrations.outbound import (
    AsyncGuardTransport,
    GuardAdapter,
    GuardTransport,
    guard_session,
    httpx_resource,
    requests_resource,
)

from .conftest import apply, concurrency, error_breaker, fallback, limit, rule

pytestmark = pytest.mark.unit

HELLO = "GET:api.example.com/hello"
BUSY = fallback("busy", 503, "busy", [("X-Reason", "busy")])


class Chunks(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body that is not read until the client reads it (as from a real server)."""

    def __init__(self, *chunks: bytes) -> None:
        self.chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk


def responder(status: int = 200) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/down":
            raise httpx.ConnectError("refused", request=request)
        code = int(request.url.params.get("status", status))
        if request.url.params.get("buffered"):
            return httpx.Response(code, text=f"{request.method} {request.url.path}")
        return httpx.Response(code, stream=Chunks(request.method.encode(), b" ", request.url.path.encode()))

    return httpx.MockTransport(handle)


def test_resource_names() -> None:
    assert httpx_resource(httpx.Request("GET", "http://api.example.com/a/b?x=1")) == "GET:api.example.com/a/b"
    assert httpx_resource(httpx.Request("POST", "https://h:443/")) == "POST:h/"
    assert httpx_resource(httpx.Request("GET", "http://h:8080")) == "GET:h:8080/"
    prepared = requests.Request("PUT", "http://h:8080/x?y=1").prepare()
    assert requests_resource(prepared) == "PUT:h:8080/x"
    assert requests_resource(requests.Request("GET", "https://h/").prepare()) == "GET:h/"


def test_httpx_blocked_raises_or_returns_the_fallback(engine: Engine) -> None:
    limit(engine, HELLO, 1, action="busy", extra=BUSY)
    with httpx.Client(transport=GuardTransport(responder(), engine=engine)) as client:
        assert client.get("http://api.example.com/hello").text == "GET /hello"
        with pytest.raises(RateLimitedError) as info:
            client.get("http://api.example.com/hello")
    assert (info.value.resource, info.value.rule, info.value.strategy) == (HELLO, "r", "rl")
    assert info.value.fallback is not None and info.value.fallback.status == 503

    with httpx.Client(transport=GuardTransport(responder(), engine=engine, use_fallback=True)) as client:
        response = client.get("http://api.example.com/hello")
    assert (response.status_code, response.text, response.headers["x-reason"]) == (503, "busy", "busy")


def test_httpx_use_fallback_without_action_still_raises(engine: Engine) -> None:
    limit(engine, HELLO, 0)
    with (
        httpx.Client(transport=GuardTransport(responder(), engine=engine, use_fallback=True)) as client,
        pytest.raises(RateLimitedError),
    ):
        client.get("http://api.example.com/hello")


def test_httpx_5xx_and_transport_errors_count(engine: Engine) -> None:
    apply(
        engine,
        error_breaker("cb", min_requests=3),
        rule("r", ["GET:api.example.com/x", "GET:api.example.com/down"], [("cb", "CircuitBreakerStrategy")]),
    )
    with httpx.Client(transport=GuardTransport(responder(), engine=engine)) as client:
        assert client.get("http://api.example.com/x", params={"status": 404}).status_code == 404
        assert client.get("http://api.example.com/x", params={"status": 503}).status_code == 503
        assert client.get("http://api.example.com/x", params={"status": 502}).status_code == 502
        with pytest.raises(CircuitBreakerOpenError):
            client.get("http://api.example.com/x")  # 2 of 3 failed
        with pytest.raises(httpx.ConnectError):
            client.get("http://api.example.com/down")
        with pytest.raises(httpx.ConnectError):
            client.get("http://api.example.com/down")
        with pytest.raises(httpx.ConnectError):
            client.get("http://api.example.com/down")
        with pytest.raises(CircuitBreakerOpenError):
            client.get("http://api.example.com/down")


def test_httpx_entry_lasts_until_the_response_is_closed(engine: Engine) -> None:
    apply(engine, concurrency("one", 1), rule("r", [HELLO], [("one", "ConcurrencyLimitStrategy")]))
    with httpx.Client(transport=GuardTransport(responder(), engine=engine)) as client:
        with client.stream("GET", "http://api.example.com/hello") as streamed:
            assert engine.in_flight(HELLO) == 1
            with pytest.raises(ConcurrencyLimitedError):
                client.get("http://api.example.com/hello")
            assert streamed.read() == b"GET /hello"
        assert engine.in_flight(HELLO) == 0
        assert client.get("http://api.example.com/hello").status_code == 200
        assert engine.in_flight(HELLO) == 0


def test_httpx_prebuffered_responses_exit_at_once(engine: Engine) -> None:
    apply(engine, concurrency("one", 1), rule("r", [HELLO], [("one", "ConcurrencyLimitStrategy")]))
    with httpx.Client(transport=GuardTransport(responder(), engine=engine)) as client:
        response = client.send(
            client.build_request("GET", "http://api.example.com/hello?buffered=1"), stream=True
        )
        assert engine.in_flight(HELLO) == 0
        response.close()


def test_httpx_custom_resource(engine: Engine) -> None:
    limit(engine, "backend", 1)
    transport = GuardTransport(responder(), engine=engine, resource=lambda r: "backend")
    with httpx.Client(transport=transport) as client:
        client.get("http://a/1")
        with pytest.raises(RateLimitedError):
            client.get("http://b/2")


def test_httpx_default_engine_and_inner_transport() -> None:
    transport = GuardTransport()
    assert transport.engine is default_engine()
    transport.close()


async def test_async_httpx_transport(engine: Engine) -> None:
    limit(engine, HELLO, 1, action="busy", extra=BUSY)
    async with httpx.AsyncClient(transport=AsyncGuardTransport(responder(), engine=engine)) as client:
        assert (await client.get("http://api.example.com/hello")).status_code == 200
        with pytest.raises(RateLimitedError):
            await client.get("http://api.example.com/hello")
    transport = AsyncGuardTransport(responder(), engine=engine, use_fallback=True)
    async with httpx.AsyncClient(transport=transport) as client:
        assert (await client.get("http://api.example.com/hello")).status_code == 503

    apply(engine, concurrency("one", 1), rule("r", [HELLO], [("one", "ConcurrencyLimitStrategy")]))
    async with httpx.AsyncClient(transport=AsyncGuardTransport(responder(), engine=engine)) as client:
        async with client.stream("GET", "http://api.example.com/hello") as streamed:
            with pytest.raises(ConcurrencyLimitedError):
                await client.get("http://api.example.com/hello")
            await streamed.aread()
        assert engine.in_flight(HELLO) == 0
        apply(
            engine,
            error_breaker("cb", min_requests=1),
            rule("r", [HELLO], [("cb", "CircuitBreakerStrategy")]),
        )
        assert (await client.get("http://api.example.com/hello", params={"status": 500})).status_code == 500
        with pytest.raises(CircuitBreakerOpenError):
            await client.get("http://api.example.com/hello")


class FakeAdapter(BaseAdapter):
    """Answers without a network: status from ``?status=``; ``/down`` raises ConnectionError."""

    def __init__(self) -> None:
        super().__init__()
        self.sent = 0

    def send(self, request: PreparedRequest, *args: object, **kwargs: object) -> Response:  # type: ignore[override]
        self.sent += 1
        if request.url and "/down" in request.url:
            raise requests.ConnectionError("refused")
        response = Response()
        status = request.url.rsplit("status=", 1)[1] if request.url and "status=" in request.url else "200"
        response.status_code = int(status)
        response._content = b"ok"
        response.request = request
        response.url = request.url or ""
        return response

    def close(self) -> None:
        pass


def test_requests_adapter(engine: Engine) -> None:
    limit(engine, HELLO, 1, action="busy", extra=BUSY)
    inner = FakeAdapter()
    session = requests.Session()
    session.mount("http://", GuardAdapter(inner, engine=engine))
    assert session.get("http://api.example.com/hello").text == "ok"
    with pytest.raises(RateLimitedError):
        session.get("http://api.example.com/hello")
    assert inner.sent == 1

    session = requests.Session()
    session.mount("http://", GuardAdapter(FakeAdapter(), engine=engine, use_fallback=True))
    blocked = session.get("http://api.example.com/hello")
    assert (blocked.status_code, blocked.text, blocked.headers["x-reason"]) == (503, "busy", "busy")
    assert blocked.reason == "Service Unavailable"


def test_requests_errors_count(engine: Engine) -> None:
    apply(
        engine,
        error_breaker("cb", min_requests=2),
        rule("r", ["GET:api.example.com/x", "GET:api.example.com/down"], [("cb", "CircuitBreakerStrategy")]),
    )
    session = requests.Session()
    session.mount("http://", GuardAdapter(FakeAdapter(), engine=engine))
    assert session.get("http://api.example.com/x?status=500").status_code == 500
    assert session.get("http://api.example.com/x?status=500").status_code == 500
    with pytest.raises(CircuitBreakerOpenError):
        session.get("http://api.example.com/x")
    for _ in range(2):
        with pytest.raises(requests.ConnectionError):
            session.get("http://api.example.com/down")
    with pytest.raises(CircuitBreakerOpenError):
        session.get("http://api.example.com/down")


def test_guard_session_mounts_both_schemes(engine: Engine) -> None:
    session = guard_session(engine=engine)
    assert isinstance(session.get_adapter("http://x/"), GuardAdapter)
    assert isinstance(session.get_adapter("https://x/"), GuardAdapter)
    session.close()
