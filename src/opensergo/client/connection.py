"""The SDK's one connection to the control plane: the selected endpoint, its channel, TLS, backoff.

The subscribe stream, the metadata reporter and the token client all talk to the endpoint this
object has selected, over one gRPC channel per event loop (normally one loop, so one channel and
one TCP connection). So they never land on different replicas by chance. When one of them finds
the endpoint broken it calls :meth:`Connection.rotate`: the next endpoint is selected and the old
channel closed, which ends the others' calls on it, and they follow on their next attempt. A
rotation happens once per broken channel, however many users report it (each passes the
:class:`Link` it used; a stale link rotates nothing), and not at all when another user reached
the endpoint over that channel during the failed attempt (the endpoint is alive: a control plane
that just came back must not be left again because one call started before it was up). Every
rotation makes a fresh channel, so grpc's own channel-level backoff never delays a reconnect
beyond our schedule.

Between attempts each user waits a :class:`~opensergo.client.options.Backoff` delay with
:meth:`Connection.pause`, which ends early when another user reaches the control plane
(:meth:`Connection.confirm`): the token stream reconnects as soon as the subscribe stream is back.

The token client's streams to the owner of a key (after a REDIRECT) deliberately go to another
replica; they use :meth:`Connection.open_channel` for the same TLS, access token and channel options.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import grpc
import grpc.aio

from opensergo.client.credentials import BearerToken
from opensergo.client.options import DEFAULT_BACKOFF, Backoff
from opensergo.client.tls import TlsConfig, open_channel

__all__ = ["ChannelOptions", "Connection", "Link", "cancelled_under_us", "describe_error"]

ChannelOptions = Sequence[tuple[str, Any]]

# A fresh channel otherwise waits ~1 s after its first refused connect before trying again.
FAST_RECONNECT: ChannelOptions = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
)


class Link(NamedTuple):
    """What one attempt uses: the selected endpoint, the selection's number, and its channel."""

    endpoint: str
    generation: int
    channel: grpc.aio.Channel


class Connection:
    """Endpoint selection, channels, rotation and backoff shared by everything that talks to the
    control plane. Thread-safe; channels are made on (and belong to) the calling event loop."""

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        tls: TlsConfig | None = None,
        token: BearerToken | None = None,
        backoff: Backoff = DEFAULT_BACKOFF,
        channel_options: ChannelOptions = (),
    ) -> None:
        if not endpoints:
            raise ValueError("at least one endpoint is required")
        self.endpoints: tuple[str, ...] = tuple(endpoints)
        self.tls = tls
        self.token = token
        self.backoff = backoff
        options = dict(FAST_RECONNECT)
        options.update(channel_options)
        self.channel_options: list[tuple[str, Any]] = list(options.items())
        self._lock = threading.Lock()
        self._index = 0
        self._generation = 0
        self._channels: dict[asyncio.AbstractEventLoop, grpc.aio.Channel] = {}
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._confirmed: tuple[int, float] = (-1, 0.0)  # generation, monotonic time of the last answer
        self.rotations = 0
        """How many times the selection moved to the next endpoint."""

    @property
    def endpoint(self) -> str:
        """The selected endpoint."""
        return self.endpoints[self._index % len(self.endpoints)]

    @property
    def generation(self) -> int:
        return self._generation

    def moved_since(self, link: Link) -> bool:
        """True when the selection moved on after ``link`` was taken (its channel is closed)."""
        return link.generation != self._generation

    def link(self) -> Link:
        """The selected endpoint and this loop's channel to it (opened on first use)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            endpoint = self.endpoint
            channel = self._channels.get(loop)
            if channel is None:
                channel = open_channel(endpoint, self.tls, self.channel_options, self.token)
                self._channels[loop] = channel
            return Link(endpoint, self._generation, channel)

    def open_channel(self, endpoint: str) -> grpc.aio.Channel:
        """A channel of the caller's own to ``endpoint``, with this connection's TLS, token and options."""
        return open_channel(endpoint, self.tls, self.channel_options, self.token)

    async def rotate(self, link: Link, *, attempt_started: float | None = None) -> bool:
        """``link``'s endpoint is broken: select the next one and close the old channels, unless
        that already happened since ``link`` was taken, or (for an attempt that never got an
        answer, started at ``attempt_started``, ``time.monotonic()``) another user got an answer
        over it since. True if this call rotated."""
        with self._lock:
            if link.generation != self._generation:
                return False
            generation, confirmed_at = self._confirmed
            alive = generation == link.generation and confirmed_at > (attempt_started or float("inf"))
            if alive:
                return False
            self._generation += 1
            self._index += 1
            self.rotations += 1
            channels, self._channels = self._channels, {}
        await _close_channels(channels)
        return True

    def confirm(self, link: Link) -> None:
        """A call on ``link`` got an answer: wake every user waiting in :meth:`pause`."""
        with self._lock:
            if link.generation != self._generation:
                return
            self._confirmed = (link.generation, time.monotonic())
            waiters = list(self._waiters)
        for loop, event in waiters:
            with contextlib.suppress(RuntimeError):  # that loop is closed
                loop.call_soon_threadsafe(event.set)

    async def pause(self, delay: float) -> None:
        """Wait ``delay`` seconds before the next attempt, less if another user reaches the
        control plane meanwhile."""
        event = asyncio.Event()
        waiter = (asyncio.get_running_loop(), event)
        with self._lock:
            self._waiters.add(waiter)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), delay)
        finally:
            with self._lock:
                self._waiters.discard(waiter)

    async def release(self) -> None:
        """Close the calling loop's channel (when its last user stops)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            channel = self._channels.pop(loop, None)
        if channel is not None:
            await channel.close(None)

    def __repr__(self) -> str:
        return f"<Connection {self.endpoint} of {list(self.endpoints)} generation {self._generation}>"


async def _close_channels(channels: dict[asyncio.AbstractEventLoop, grpc.aio.Channel]) -> None:
    here = asyncio.get_running_loop()
    for loop, channel in channels.items():
        if loop is here:
            await channel.close(None)
        else:  # a channel belongs to its loop: close it there
            with contextlib.suppress(RuntimeError):
                asyncio.run_coroutine_threadsafe(channel.close(None), loop)


def cancelled_under_us() -> bool:
    """Call in an ``except asyncio.CancelledError``: True when grpc cancelled the call (its channel
    was closed by a rotation, or a request was written after the call ended), False when our own
    task is being cancelled (a shutdown, which must propagate)."""
    task = asyncio.current_task()
    return task is not None and not task.cancelling()


def describe_error(exc: BaseException) -> str:
    """Short form of a failed call for logs: ``UNAVAILABLE: details`` or the exception."""
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details() or ''}".rstrip(": ")
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled (the connection moved on)"
    return f"{type(exc).__name__}: {exc}"
