"""The gRPC server interceptors on real servers (127.0.0.1, port 0): sync grpc and grpc.aio."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
import grpc.aio
import pytest

from opensergo.governance import Engine
from opensergo.governance.routing import lanes
from opensergo.integrations.grpc_server import AioServerInterceptor, ServerInterceptor

from .conftest import apply, concurrency, error_breaker, limit, rule

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]

SVC = "test.Svc"
UNARY = f"/{SVC}/Unary"
STREAM = f"/{SVC}/Stream"
UPLOAD = f"/{SVC}/Upload"
CHAT = f"/{SVC}/Chat"


class Behaviour:
    """What the test handlers do; shared by the sync and aio servers."""

    def __init__(self) -> None:
        self.fail: grpc.StatusCode | None = None
        self.raise_error = False
        self.gate = threading.Event()
        self.gate.set()
        self.streaming = threading.Event()


def sync_handlers(b: Behaviour) -> grpc.GenericRpcHandler:
    def unary(request: bytes, context: grpc.ServicerContext) -> bytes:
        if b.raise_error:
            raise RuntimeError("handler failed")
        if b.fail is not None:
            context.abort(b.fail, "failing on purpose")
        return (lanes.current_name() or "-").encode()

    def stream(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        yield b"first"
        b.streaming.set()
        b.gate.wait(10)
        yield (lanes.current_name() or "-").encode()

    def upload(requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        return b"".join(requests)

    def chat(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        for item in requests:
            yield item.upper()

    return grpc.method_handlers_generic_handler(
        SVC,
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
            "Stream": grpc.unary_stream_rpc_method_handler(stream),
            "Upload": grpc.stream_unary_rpc_method_handler(upload),
            "Chat": grpc.stream_stream_rpc_method_handler(chat),
        },
    )


@pytest.fixture
def behaviour() -> Behaviour:
    return Behaviour()


def start_sync(engine: Engine, b: Behaviour, **options: Any) -> tuple[grpc.Server, grpc.Channel]:
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=8), interceptors=[ServerInterceptor(engine=engine, **options)]
    )
    server.add_generic_rpc_handlers((sync_handlers(b),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, grpc.insecure_channel(f"127.0.0.1:{port}")


@pytest.fixture
def sync_server(engine: Engine, behaviour: Behaviour) -> Iterator[Callable[..., grpc.Channel]]:
    started: list[tuple[grpc.Server, grpc.Channel]] = []

    def start(**options: Any) -> grpc.Channel:
        started.append(start_sync(engine, behaviour, **options))
        return started[-1][1]

    yield start
    behaviour.gate.set()
    for server, channel in started:
        channel.close()
        server.stop(None)


def code_of(call: Callable[[], Any]) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()
    err = info.value
    assert isinstance(err, grpc.Call)
    return err.code()


# -- sync ------------------------------------------------------------------------------------


def test_sync_unary_blocked_with_resource_exhausted(engine: Engine, sync_server: Any) -> None:
    limit(engine, UNARY, 1)
    channel = sync_server()
    unary = channel.unary_unary(UNARY)
    assert unary(b"x") == b"-"
    with pytest.raises(grpc.RpcError) as info:
        unary(b"x")
    err: Any = info.value
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "Blocked by OpenSergo" in err.details() and "'rl'" in err.details()
    assert engine.block_counts() == {(UNARY, "r", "rl"): 1}


def test_sync_blocked_code_and_handler_are_configurable(engine: Engine, sync_server: Any) -> None:
    limit(engine, UNARY, 0)
    unary = sync_server(blocked_code=grpc.StatusCode.UNAVAILABLE).unary_unary(UNARY)
    assert code_of(lambda: unary(b"x")) == grpc.StatusCode.UNAVAILABLE
    handler = sync_server(block_handler=lambda e: (grpc.StatusCode.ABORTED, e.strategy)).unary_unary(UNARY)
    with pytest.raises(grpc.RpcError) as info:
        handler(b"x")
    err: Any = info.value
    assert (err.code(), err.details()) == (grpc.StatusCode.ABORTED, "rl")


def test_sync_non_ok_status_and_exceptions_count_as_errors(
    engine: Engine, sync_server: Any, behaviour: Behaviour
) -> None:
    apply(engine, error_breaker("cb", min_requests=2), rule("r", [UNARY], [("cb", "CircuitBreakerStrategy")]))
    unary = sync_server().unary_unary(UNARY)
    behaviour.fail = grpc.StatusCode.INTERNAL
    assert code_of(lambda: unary(b"x")) == grpc.StatusCode.INTERNAL
    behaviour.fail, behaviour.raise_error = None, True
    assert code_of(lambda: unary(b"x")) == grpc.StatusCode.UNKNOWN
    behaviour.raise_error = False
    assert code_of(lambda: unary(b"x")) == grpc.StatusCode.RESOURCE_EXHAUSTED  # open


def test_sync_error_codes_option(engine: Engine, sync_server: Any, behaviour: Behaviour) -> None:
    apply(engine, error_breaker("cb", min_requests=2), rule("r", [UNARY], [("cb", "CircuitBreakerStrategy")]))
    unary = sync_server(error_codes={grpc.StatusCode.INTERNAL}).unary_unary(UNARY)
    behaviour.fail = grpc.StatusCode.NOT_FOUND
    for _ in range(3):
        assert code_of(lambda: unary(b"x")) == grpc.StatusCode.NOT_FOUND  # not an error: stays closed
    behaviour.fail = None
    assert unary(b"x") == b"-"


def test_sync_stream_exits_when_the_call_ends(engine: Engine, sync_server: Any, behaviour: Behaviour) -> None:
    apply(engine, concurrency("one", 1), rule("r", [STREAM], [("one", "ConcurrencyLimitStrategy")]))
    stream = sync_server().unary_stream(STREAM)
    behaviour.gate.clear()
    first = stream(b"x", metadata=(("x-opensergo-traffic", "gray"),))
    assert next(first) == b"first"
    assert behaviour.streaming.wait(5)
    assert engine.in_flight(STREAM) == 1
    assert code_of(lambda: list(stream(b"x"))) == grpc.StatusCode.RESOURCE_EXHAUSTED
    behaviour.gate.set()
    assert list(first) == [b"gray"]  # the lane holds for the whole stream
    for _ in range(100):
        if engine.in_flight(STREAM) == 0:
            break
        threading.Event().wait(0.01)
    assert engine.in_flight(STREAM) == 0
    assert list(stream(b"x")) == [b"first", b"-"]


def test_sync_client_streaming_and_bidi(engine: Engine, sync_server: Any) -> None:
    limit(engine, UPLOAD, 1)
    channel = sync_server()
    upload = channel.stream_unary(UPLOAD)
    chat = channel.stream_stream(CHAT)
    assert upload(iter([b"a", b"b"])) == b"ab"
    assert code_of(lambda: upload(iter([b"a"]))) == grpc.StatusCode.RESOURCE_EXHAUSTED
    limit(engine, CHAT, 1)
    assert list(chat(iter([b"a", b"b"]))) == [b"A", b"B"]
    assert code_of(lambda: list(chat(iter([b"a"])))) == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_sync_lane_from_metadata(engine: Engine, sync_server: Any) -> None:
    unary = sync_server().unary_unary(UNARY)
    assert unary(b"x", metadata=(("x-opensergo-traffic", "gray"),)) == b"gray"
    assert unary(b"x", metadata=(("baggage", "x-opensergo-traffic=blue"),)) == b"blue"
    assert unary(b"x") == b"-"


def test_sync_resource_mapping(engine: Engine, sync_server: Any) -> None:
    limit(engine, "grpc:Unary", 1)
    unary = sync_server(resource=lambda m: "grpc:" + m.rsplit("/", 1)[1]).unary_unary(UNARY)
    unary(b"x")
    assert code_of(lambda: unary(b"x")) == grpc.StatusCode.RESOURCE_EXHAUSTED


# -- grpc.aio ----------------------------------------------------------------------------------


class AioServicer:
    def __init__(self, b: Behaviour) -> None:
        self.b = b
        self.gate = asyncio.Event()
        self.gate.set()
        self.streaming = asyncio.Event()

    async def unary(self, request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        if self.b.raise_error:
            raise RuntimeError("handler failed")
        if self.b.fail is not None:
            await context.abort(self.b.fail, "failing on purpose")
        return (lanes.current_name() or "-").encode()

    async def stream(self, request: bytes, context: Any) -> AsyncIterator[bytes]:
        yield b"first"
        self.streaming.set()
        await self.gate.wait()
        yield (lanes.current_name() or "-").encode()

    async def writer(self, request: bytes, context: Any) -> None:  # the context.write style
        await context.write(b"w1")
        await context.write((lanes.current_name() or "-").encode())

    def sync_unary(self, request: bytes, context: Any) -> bytes:  # a sync handler on the aio server
        return b"sync"

    async def upload(self, requests: Any, context: Any) -> bytes:
        return b"".join([item async for item in requests])


async def start_aio(engine: Engine, servicer: AioServicer, **options: Any) -> tuple[grpc.aio.Server, int]:
    server = grpc.aio.server(interceptors=[AioServerInterceptor(engine=engine, **options)])
    handler = grpc.method_handlers_generic_handler(
        SVC,
        {
            "Unary": grpc.unary_unary_rpc_method_handler(servicer.unary),
            "Stream": grpc.unary_stream_rpc_method_handler(servicer.stream),
            "Writer": grpc.unary_stream_rpc_method_handler(servicer.writer),
            "SyncUnary": grpc.unary_unary_rpc_method_handler(servicer.sync_unary),
            "Upload": grpc.stream_unary_rpc_method_handler(servicer.upload),
        },
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, port


async def aio_code(call: Any) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value.code()


async def test_aio_unary_block_errors_and_lanes(engine: Engine, behaviour: Behaviour) -> None:
    servicer = AioServicer(behaviour)
    server, port = await start_aio(engine, servicer)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            unary = channel.unary_unary(UNARY)
            assert await unary(b"x", metadata=(("x-opensergo-traffic", "gray"),)) == b"gray"
            limit(engine, UNARY, 1)
            assert await unary(b"x") == b"-"
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await unary(b"x")
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "Blocked by OpenSergo" in (info.value.details() or "")

            apply(
                engine,
                error_breaker("cb", min_requests=2),
                rule("r", [UNARY], [("cb", "CircuitBreakerStrategy")]),
            )
            behaviour.fail = grpc.StatusCode.UNAVAILABLE
            assert await aio_code(unary(b"x")) == grpc.StatusCode.UNAVAILABLE
            behaviour.fail, behaviour.raise_error = None, True
            assert await aio_code(unary(b"x")) == grpc.StatusCode.UNKNOWN
            behaviour.raise_error = False
            assert await aio_code(unary(b"x")) == grpc.StatusCode.RESOURCE_EXHAUSTED
            breaker = engine.breaker(UNARY, "cb")
            assert breaker is not None and breaker.current_state.name == "OPEN"
    finally:
        await server.stop(None)


async def test_aio_streams_exit_when_the_call_ends(engine: Engine, behaviour: Behaviour) -> None:
    servicer = AioServicer(behaviour)
    server, port = await start_aio(engine, servicer)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            apply(engine, concurrency("one", 1), rule("r", [STREAM], [("one", "ConcurrencyLimitStrategy")]))
            stream = channel.unary_stream(STREAM)
            servicer.gate.clear()
            first = stream(b"x", metadata=(("x-opensergo-traffic", "gray"),))
            assert await first.read() == b"first"
            await asyncio.wait_for(servicer.streaming.wait(), 5)
            assert engine.in_flight(STREAM) == 1
            second = stream(b"x")
            with pytest.raises(grpc.aio.AioRpcError) as info:
                async for _ in second:
                    pass
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            servicer.gate.set()
            assert await first.read() == b"gray"
            assert await first.read() == grpc.aio.EOF
            for _ in range(100):
                if engine.in_flight(STREAM) == 0:
                    break
                await asyncio.sleep(0.01)
            assert engine.in_flight(STREAM) == 0

            writer = channel.unary_stream(f"/{SVC}/Writer")
            out = [item async for item in writer(b"x", metadata=(("x-opensergo-traffic", "blue"),))]
            assert out == [b"w1", b"blue"]
            limit(engine, f"/{SVC}/Writer", 0)
            with pytest.raises(grpc.aio.AioRpcError) as info:
                async for _ in writer(b"x"):
                    pass
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

            sync_unary = channel.unary_unary(f"/{SVC}/SyncUnary")
            assert await sync_unary(b"x") == b"sync"
            limit(engine, f"/{SVC}/SyncUnary", 0)
            assert await aio_code(sync_unary(b"x")) == grpc.StatusCode.RESOURCE_EXHAUSTED

            upload = channel.stream_unary(UPLOAD)
            assert await upload(iter([b"a", b"b"])) == b"ab"
            limit(engine, UPLOAD, 0)
            assert await aio_code(upload(iter([b"a"]))) == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        servicer.gate.set()
        await server.stop(None)
