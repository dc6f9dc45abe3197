"""The SubscribeConfig stream: one at a time, reopened after every failure, one writer.

:class:`SubscribeStream` keeps exactly one ``SubscribeConfig`` bidi stream open on the shared
:class:`~opensergo.client.connection.Connection`. On every (re)connect it asks its owner for the
requests to send first (a SUBSCRIBE per active key), and it hands every response to its owner,
sending back whatever reply the owner returns. All writes on a stream go through one asyncio queue
drained by one writer task, so messages are never interleaved.

The stream is what watches the connection: on any failure (connect error, stream error, or the
server ending the stream) it rotates the connection to the next endpoint (the reporter and the
token client follow) and waits a backoff delay before trying again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import grpc
import grpc.aio

from opensergo.client.connection import Connection, Link, cancelled_under_us, describe_error
from opensergo.proto.transport.v1 import protocol_pb2 as pb
from opensergo.proto.transport.v1 import protocol_pb2_grpc as pb_grpc

__all__ = ["OnOpen", "OnResponse", "SubscribeStream"]

_log = logging.getLogger("opensergo.client.stream")

_EOF: object = grpc.aio.EOF  # type: ignore[attr-defined]  # missing from grpc-stubs

OnOpen = Callable[[], Iterable[pb.SubscribeRequest]]
OnResponse = Callable[[pb.SubscribeResponse], pb.SubscribeRequest | None]


class SubscribeStream:
    """Owns the SubscribeConfig stream; reconnects until :meth:`close`."""

    def __init__(self, connection: Connection, *, on_open: OnOpen, on_response: OnResponse) -> None:
        self._connection = connection
        self._on_open = on_open
        self._on_response = on_response
        self._queue: asyncio.Queue[pb.SubscribeRequest] | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._call: Any = None
        self.streams_opened = 0
        """How many streams have been opened so far (1 after the first connect)."""
        self.endpoint: str | None = None
        """The endpoint of the current (or last) stream."""
        self.connected = False
        """True while a stream is open and has exchanged at least one message."""

    def start(self) -> None:
        """Start the connect loop on the running event loop."""
        if self._task is not None:
            return
        self._task = asyncio.get_running_loop().create_task(self._run(), name="opensergo-subscribe")

    def send(self, request: pb.SubscribeRequest) -> bool:
        """Queue ``request`` on the current stream; False (dropped) when no stream is open.

        Call on the event loop. Subscriptions are re-sent by ``on_open`` on the next stream anyway.
        """
        queue = self._queue
        if queue is None:
            return False
        queue.put_nowait(request)
        return True

    async def close(self) -> None:
        """Stop reconnecting and cancel the stream (the connection keeps its channel)."""
        self._stopping = True
        task, self._task = self._task, None
        if self._call is not None:
            self._call.cancel()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.connected = False

    # -- internals ---------------------------------------------------------------------------------
    async def _run(self) -> None:
        backoff = self._connection.backoff
        attempt = 0
        while not self._stopping:
            link = self._connection.link()
            started = time.monotonic()
            healthy = False
            error: BaseException | None = None
            try:
                healthy = await self._run_stream(link)
            except asyncio.CancelledError as exc:
                if self._stopping or not cancelled_under_us():
                    raise
                error = exc
            except grpc.aio.AioRpcError as exc:
                error = exc
            except Exception as exc:  # never let the loop die
                _log.exception("unexpected error on the SubscribeConfig stream to %s", link.endpoint)
                error = exc
            if self._stopping:
                break
            if healthy or time.monotonic() - started >= backoff.maximum:
                attempt = 0
            delay = backoff.delay(attempt)
            _log.log(
                logging.WARNING if attempt == 0 else logging.DEBUG,
                "SubscribeConfig stream to %s %s; reconnecting in %.2fs",
                link.endpoint,
                f"failed: {describe_error(error)}" if error is not None else "ended by the server",
                delay,
            )
            attempt += 1
            # A stream that never got an answer may have started just before the control plane
            # came back: if another user reached it since, stay (see Connection.rotate).
            await self._connection.rotate(link, attempt_started=None if healthy else started)
            await self._connection.pause(delay)

    async def _run_stream(self, link: Link) -> bool:
        """One stream: returns True if it ever received a message (the server was healthy)."""
        self.endpoint = link.endpoint
        received = False
        writer: asyncio.Task[None] | None = None
        try:
            stub = pb_grpc.OpenSergoUniversalTransportServiceStub(link.channel)  # type: ignore[no-untyped-call]
            call = stub.SubscribeConfig()
            self._call = call
            queue: asyncio.Queue[pb.SubscribeRequest] = asyncio.Queue()
            for request in self._on_open():
                queue.put_nowait(request)
            # Publish the queue in the same loop step as on_open() so no send can fall in between.
            self._queue = queue
            self.streams_opened += 1
            writer = asyncio.get_running_loop().create_task(self._write_loop(call, queue))
            _log.debug("SubscribeConfig stream %d opened to %s", self.streams_opened, link.endpoint)
            while True:
                response = await call.read()
                if response is _EOF:
                    return received
                if not received:
                    received = True
                    self.connected = True
                    self._connection.confirm(link)
                    if self.streams_opened > 1:
                        _log.info("SubscribeConfig stream re-established to %s", link.endpoint)
                try:
                    reply = self._on_response(response)
                except Exception:
                    _log.exception("error handling a SubscribeResponse")
                    continue
                if reply is not None:
                    queue.put_nowait(reply)
        finally:
            self._queue = None
            self._call = None
            self.connected = False
            if writer is not None:
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await writer

    async def _write_loop(self, call: Any, queue: asyncio.Queue[pb.SubscribeRequest]) -> None:
        try:
            while True:
                request = await queue.get()
                await call.write(request)
                self.connected = True
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The read side sees the same failure; make sure it does not wait forever.
            _log.debug("SubscribeConfig write failed: %s", describe_error(exc))
            call.cancel()
