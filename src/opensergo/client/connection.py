"""The SubscribeConfig stream lifecycle: connect, reconnect with backoff, rotate endpoints, one writer.

:class:`SubscribeStream` keeps exactly one ``SubscribeConfig`` bidi stream open at a time. On every
(re)connect it asks its owner for the requests to send first (a SUBSCRIBE per active key), and it
hands every response to its owner, sending back whatever reply the owner returns. All writes on a
stream go through one asyncio queue drained by one writer task, so messages are never interleaved.

On failure (connect error, stream error, or the server ending the stream) it closes the channel,
waits a backoff delay (exponential with full jitter) and tries the next endpoint. A fresh channel is
made per attempt, so grpc's own channel-level backoff never delays us beyond our schedule.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio

from opensergo.client.credentials import BearerToken
from opensergo.client.tls import TlsConfig, open_channel
from opensergo.proto.transport.v1 import protocol_pb2 as pb
from opensergo.proto.transport.v1 import protocol_pb2_grpc as pb_grpc

__all__ = ["Backoff", "ChannelOptions", "SubscribeStream"]

_log = logging.getLogger("opensergo.client.connection")

ChannelOptions = Sequence[tuple[str, Any]]

_EOF: object = grpc.aio.EOF  # type: ignore[attr-defined]  # missing from grpc-stubs


@dataclass
class Backoff:
    """Exponential backoff with full jitter: ``uniform(0, min(maximum, initial * multiplier**n))``."""

    initial: float = 0.2
    maximum: float = 10.0
    multiplier: float = 2.0
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.maximum < self.initial or self.multiplier < 1:
            raise ValueError("backoff needs 0 < initial <= maximum and multiplier >= 1")

    def ceiling(self, attempt: int) -> float:
        """The upper bound of the delay before retry number ``attempt`` (0-based)."""
        exponent = min(attempt, 64)  # avoid float overflow; the cap applies long before
        return float(min(self.maximum, self.initial * self.multiplier**exponent))

    def delay(self, attempt: int) -> float:
        return self.rng.uniform(0.0, self.ceiling(attempt))


OnOpen = Callable[[], Iterable[pb.SubscribeRequest]]
OnResponse = Callable[[pb.SubscribeResponse], pb.SubscribeRequest | None]


class SubscribeStream:
    """Owns the channel and the SubscribeConfig stream; reconnects until :meth:`close`."""

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        on_open: OnOpen,
        on_response: OnResponse,
        backoff: Backoff | None = None,
        channel_options: ChannelOptions = (),
        tls: TlsConfig | None = None,
        token: BearerToken | None = None,
    ) -> None:
        if not endpoints:
            raise ValueError("at least one endpoint is required")
        self._endpoints = list(endpoints)
        self._tls = tls
        self._token = token
        self._on_open = on_open
        self._on_response = on_response
        self._backoff = backoff or Backoff()
        self._options = list(channel_options)
        self._queue: asyncio.Queue[pb.SubscribeRequest] | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping: asyncio.Event | None = None
        self._call: Any = None
        self._channel: grpc.aio.Channel | None = None
        self._endpoint_index = 0
        self.streams_opened = 0
        """How many streams have been opened so far (1 after the first connect)."""
        self.endpoint: str | None = None
        """The endpoint of the current (or last) stream."""
        self.connected = False
        """True while a stream is open and has exchanged at least one message."""

    @property
    def endpoints(self) -> list[str]:
        return list(self._endpoints)

    def start(self) -> None:
        """Start the connect loop on the running event loop."""
        if self._task is not None:
            return
        self._stopping = asyncio.Event()
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
        """Stop reconnecting, cancel the stream and close the channel."""
        if self._stopping is not None:
            self._stopping.set()
        task, self._task = self._task, None
        if self._call is not None:
            self._call.cancel()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close(None)
        self.connected = False

    # -- internals ---------------------------------------------------------------------------------
    async def _run(self) -> None:
        assert self._stopping is not None
        attempt = 0
        while not self._stopping.is_set():
            endpoint = self._endpoints[self._endpoint_index % len(self._endpoints)]
            started = time.monotonic()
            healthy = False
            error: BaseException | None = None
            try:
                healthy = await self._run_stream(endpoint)
            except asyncio.CancelledError as exc:
                task = asyncio.current_task()
                if self._stopping.is_set() or (task is not None and task.cancelling()):
                    raise
                error = exc  # grpc raises CancelledError when the call was cancelled under us
            except grpc.aio.AioRpcError as exc:
                error = exc
            except Exception as exc:  # never let the loop die
                _log.exception("unexpected error on the SubscribeConfig stream to %s", endpoint)
                error = exc
            if self._stopping.is_set():
                break
            if healthy or time.monotonic() - started >= self._backoff.maximum:
                attempt = 0
            delay = self._backoff.delay(attempt)
            level = logging.WARNING if attempt == 0 else logging.DEBUG
            _log.log(
                level,
                "SubscribeConfig stream to %s %s; reconnecting in %.2fs",
                endpoint,
                _describe(error) if error is not None else "ended by the server",
                delay,
            )
            attempt += 1
            self._endpoint_index += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)

    async def _run_stream(self, endpoint: str) -> bool:
        """One stream: returns True if it ever received a message (the server was healthy)."""
        channel = open_channel(endpoint, self._tls, self._options, self._token)
        self._channel = channel
        self.endpoint = endpoint
        received = False
        writer: asyncio.Task[None] | None = None
        try:
            stub = pb_grpc.OpenSergoUniversalTransportServiceStub(channel)  # type: ignore[no-untyped-call]
            call = stub.SubscribeConfig()
            self._call = call
            queue: asyncio.Queue[pb.SubscribeRequest] = asyncio.Queue()
            for request in self._on_open():
                queue.put_nowait(request)
            # Publish the queue in the same loop step as on_open() so no send can fall in between.
            self._queue = queue
            self.streams_opened += 1
            writer = asyncio.get_running_loop().create_task(self._write_loop(call, queue))
            _log.debug("SubscribeConfig stream %d opened to %s", self.streams_opened, endpoint)
            while True:
                response = await call.read()
                if response is _EOF:
                    return received
                if not received:
                    received = True
                    self.connected = True
                    if self.streams_opened > 1:
                        _log.info("SubscribeConfig stream re-established to %s", endpoint)
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
            if self._channel is channel:
                self._channel = None
            await channel.close(None)

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
            _log.debug("SubscribeConfig write failed: %s", _describe(exc))
            call.cancel()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"failed: {exc.code().name}: {exc.details() or ''}".rstrip(": ")
    return f"failed: {type(exc).__name__}: {exc}"
