"""Client of the control plane's token service (limitMode Global).

The engine's hot path never waits on it in the common case: global limits lease tokens and
permits ahead of need (see opensergo.governance.faulttolerance.cluster). ``request`` is callable
from any thread and returns a concurrent Future. The client is ``healthy`` while its stream is
up; when the stream breaks, or a request goes unanswered past ``timeout``, it is unhealthy and
global limits fall back to local shares until a new stream answers again.

Its home stream uses the shared :class:`~opensergo.client.connection.Connection`, so it talks to
the same replica as the subscriptions and follows them when they move. An
:class:`~opensergo.client.OpenSergoClient` makes one with :meth:`OpenSergoClient.token_client
<opensergo.client.OpenSergoClient.token_client>`, on its own connection and loop thread;
``TokenClient(endpoints, client_id=...)`` makes a standalone one, with a connection and a loop
thread of its own.

With several control-plane replicas each key has one owner. A replica that does not own a key
answers REDIRECT with the owner's address; the client then keeps a second stream to that owner
for the keys it owns (and forgets them when that stream breaks, so the next request asks again).
Those streams go to the owner on purpose, whatever the connection has selected.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any

import grpc
import grpc.aio

from opensergo.client.connection import Connection, Link, cancelled_under_us
from opensergo.client.credentials import BearerToken
from opensergo.client.loop import LoopThread
from opensergo.client.options import Backoff
from opensergo.client.tls import TlsConfig
from opensergo.proto.flowcontrol.v1 import token_pb2 as tk
from opensergo.proto.flowcontrol.v1 import token_pb2_grpc as tk_grpc

__all__ = ["DEFAULT_TIMEOUT", "FlowKey", "TokenClient"]

log = logging.getLogger("opensergo.client.tokens")

DEFAULT_TIMEOUT = 0.020  # Sentinel's cluster client request timeout
CONNECT_TIMEOUT = 2.0
REFUSED_DELAY = 5.0  # after UNAUTHENTICATED or PERMISSION_DENIED: the answer will not change soon
# A standalone client retries about as often as a shared one whose subscriptions are healthy.
STANDALONE_BACKOFF = Backoff(initial=0.25, maximum=1.0)
SLOW_AFTER = 3  # consecutive timeouts before falling back to local shares

FlowKey = tuple[str, str, str, str]  # namespace, app, resource, strategy


class TokenClient:
    """One Connect stream to the token service, with reconnects.

    Standalone: ``TokenClient(endpoints, client_id=..., tls=..., token=...)``, then :meth:`start`
    (a loop thread of its own) and :meth:`stop`. Shared: ``connection=`` an OpenSergoClient's,
    which starts and stops it (:meth:`start_here` on its loop thread, :meth:`aclose`). ``tls`` and
    ``token`` apply to every stream, including those to other replicas named by REDIRECT."""

    def __init__(
        self,
        endpoints: Sequence[str] = (),
        *,
        client_id: str,
        timeout: float = DEFAULT_TIMEOUT,
        tls: TlsConfig | None = None,
        token: BearerToken | None = None,
        backoff: Backoff | None = None,
        connection: Connection | None = None,
    ) -> None:
        if connection is None:
            if not endpoints:
                raise ValueError("at least one endpoint is required")
            connection = Connection(endpoints, tls=tls, token=token, backoff=backoff or STANDALONE_BACKOFF)
        elif endpoints or tls is not None or token is not None or backoff is not None:
            raise ValueError("endpoints, tls, token and backoff come from the connection")
        self.connection = connection
        self.client_id = client_id
        self.timeout = timeout
        self.healthy = False
        self.slow_until = 0.0  # monotonic time until which a timed-out service counts as unhealthy
        self._timeouts = 0
        self._ids = itertools.count(1)
        self._waiting: dict[int, concurrent.futures.Future[tk.TokenResponse]] = {}
        self._sent: dict[int, tk.TokenRequest] = {}  # unanswered requests, to re-send on REDIRECT
        self._outbox: asyncio.Queue[tk.TokenRequest] | None = None
        self._owners: dict[FlowKey, str] = {}  # key -> owner endpoint (other than the home stream)
        self._owner_outboxes: dict[str, asyncio.Queue[tk.TokenRequest]] = {}
        self._loop_thread: LoopThread | None = None  # a loop thread of its own (start())
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False

    @property
    def endpoints(self) -> list[str]:
        return list(self.connection.endpoints)

    @property
    def tls(self) -> TlsConfig | None:
        return self.connection.tls

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> TokenClient:
        """Start on a loop thread of its own."""
        if self._loop is None:
            thread = LoopThread("opensergo-token-client")
            thread.start()
            self._loop_thread = thread
            thread.call(self.start_here)
        return self

    def stop(self) -> None:
        """Stop a client started with :meth:`start`: end its streams and its loop thread."""
        thread = self._loop_thread
        if thread is None and self._loop is not None:
            raise RuntimeError("this token client runs on its OpenSergoClient's loop: stop that client")
        self._stopping = True
        if thread is not None:
            with contextlib.suppress(RuntimeError, TimeoutError):
                thread.run(self.aclose(), timeout=5)
            thread.stop(timeout=5)
        self._fail_waiting()

    def start_here(self) -> None:
        """Start the home stream on the running event loop (an OpenSergoClient's loop thread)."""
        self._stopping = False
        self._loop = asyncio.get_running_loop()
        self._spawn(self._run(), "opensergo-token-client")

    async def aclose(self) -> None:
        """End every stream; call on the loop it runs on. With a loop thread of its own, it also
        closes its channel (on a shared loop the OpenSergoClient does)."""
        self._stopping = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.healthy = False
        self._outbox = None
        self._fail_waiting()
        if self._loop_thread is not None:
            await self.connection.release()

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def usable(self) -> bool:
        """Whether global limits should use the service now (else: local shares)."""
        return self.healthy and time.monotonic() >= self.slow_until

    def mark_slow(self, seconds: float = 1.0) -> None:
        """A request timed out. After SLOW_AFTER timeouts in a row, use local shares for
        ``seconds``, then try the service again (a single late answer on a busy host is not worth
        a second of local limiting, which the service cannot see)."""
        self._timeouts += 1
        if self._timeouts >= SLOW_AFTER:
            self._timeouts = 0
            self.slow_until = time.monotonic() + seconds

    # -- requests ----------------------------------------------------------------------------

    def request(
        self, key: FlowKey, op: str, count: int, bucket: int = 0
    ) -> concurrent.futures.Future[tk.TokenResponse]:
        """Send one request (op: lease, give_back, acquire, release); thread-safe. ``bucket``:
        with give_back, the bucket tag of the lease the tokens came from."""
        future: concurrent.futures.Future[tk.TokenResponse] = concurrent.futures.Future()
        loop = self._loop
        if loop is None or not self.healthy:
            future.set_exception(ConnectionError("token service unavailable"))
            return future
        request_id = next(self._ids)
        message = tk.TokenRequest(
            id=request_id, key=tk.FlowKey(namespace=key[0], app=key[1], resource=key[2], strategy=key[3])
        )
        getattr(message, op).count = count  # selects the oneof member
        if bucket:
            getattr(message, op).bucket = bucket
        self._waiting[request_id] = future
        try:
            loop.call_soon_threadsafe(self._enqueue, message)
        except RuntimeError:  # loop closed
            self._waiting.pop(request_id, None)
            future.set_exception(ConnectionError("token client stopped"))
        return future

    def _enqueue(self, message: tk.TokenRequest) -> None:
        if self._outbox is None:
            self._resolve_error(message.id)
            return
        self._sent[message.id] = message
        k = message.key
        owner = self._owners.get((k.namespace, k.app, k.resource, k.strategy))
        outbox = self._owner_outboxes.get(owner) if owner is not None else None
        (outbox or self._outbox).put_nowait(message)

    def _answer(self, response: tk.TokenResponse) -> None:
        request = self._sent.pop(response.id, None)
        if response.code == tk.TokenResponse.REDIRECT and request is not None and response.owner:
            k = request.key
            self._owners[(k.namespace, k.app, k.resource, k.strategy)] = response.owner
            if response.owner not in self._owner_outboxes:
                self._owner_outboxes[response.owner] = asyncio.Queue()
                self._spawn(self._owner_stream(response.owner), f"opensergo-token-owner-{response.owner}")
            self._sent[request.id] = request
            self._owner_outboxes[response.owner].put_nowait(request)
            return
        future = self._waiting.pop(response.id, None)
        if future is not None and not future.done():
            future.set_result(response)

    def _resolve_error(self, request_id: int) -> None:
        self._sent.pop(request_id, None)
        future = self._waiting.pop(request_id, None)
        if future is not None and not future.done():
            future.set_exception(ConnectionError("token service unavailable"))

    def _fail_waiting(self) -> None:
        self._sent.clear()
        waiting, self._waiting = self._waiting, {}
        for future in waiting.values():
            if not future.done():
                future.set_exception(ConnectionError("token stream ended"))

    # -- the stream --------------------------------------------------------------------------

    async def _run(self) -> None:
        attempt = 0
        while not self._stopping:
            link = self.connection.link()
            started = time.monotonic()
            broken = False  # the transport failed: the connection should move on
            refused = False  # the service refused our credentials
            try:
                await self._stream(link)
            except asyncio.CancelledError:
                if self._stopping or not cancelled_under_us():
                    raise
                # grpc cancels a call itself when a request is written after the call ended (the
                # server died between two batches), or when a rotation closed the channel: a
                # broken stream, not our shutdown.
                log.debug("token stream to %s was cancelled under us", link.endpoint)
                broken = True
            except grpc.aio.AioRpcError as err:
                refused = err.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)
                if refused:
                    log.warning(
                        "token service %s refused this client (%s: %s): global limits use local shares",
                        link.endpoint,
                        err.code().name,
                        err.details(),
                    )
                else:
                    log.debug("token stream to %s ended: %s", link.endpoint, err.code())
                broken = err.code() == grpc.StatusCode.UNAVAILABLE
            except TimeoutError:
                log.debug("token service %s not reachable within %.1fs", link.endpoint, CONNECT_TIMEOUT)
                broken = True
            except Exception:
                if self.connection.moved_since(link):  # e.g. grpc's "Channel is closed"
                    log.debug("token stream to %s ended: the connection moved on", link.endpoint)
                else:
                    log.exception("token stream to %s failed", link.endpoint)
            was_healthy = self._mark_down(link.endpoint)
            if was_healthy:
                attempt = 0
            if broken:  # (an attempt that never connected stays if another user got through)
                await self.connection.rotate(link, attempt_started=None if was_healthy else started)
            if refused:  # not pause(): other users getting through says nothing about our rights
                await asyncio.sleep(REFUSED_DELAY)
            else:
                await self.connection.pause(self.connection.backoff.delay(attempt))
            attempt += 1

    def _mark_down(self, endpoint: str) -> bool:
        """The home stream ended; True if it had been healthy."""
        was_healthy, self.healthy = self.healthy, False
        self._outbox = None
        self._fail_waiting()
        if was_healthy:
            log.warning("token service %s unreachable: global limits use local shares", endpoint)
        return was_healthy

    async def _stream(self, link: Link) -> None:
        outbox: asyncio.Queue[tk.TokenRequest] = asyncio.Queue()

        def ready() -> None:
            self._outbox = outbox
            self.healthy = True
            self.slow_until = 0.0
            self.connection.confirm(link)
            log.info("token service %s connected: global limits are enforced cluster-wide", link.endpoint)

        await self._connect(link.channel, outbox, ready)

    async def _owner_stream(self, endpoint: str) -> None:
        """A stream to the replica that owns some keys; when it ends, those keys ask home again."""
        outbox = self._owner_outboxes[endpoint]
        try:
            async with self.connection.open_channel(endpoint) as channel:
                await self._connect(channel, outbox)
        except (grpc.aio.AioRpcError, OSError, TimeoutError) as err:
            log.info("token service owner %s unreachable: %s", endpoint, err)
        finally:
            self._owner_outboxes.pop(endpoint, None)
            for key in [k for k, owner in self._owners.items() if owner == endpoint]:
                del self._owners[key]
            while not outbox.empty():
                self._resolve_error(outbox.get_nowait().id)

    async def _connect(
        self,
        channel: grpc.aio.Channel,
        outbox: asyncio.Queue[tk.TokenRequest],
        ready: Callable[[], None] | None = None,
    ) -> None:
        """One Connect stream until it ends; ``ready`` is called once the channel is up."""

        async def requests() -> AsyncIterator[tk.TokenBatch]:
            # Everything queued while the previous batch was being written goes in the next one.
            first = True
            while True:
                batch = tk.TokenBatch(requests=[await outbox.get()])
                while not outbox.empty():
                    batch.requests.append(outbox.get_nowait())
                if first:
                    batch.client_id = self.client_id
                    first = False
                yield batch

        await asyncio.wait_for(channel.channel_ready(), timeout=CONNECT_TIMEOUT)
        stub = tk_grpc.TokenServiceStub(channel)  # type: ignore[no-untyped-call]
        call = stub.Connect(requests())
        if ready is not None:
            ready()
        async for answers in call:
            self._timeouts = 0
            for response in answers.responses:
                self._answer(response)
