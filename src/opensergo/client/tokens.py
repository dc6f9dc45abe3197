"""Client of the control plane's token service (limitMode Global), on its own thread and loop.

The engine's hot path never waits on it in the common case: global limits lease tokens and
permits ahead of need (see opensergo.governance.faulttolerance.cluster). ``request`` is callable
from any thread and returns a concurrent Future. The client is ``healthy`` while its stream is
up; when the stream breaks, or a request goes unanswered past ``timeout``, it is unhealthy and
global limits fall back to local shares until a new stream answers again.

With several control-plane replicas each key has one owner. A replica that does not own a key
answers REDIRECT with the owner's address; the client then keeps a second stream to that owner
for the keys it owns (and forgets them when that stream breaks, so the next request asks again).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import logging
import threading
import time
from collections.abc import AsyncIterator, Sequence

import grpc

from opensergo.client.credentials import BearerToken
from opensergo.client.tls import TlsConfig, open_channel
from opensergo.proto.flowcontrol.v1 import token_pb2 as tk
from opensergo.proto.flowcontrol.v1 import token_pb2_grpc as tk_grpc

log = logging.getLogger("opensergo.client.tokens")

DEFAULT_TIMEOUT = 0.020  # Sentinel's cluster client request timeout
RECONNECT_DELAY = 0.25
REFUSED_DELAY = 5.0  # after UNAUTHENTICATED or PERMISSION_DENIED: the answer will not change soon
CONNECT_TIMEOUT = 2.0
# A fresh channel otherwise waits ~1 s after its first refused connect before trying again.
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
]
SLOW_AFTER = 3  # consecutive timeouts before falling back to local shares

FlowKey = tuple[str, str, str, str]  # namespace, app, resource, strategy


class TokenClient:
    """One Connect stream to the token service, with reconnects, on a background loop.

    ``tls`` and ``token`` apply to every stream, including those to other replicas named by
    REDIRECT."""

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        client_id: str,
        timeout: float = DEFAULT_TIMEOUT,
        tls: TlsConfig | None = None,
        token: BearerToken | None = None,
    ) -> None:
        if not endpoints:
            raise ValueError("at least one endpoint is required")
        self.endpoints = list(endpoints)
        self.tls = tls
        self.token = token
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
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> TokenClient:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            ready.set()
            try:
                loop.run_until_complete(self._run())
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="opensergo-token-client", daemon=True)
        self._thread.start()
        ready.wait()
        return self

    def stop(self) -> None:
        self._stopping = True
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(lambda: [t.cancel() for t in asyncio.all_tasks(loop)])
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._fail_waiting()

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
                asyncio.get_running_loop().create_task(self._owner_stream(response.owner))
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
        index = 0
        while not self._stopping:
            endpoint = self.endpoints[index % len(self.endpoints)]
            delay = RECONNECT_DELAY
            try:
                await self._stream(endpoint)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if self._stopping or (task is not None and task.cancelling()):
                    break
                # grpc cancels a call itself when a request is written after the call ended (the
                # server died between two batches); that is a broken stream, not our shutdown.
                log.debug("token stream to %s was cancelled under us", endpoint)
            except grpc.aio.AioRpcError as err:
                if err.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                    log.warning(
                        "token service %s refused this client (%s: %s): global limits use local shares",
                        endpoint,
                        err.code().name,
                        err.details(),
                    )
                    delay = REFUSED_DELAY
                else:
                    log.debug("token stream to %s ended: %s", endpoint, err.code())
            except TimeoutError:
                log.debug("token service %s not reachable within %.1fs", endpoint, CONNECT_TIMEOUT)
            except Exception:
                log.exception("token stream to %s failed", endpoint)
            was_healthy, self.healthy = self.healthy, False
            self._outbox = None
            self._fail_waiting()
            if was_healthy:
                log.warning("token service %s unreachable: global limits use local shares", endpoint)
            index += 1
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(delay)

    async def _stream(self, endpoint: str) -> None:
        outbox: asyncio.Queue[tk.TokenRequest] = asyncio.Queue()
        await self._connect(endpoint, outbox, home=True)

    async def _owner_stream(self, endpoint: str) -> None:
        """A stream to the replica that owns some keys; when it ends, those keys ask home again."""
        outbox = self._owner_outboxes[endpoint]
        try:
            await self._connect(endpoint, outbox, home=False)
        except (grpc.aio.AioRpcError, OSError, TimeoutError) as err:
            log.info("token service owner %s unreachable: %s", endpoint, err)
        finally:
            self._owner_outboxes.pop(endpoint, None)
            for key in [k for k, owner in self._owners.items() if owner == endpoint]:
                del self._owners[key]
            while not outbox.empty():
                self._resolve_error(outbox.get_nowait().id)

    async def _connect(self, endpoint: str, outbox: asyncio.Queue[tk.TokenRequest], *, home: bool) -> None:
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

        async with open_channel(endpoint, self.tls, CHANNEL_OPTIONS, self.token) as channel:
            await asyncio.wait_for(channel.channel_ready(), timeout=CONNECT_TIMEOUT)
            stub = tk_grpc.TokenServiceStub(channel)  # type: ignore[no-untyped-call]
            call = stub.Connect(requests())
            if home:
                self._outbox = outbox
                self.healthy = True
                self.slow_until = 0.0
                log.info("token service %s connected: global limits are enforced cluster-wide", endpoint)
            async for answers in call:
                self._timeouts = 0
                for response in answers.responses:
                    self._answer(response)
