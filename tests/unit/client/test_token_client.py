"""TokenClient's reconnect loop (pure unit tests: the stream itself is replaced)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from opensergo.client import Backoff
from opensergo.client.connection import Link
from opensergo.client.tokens import TokenClient

pytestmark = pytest.mark.unit


def test_a_call_cancelled_by_grpc_is_a_broken_stream_not_a_shutdown(monkeypatch: pytest.MonkeyPatch) -> None:
    # grpc.aio cancels a bidi call on its own when a request is written after the call ended;
    # reading it then raises CancelledError although nobody cancelled our task.
    attempts: list[str] = []
    reconnected = threading.Event()

    async def fake_stream(self: TokenClient, link: Link) -> None:
        attempts.append(link.endpoint)
        if len(attempts) == 1:
            raise asyncio.CancelledError()
        reconnected.set()
        await asyncio.Event().wait()

    monkeypatch.setattr(TokenClient, "_stream", fake_stream)
    fast = Backoff(initial=0.01, maximum=0.01)
    client = TokenClient(["a:1", "b:2"], client_id="c", backoff=fast).start()
    try:
        assert reconnected.wait(5), attempts
        assert attempts == ["a:1", "b:2"]
    finally:
        client.stop()
    assert client._loop_thread is not None and not client._loop_thread.thread.is_alive()


def test_stop_ends_the_loop_even_while_connecting(monkeypatch: pytest.MonkeyPatch) -> None:
    started = threading.Event()

    async def fake_stream(self: TokenClient, link: Link) -> None:
        started.set()
        await asyncio.Event().wait()

    monkeypatch.setattr(TokenClient, "_stream", fake_stream)
    client = TokenClient(["a:1"], client_id="c").start()
    assert started.wait(5)
    client.stop()
    assert client._loop_thread is not None and not client._loop_thread.thread.is_alive()
