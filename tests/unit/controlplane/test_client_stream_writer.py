"""ClientStream's writer without a task: it steps the call's write coroutine itself, resumed by
the future that coroutine waits on (as grpc.aio's write waits on its batch's future). Writes go
one at a time and in order, pushes are coalesced per group, a failed write ends the writing, and
closing during a write cancels it quietly."""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Any

import pytest

from opensergo.common.protocol import SubscriptionKey
from opensergo.controlplane.transport import ClientStream
from opensergo.proto.transport.v1 import protocol_pb2 as pb

pytestmark = [pytest.mark.unit, pytest.mark.timeout(10)]

A = SubscriptionKey("default", "app", "kind-a")
B = SubscriptionKey("default", "app", "kind-b")


class Call:
    """A call whose writes wait on a future each, completed by the test (or all at once)."""

    def __init__(self, auto: bool = True) -> None:
        self.auto = auto
        self.written: list[bytes] = []
        self.waiting: list[asyncio.Future[None]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.fail_with: BaseException | None = None

    async def write(self, data: bytes) -> None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self.waiting.append(future)
            if self.auto:
                asyncio.get_running_loop().call_soon(_done, future)
            await future
            if self.fail_with is not None:
                raise self.fail_with
            self.written.append(data)
        finally:
            self.in_flight -= 1


def _done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def render(stream: ClientStream, key: SubscriptionKey, request_id: str | None) -> bytes:
    return f"{key.kind}:{request_id}".encode()


async def test_writes_one_at_a_time_in_order_with_pushes_coalesced() -> None:
    call = Call()
    stream = ClientStream("ipv4:127.0.0.1:1", call, render)
    stream.schedule_push(A, "1")
    stream.schedule_push(B, None)
    stream.schedule_push(A, None)  # already queued: coalesced, keeps the initial push's id
    stream.reply(pb.SubscribeResponse(response_id="r"))
    await stream.flush()
    assert call.written == [
        b"kind-a:1",
        b"kind-b:None",
        pb.SubscribeResponse(response_id="r").SerializeToString(),
    ]
    assert call.most_in_flight == 1
    stream.schedule_push(B, None)  # idle again: a new burst starts a new write
    await stream.flush()
    assert call.written[-1] == b"kind-b:None"
    assert stream._outbox is None and stream._pending is None and stream._writing is None


async def test_a_push_queued_while_a_write_waits_follows_it() -> None:
    call = Call(auto=False)
    stream = ClientStream("ipv4:127.0.0.1:1", call, render)
    stream.schedule_push(A, "1")
    await asyncio.sleep(0)
    assert len(call.waiting) == 1 and call.written == []
    stream.schedule_push(B, "2")
    await asyncio.sleep(0)
    assert len(call.waiting) == 1  # the second waits for the first
    call.waiting[0].set_result(None)
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(call.waiting) == 2
    call.waiting[1].set_result(None)
    await stream.flush()
    assert call.written == [b"kind-a:1", b"kind-b:2"]


async def test_a_failed_write_ends_the_writing(caplog: pytest.LogCaptureFixture) -> None:
    call = Call()
    call.fail_with = RuntimeError("the call is over")
    stream = ClientStream("ipv4:127.0.0.1:1", call, render)
    with caplog.at_level(logging.DEBUG, logger="opensergo.controlplane.transport"):
        stream.schedule_push(A, "1")
        stream.schedule_push(B, "2")
        await stream.flush()
    assert call.written == []
    assert len(call.waiting) == 1  # nothing more was attempted
    assert "write failed: the call is over" in caplog.text
    stream.schedule_push(A, None)  # ignored: nothing can be written any more
    await stream.flush()
    assert len(call.waiting) == 1


async def test_closing_during_a_write_cancels_it_quietly() -> None:
    errors: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: errors.append(context))
    try:
        call = Call(auto=False)
        stream = ClientStream("ipv4:127.0.0.1:1", call, render)
        stream.schedule_push(A, "1")
        await asyncio.sleep(0)
        assert len(call.waiting) == 1
        stream.close()
        assert call.waiting[0].cancelled()
        assert call.in_flight == 0  # the write coroutine was closed
        for _ in range(3):
            await asyncio.sleep(0)
        stream.schedule_push(B, "2")
        await stream.flush()
        del call, stream
        gc.collect()
        await asyncio.sleep(0)
        assert errors == []
    finally:
        loop.set_exception_handler(None)


async def test_a_render_failure_skips_that_group_only(caplog: pytest.LogCaptureFixture) -> None:
    def failing(stream: ClientStream, key: SubscriptionKey, request_id: str | None) -> bytes:
        if key == A:
            raise ValueError("cannot render")
        return render(stream, key, request_id)

    call = Call()
    stream = ClientStream("ipv4:127.0.0.1:1", call, failing)
    stream.schedule_push(A, "1")
    stream.schedule_push(B, "2")
    await stream.flush()
    assert call.written == [b"kind-b:2"]
    assert "cannot render a push of" in caplog.text


def test_initial_pushes_are_remembered_oldest_first(monkeypatch: pytest.MonkeyPatch) -> None:
    from opensergo.controlplane import transport

    monkeypatch.setattr(transport, "_INFLIGHT_LIMIT", 2)
    stream = ClientStream("ipv4:127.0.0.1:1", None, render)
    assert stream.lookup("1") is None
    stream.remember("1", A, 1)
    stream.remember("1", B, 2)  # the same id again: replaced in place
    assert stream.lookup("1") == (B, 2)
    stream.remember("2", A, 3)
    stream.remember("3", A, 4)  # beyond the limit: the oldest goes
    assert [stream.lookup(i) for i in ("1", "2", "3")] == [None, (A, 3), (A, 4)]
