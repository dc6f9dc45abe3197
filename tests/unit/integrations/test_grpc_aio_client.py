"""The ``grpc.aio`` routing channel and guard interceptor against real grpc.aio servers on
loopback: routing by metadata, lanes, in-flight counts, the unrouted fallback, retries and fault
injection of a route policy, and outbound guarding."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import grpc.aio
import pytest

from opensergo.governance import BlockedError, Engine
from opensergo.governance.routing import Instance, LaneManager, ServiceDirectory
from opensergo.integrations.grpc_aio_client import AioRoutingChannel
from opensergo.integrations.grpc_aio_guard import AioGuardClientInterceptor
from opensergo.integrations.grpc_client import FaultRpcError, RoutingRpcError
from tests.unit.routing.helpers import CANONICAL, SERVICE, directory, router, simple_router

from .conftest import apply, error_breaker, rate_limit, rule

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]


class Server:
    """A grpc.aio server answering ``test.Echo/Call`` (with ``fail`` statuses first) and
    ``test.Echo/Stream``; counts the calls it got."""

    def __init__(self, name: str, *fail: grpc.StatusCode) -> None:
        self.name = name
        self.fail = list(fail)
        self.calls = 0
        self.server = grpc.aio.server()
        handler = grpc.method_handlers_generic_handler(
            "test.Echo",
            {
                "Call": grpc.unary_unary_rpc_method_handler(self.call),
                "Stream": grpc.unary_stream_rpc_method_handler(self.stream),
            },
        )
        self.server.add_generic_rpc_handlers((handler,))
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    async def call(self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        self.calls += 1
        if self.fail:
            await context.abort(self.fail.pop(0), f"{self.name} fails")
        metadata = dict(context.invocation_metadata() or ())
        body = {
            "name": self.name,
            "lane": metadata.get("x-opensergo-traffic"),
            "baggage": metadata.get("baggage"),
        }
        return json.dumps(body).encode()

    async def stream(
        self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]
    ) -> AsyncIterator[bytes]:
        for n in range(3):
            yield f"{self.name}-{n}".encode()

    def instance(self, **labels: str) -> Instance:
        return Instance(SERVICE, self.name, [("127.0.0.1", self.port, "grpc")], labels, 100, self.name)


@pytest.fixture
async def servers() -> AsyncIterator[Callable[..., Server]]:
    started: list[Server] = []

    def make(name: str, *fail: grpc.StatusCode) -> Server:
        server = Server(name, *fail)
        started.append(server)
        return server

    yield make
    for server in started:
        await server.server.stop(None)


def factory(**kwargs: Any) -> Callable[[str], grpc.aio.Channel]:
    return lambda target: grpc.aio.insecure_channel(target, **kwargs)


async def test_calls_are_routed_per_call_with_the_lane(servers: Callable[..., Server]) -> None:
    s1, s2 = servers("v1"), servers("v2")
    for server in (s1, s2):
        await server.server.start()
    v1, v2 = s1.instance(version="v1"), s2.instance(version="v2")
    manager = LaneManager(use_otel=False)
    d = directory([v1, v2], [router(CANONICAL)], lanes=manager)
    async with AioRoutingChannel(d, SERVICE, channel_factory=factory()) as channel:
        call = channel.unary_unary("/test.Echo/Call")
        assert json.loads(await call(b"x", timeout=5))["name"] == "v1"
        rpc = call(b"x", timeout=5, metadata=(("tag", "v2"),))
        assert json.loads(await rpc)["name"] == "v2"
        assert await rpc.code() == grpc.StatusCode.OK
        with manager.use("Gray"):
            body = json.loads(await call(b"y", timeout=5))
        assert (body["lane"], body["baggage"]) == ("Gray", "x-opensergo-traffic=Gray")
        stream = channel.unary_stream("/test.Echo/Stream")(b"", timeout=5, metadata=(("tag", "v2"),))
        assert [item async for item in stream] == [b"v2-0", b"v2-1", b"v2-2"]
        assert v1.active == 0 and v2.active == 0
        assert set(channel.channels()) == {f"127.0.0.1:{s1.port}", f"127.0.0.1:{s2.port}"}
        d.update_instances(SERVICE, [v1])
        assert json.loads(await call(b"x", timeout=5, metadata=(("tag", "v2"),)))["name"] == "v1"  # fallback
        d.update_instances(SERVICE, [])
        with pytest.raises(RoutingRpcError) as info:
            await call(b"x", timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_without_governance_or_for_skipped_methods_calls_go_to_the_target(
    servers: Callable[..., Server],
) -> None:
    plain, routed = servers("plain"), servers("routed")
    for server in (plain, routed):
        await server.server.start()
    d = directory([routed.instance()], [], lanes=LaneManager(use_otel=False))
    current: list[ServiceDirectory | None] = [None]
    channel = AioRoutingChannel(
        lambda: current[0],
        SERVICE,
        channel_factory=factory(),
        target=f"127.0.0.1:{plain.port}",
        skip=lambda method: method.startswith("/test.Echo/Stream"),
    )
    async with channel:
        call = channel.unary_unary("/test.Echo/Call")
        assert json.loads(await call(b""))["name"] == "plain"  # built before governance runs
        current[0] = d
        assert json.loads(await call(b""))["name"] == "routed"
        stream = channel.unary_stream("/test.Echo/Stream")(b"")
        assert [item async for item in stream] == [b"plain-0", b"plain-1", b"plain-2"]


def _policy(**fields: Any) -> ServiceDirectory:
    return directory([], [simple_router([{"route": [{"destination": {"host": SERVICE}}], **fields}])])


async def test_route_retries_and_fault_injection(servers: Callable[..., Server]) -> None:
    flaky = servers("flaky", grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAVAILABLE)
    await flaky.server.start()
    d = _policy(retries={"attempts": 3, "retryOn": "unavailable"})
    d.update_instances(SERVICE, [flaky.instance()])
    async with AioRoutingChannel(d, SERVICE, channel_factory=factory()) as channel:
        call = channel.unary_unary("/test.Echo/Call")
        rpc = call(b"", timeout=5)
        assert json.loads(await rpc)["name"] == "flaky"
        assert flaky.calls == 3 and await rpc.code() == grpc.StatusCode.OK
        # Spent attempts: the last try's status is the call's.
        flaky.fail = [grpc.StatusCode.UNAVAILABLE] * 5
        rpc = call(b"", timeout=5)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await rpc
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert flaky.calls == 3 + 4 and await rpc.code() == grpc.StatusCode.UNAVAILABLE
        # Not a listed condition: no retry.
        flaky.fail = [grpc.StatusCode.PERMISSION_DENIED]
        with pytest.raises(grpc.aio.AioRpcError):
            await call(b"", timeout=5)
        assert flaky.calls == 8

    aborting = _policy(fault={"abort": {"grpcStatus": "RESOURCE_EXHAUSTED", "percentage": {"value": 100}}})
    aborting.update_instances(SERVICE, [flaky.instance()])
    async with AioRoutingChannel(aborting, SERVICE, channel_factory=factory()) as channel:
        rpc = channel.unary_unary("/test.Echo/Call")(b"")
        with pytest.raises(FaultRpcError):
            await rpc
        assert await rpc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert await rpc.details() == "fault filter abort"
    assert flaky.calls == 8  # the abort made no call


async def test_the_guard_blocks_before_sending_and_skips_internal_methods(
    servers: Callable[..., Server], engine: Engine
) -> None:
    server = servers("guarded")
    await server.server.start()
    resources = ["/test.Echo/Call", "/test.Echo/Stream"]
    apply(engine, rate_limit("rl", 1), rule("r", resources, [("rl", "RateLimitStrategy")]))
    guard = AioGuardClientInterceptor(engine=engine, skip=lambda method: method.endswith("/Stream"))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}", interceptors=[guard]) as channel:
        call = channel.unary_unary("/test.Echo/Call")
        assert json.loads(await call(b"", timeout=5))["name"] == "guarded"
        with pytest.raises(BlockedError):
            await call(b"", timeout=5)
        assert server.calls == 1  # the blocked call was not sent
        for _ in range(3):  # over the limit, but skipped
            stream = channel.unary_stream("/test.Echo/Stream")(b"", timeout=5)
            assert [item async for item in stream] == [b"guarded-0", b"guarded-1", b"guarded-2"]


async def test_the_guard_counts_non_ok_statuses_as_errors(
    servers: Callable[..., Server], engine: Engine
) -> None:
    server = servers("failing", grpc.StatusCode.INTERNAL, grpc.StatusCode.INTERNAL)
    await server.server.start()
    apply(engine, error_breaker("cb"), rule("r", ["/test.Echo/Call"], [("cb", "CircuitBreakerStrategy")]))
    guard = AioGuardClientInterceptor(engine=engine)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}", interceptors=[guard]) as channel:
        call = channel.unary_unary("/test.Echo/Call")
        for _ in range(2):
            with pytest.raises(grpc.aio.AioRpcError):
                await call(b"", timeout=5)
        # The entries end in a task once each call's status is read: the breaker opens then.
        await wait_for(lambda: _blocked(engine))
        with pytest.raises(BlockedError):
            await call(b"", timeout=5)
    assert server.calls == 2


def _blocked(engine: Engine) -> bool:
    try:
        entry = engine.entry("/test.Echo/Call", inbound=False)
    except BlockedError:
        return True
    entry.exit(None)
    return False


async def wait_for(condition: Callable[[], bool], timeout: float = 5) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.01)
