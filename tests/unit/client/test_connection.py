"""The shared Connection: one selected endpoint for the stream, the reporter and the token client."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from opensergo.client import Backoff, Heartbeat
from opensergo.client.connection import Connection
from tests.unit.client.client_fakes import RLS, ClientFactory, FakeControlPlane, wait_until

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]


async def test_one_rotation_per_broken_channel() -> None:
    connection = Connection(["a:1", "b:2", "c:3"])
    first, second = connection.link(), connection.link()
    assert first.channel is second.channel and first.endpoint == "a:1"
    assert await connection.rotate(first)
    assert not await connection.rotate(second)  # the same failure, reported by another user
    assert connection.endpoint == "b:2" and connection.rotations == 1
    fresh = connection.link()
    assert fresh.endpoint == "b:2" and fresh.channel is not first.channel
    assert connection.moved_since(first) and not connection.moved_since(fresh)
    await connection.release()


async def test_an_attempt_that_never_connected_stays_when_another_user_got_through() -> None:
    connection = Connection(["a:1", "b:2"])
    link = connection.link()
    started = time.monotonic()
    connection.confirm(link)  # e.g. the token stream connected while the subscribe stream waited
    assert not await connection.rotate(link, attempt_started=started)
    assert connection.endpoint == "a:1"
    assert await connection.rotate(link)  # a stream that was healthy and broke always rotates
    assert connection.endpoint == "b:2"
    await connection.release()


async def test_confirm_ends_every_pause() -> None:
    connection = Connection(["a:1"], backoff=Backoff(initial=5, maximum=5))
    link = connection.link()
    pauses = [asyncio.ensure_future(connection.pause(5)) for _ in range(2)]
    await asyncio.sleep(0.01)
    started = time.monotonic()
    connection.confirm(link)
    await asyncio.wait_for(asyncio.gather(*pauses), 2)
    assert time.monotonic() - started < 2
    await connection.release()


def test_stream_and_reporter_share_the_endpoint_and_follow_a_rotation(make_client: ClientFactory) -> None:
    first, second = FakeControlPlane(), FakeControlPlane()
    first.start()
    second.start()
    try:
        client = make_client([first.endpoint, second.endpoint], heartbeat=Heartbeat(interval=60))
        client.subscribe(RLS)
        with client:
            first.wait_subscribes(first.wait_stream(), 1)
            wait_until(lambda: first.reports, message="the first report, to the first endpoint")
            assert client.connection.endpoint == first.endpoint
            assert second.streams == [] and second.reports == []

            first.stop()  # the stream rotates; the reporter follows at once (a new stream reports)
            second.wait_subscribes(second.wait_stream(), 1)
            wait_until(lambda: second.reports, message="a report to the second endpoint")
            assert client.connection.endpoint == second.endpoint
    finally:
        first.close()
        second.close()


def test_the_token_client_shares_the_clients_connection_and_thread(
    cp: FakeControlPlane, make_client: ClientFactory
) -> None:
    client = make_client(cp.endpoint)
    tokens = client.token_client()
    assert tokens.connection is client.connection and client.token_client() is tokens
    with client:
        cp.wait_stream()
        names = [t.name for t in threading.enumerate()]
        assert "opensergo-token-client" not in names  # no second thread or event loop
        assert client._loop.thread is not None and client._loop.thread.name in names
    assert not client._loop.thread.is_alive()
    assert not tokens.healthy


async def test_on_an_application_loop_the_token_client_gets_a_thread(
    cp: FakeControlPlane, make_client: ClientFactory
) -> None:
    # Global limits wait on the token client from guarded calls, which may run on this very loop.
    client = make_client(cp.endpoint)
    async with client:
        tokens = client.token_client()
        assert tokens.connection is client.connection
        assert tokens._loop_thread is not None and tokens._loop_thread.thread is not None
        thread = tokens._loop_thread.thread
        assert thread.is_alive()
    assert not thread.is_alive()
