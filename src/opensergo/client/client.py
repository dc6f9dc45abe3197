"""The OpenSergo data-plane client: one SubscribeConfig stream, a rule cache, metadata reporting.

The core is asyncio (grpc.aio). Sync code uses :meth:`OpenSergoClient.start` / ``stop`` (or
``with``), which run the core on a dedicated daemon thread with its own event loop; asyncio code
uses ``await astart()`` / ``await astop()`` (or ``async with``) on the running loop. Subscription
callbacks always run on the core's loop thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from opensergo.client._spec import (
    Decoder,
    KindLike,
    Parser,
    RawKind,
    default_decoder,
    default_parser,
    kind_by_full_kind,
)
from opensergo.client._spec import resolve_kind as _resolve_kind
from opensergo.client.bootstrap import BootstrapError, load_bootstrap
from opensergo.client.cache import RuleCache, SnapshotFile, default_snapshot_dir
from opensergo.client.connection import Backoff, ChannelOptions, SubscribeStream
from opensergo.client.credentials import BearerToken, TokenError, as_bearer_token
from opensergo.client.reporter import MetadataReporter, ServiceInfo, build_node
from opensergo.client.subscriber import (
    Callback,
    PushHandler,
    subscribe_request,
    unsubscribe_request,
)
from opensergo.client.tls import TlsConfig, TlsError
from opensergo.common.protocol import ENCODING_LABEL, Encoding, SubscriptionKey
from opensergo.proto.service_contract.v1 import service_contract_pb2 as sc
from opensergo.proto.transport.v1 import protocol_pb2 as pb
from opensergo.spec.base import Resource

__all__ = ["OpenSergoClient", "Subscription", "default_identifier"]

_log = logging.getLogger("opensergo.client")

T = TypeVar("T")

_NEW, _RUNNING, _STOPPED = "new", "running", "stopped"
_MAX_TRACKED_REQUESTS = 1024


def default_identifier() -> str:
    """``<hostname>-<pid>-<8 random hex digits>``."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"


class Subscription:
    """One subscriber's interest in (namespace, app, kind). Compared by identity."""

    def __init__(
        self, client: OpenSergoClient, key: SubscriptionKey, kind: KindLike, callback: Callback | None
    ) -> None:
        self._client = client
        self.key = key
        self.kind_info = kind
        self.callback = callback
        self.active = True

    @property
    def kind(self) -> str:
        """The full kind name, ``group/version/Kind``."""
        return self.key.kind

    @property
    def namespace(self) -> str:
        return self.key.namespace

    @property
    def app(self) -> str:
        return self.key.app

    @property
    def resources(self) -> list[Resource]:
        """The currently cached resources of this key."""
        entry = self._client.cache.entry(self.key)
        return list(entry.items) if entry is not None else []

    @property
    def version(self) -> int | None:
        """The cached version of this key, or None."""
        entry = self._client.cache.entry(self.key)
        return entry.version if entry is not None else None

    def unsubscribe(self) -> None:
        self._client.unsubscribe(self)

    def __repr__(self) -> str:
        state = "active" if self.active else "closed"
        return f"<Subscription {self.key.namespace}/{self.key.app} {self.key.kind} {state}>"


class OpenSergoClient:
    """Subscribe to OpenSergo rules over one stream; keep them cached in memory and on disk.

    ``endpoint`` is ``"host:port"``, a comma-separated list of those, or a sequence; the client
    rotates through them on failure. ``tls`` secures every channel (subscriptions and metadata
    reports); endpoints written ``grpcs://host:port`` or ``https://host:port`` mean TLS verified by
    the system roots when ``tls`` is not given. Default: plaintext. ``token`` (text or a
    :class:`~opensergo.client.credentials.BearerToken`, e.g. read from a file) is sent as
    ``authorization: Bearer`` on every call, for a control plane with auth on.
    """

    def __init__(
        self,
        endpoint: str | Sequence[str],
        *,
        app: str,
        namespace: str = "default",
        identifier: str | None = None,
        snapshot_dir: Path | str | None = None,
        persist_snapshot: bool = True,
        heartbeat_interval: float | None = 30.0,
        report_metadata: bool = True,
        service_metadata: Sequence[sc.ServiceMetadata | ServiceInfo] = (),
        tag: str | None = None,
        cluster: str | None = None,
        env: str | None = None,
        region: str | None = None,
        zone: str | None = None,
        labels: Mapping[str, str] | None = None,
        decoder: Decoder | None = None,
        parser: Parser | None = None,
        backoff_initial: float = 0.2,
        backoff_max: float = 10.0,
        backoff_multiplier: float = 2.0,
        native_encoding: bool = True,
        channel_options: ChannelOptions = (),
        report_timeout: float = 5.0,
        tls: TlsConfig | None = None,
        token: str | BearerToken | None = None,
    ) -> None:
        from opensergo.client.bootstrap import split_endpoints

        if not app:
            raise ValueError("app must be a non-empty string")
        if not namespace:
            raise ValueError("namespace must be a non-empty string")
        self._endpoints, scheme_tls = split_endpoints(
            endpoint if isinstance(endpoint, str) else list(endpoint)
        )
        if tls is None and scheme_tls:
            tls = TlsConfig()
        if tls is not None:
            tls.channel_credentials()  # read the files now: a missing one fails here, not on every retry
        self._tls = tls
        self._token = as_bearer_token(token)
        self._app = app
        self._namespace = namespace
        self._identifier = identifier or default_identifier()
        self._decoder: Decoder = decoder if decoder is not None else default_decoder
        self._parser: Parser = parser if parser is not None else default_parser
        self._backoff = Backoff(initial=backoff_initial, maximum=backoff_max, multiplier=backoff_multiplier)
        self._labels: list[tuple[str, str]] = (
            [(ENCODING_LABEL, Encoding.NATIVE.value)] if native_encoding else []
        )
        self._channel_options = list(channel_options)
        self._snapshot: SnapshotFile | None = None
        if persist_snapshot:
            directory = Path(snapshot_dir) if snapshot_dir is not None else default_snapshot_dir()
            self._snapshot = SnapshotFile(directory, namespace=namespace, app=app)
        self._report_metadata = report_metadata
        self._heartbeat_interval = heartbeat_interval
        self._report_timeout = report_timeout
        self._services = list(service_metadata)
        self._node_fields = {"tag": tag, "cluster": cluster, "env": env, "region": region, "zone": zone}
        self._instance_labels = dict(labels or {})

        self._cache = RuleCache(namespace=namespace, app=app)
        self._lock = threading.RLock()  # guards the subscription registry
        self._subs: dict[SubscriptionKey, list[Subscription]] = {}
        self._kinds: dict[str, KindLike] = {}
        self._request_ids = itertools.count(1)
        self._request_keys: dict[str, tuple[str, SubscriptionKey]] = {}

        self._state_lock = threading.RLock()
        self._state = _NEW
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread_id: int | None = None
        self._thread: threading.Thread | None = None
        self._owns_loop = False
        self._stream: SubscribeStream | None = None
        self._reporter: MetadataReporter | None = None
        self._snapshot_dirty = False
        self._snapshot_writer: asyncio.Task[None] | None = None
        self._handler = PushHandler(
            cache=self._cache, identifier=self._identifier, decoder=self._decoder, hooks=self
        )

    # -- construction from the environment ---------------------------------------------------------
    @classmethod
    def from_env(
        cls, *, app: str | None = None, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> OpenSergoClient:
        """A client configured by ``OPENSERGO_BOOTSTRAP_CONFIG`` / ``OPENSERGO_BOOTSTRAP``.

        The app is ``app``, else the bootstrap ``"app"``, else ``$OPENSERGO_APP``. Keyword
        ``overrides`` win over the bootstrap values (``endpoint=`` replaces the endpoints).
        Raises :class:`BootstrapError` when the environment is not set or is invalid.
        """
        env = os.environ if environ is None else environ
        config = load_bootstrap(env)
        if config is None:
            raise BootstrapError(
                "OpenSergo is not configured: set $OPENSERGO_BOOTSTRAP_CONFIG or $OPENSERGO_BOOTSTRAP"
            )
        resolved_app = app or config.app or env.get("OPENSERGO_APP", "").strip()
        if not resolved_app:
            raise BootstrapError(
                f"{config.source}: no app name: pass app=..., "
                'set "app" in the bootstrap config or $OPENSERGO_APP'
            )
        kwargs: dict[str, Any] = {}
        namespace = config.namespace or env.get("OPENSERGO_NAMESPACE", "").strip()
        if namespace:
            kwargs["namespace"] = namespace
        for name in (
            "snapshot_dir", "heartbeat_interval", "tag", "cluster", "env", "region", "zone", "tls", "token",
        ):  # fmt: skip
            value = getattr(config, name)
            if value is not None:
                kwargs[name] = value
        endpoint = overrides.pop("endpoint", config.endpoints)
        kwargs.update(overrides)
        try:
            return cls(endpoint, app=resolved_app, **kwargs)
        except (TlsError, TokenError) as exc:
            if "tls" in overrides or "token" in overrides:
                raise
            raise BootstrapError(f"{config.source}: {exc}") from exc

    # -- properties ------------------------------------------------------------------------------
    @property
    def app(self) -> str:
        return self._app

    @property
    def namespace(self) -> str:
        return self._namespace

    @property
    def identifier(self) -> str:
        return self._identifier

    @property
    def endpoints(self) -> list[str]:
        return list(self._endpoints)

    @property
    def tls(self) -> TlsConfig | None:
        """The TLS settings of the channels; None: plaintext."""
        return self._tls

    @property
    def token(self) -> BearerToken | None:
        """The access token sent on every call; None: no token."""
        return self._token

    @property
    def cache(self) -> RuleCache:
        return self._cache

    @property
    def snapshot_path(self) -> Path | None:
        return self._snapshot.path if self._snapshot is not None else None

    @property
    def running(self) -> bool:
        return self._state == _RUNNING

    @property
    def connected(self) -> bool:
        """True while the stream is open and has exchanged messages."""
        return self._stream is not None and self._stream.connected

    @property
    def streams_opened(self) -> int:
        """How many SubscribeConfig streams were opened (reconnects + 1)."""
        return self._stream.streams_opened if self._stream is not None else 0

    @property
    def reporter(self) -> MetadataReporter | None:
        return self._reporter

    def subscriptions(self) -> list[Subscription]:
        with self._lock:
            return [sub for subs in self._subs.values() for sub in subs]

    # -- lifecycle: sync facade -----------------------------------------------------------------
    def start(self, timeout: float | None = 10.0) -> OpenSergoClient:
        """Start the core on a daemon thread with its own event loop. Idempotent."""
        with self._state_lock:
            if self._state == _RUNNING:
                return self
            if self._state == _STOPPED:
                raise RuntimeError("this OpenSergoClient was stopped; create a new one")
            loop = asyncio.new_event_loop()
            thread = threading.Thread(
                target=_run_loop, args=(loop,), name=f"opensergo-client-{self._app}", daemon=True
            )
            thread.start()
            self._loop, self._thread, self._loop_thread_id, self._owns_loop = loop, thread, thread.ident, True
            self._state = _RUNNING
        future = asyncio.run_coroutine_threadsafe(self._astart_core(), loop)
        try:
            future.result(timeout)
        except BaseException:
            future.cancel()
            self.stop()
            raise
        return self

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop the stream and the reporter, close the channels and join the thread. Idempotent."""
        with self._state_lock:
            if self._state != _RUNNING:
                self._state = _STOPPED
                return
            loop, thread = self._loop, self._thread
            assert loop is not None
            if self._on_loop_thread():
                hint = "await astop()" if not self._owns_loop else "call stop() from another thread"
                raise RuntimeError(f"stop() would block the client's own event loop; {hint}")
            self._state = _STOPPED
        try:
            asyncio.run_coroutine_threadsafe(self._astop_core(), loop).result(timeout)
        except Exception:
            _log.exception("error while stopping the OpenSergo client")
        finally:
            if self._owns_loop and thread is not None:
                loop.call_soon_threadsafe(loop.stop)
                thread.join(timeout)
                self._thread = None

    def __enter__(self) -> OpenSergoClient:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- lifecycle: asyncio -----------------------------------------------------------------------
    async def astart(self) -> OpenSergoClient:
        """Start the core on the running event loop. Idempotent."""
        with self._state_lock:
            if self._state == _RUNNING:
                return self
            if self._state == _STOPPED:
                raise RuntimeError("this OpenSergoClient was stopped; create a new one")
            self._loop = asyncio.get_running_loop()
            self._loop_thread_id = threading.get_ident()
            self._owns_loop = False
            self._state = _RUNNING
        try:
            await self._astart_core()
        except BaseException:
            await self.astop()
            raise
        return self

    async def astop(self) -> None:
        """Stop the core started by :meth:`astart`. Idempotent."""
        with self._state_lock:
            if self._state != _RUNNING:
                self._state = _STOPPED
                return
            owns = self._owns_loop
            if not owns:
                self._state = _STOPPED
        if owns:  # started with start(): stop without blocking this loop
            await asyncio.get_running_loop().run_in_executor(None, self.stop)
            return
        await self._astop_core()

    async def __aenter__(self) -> OpenSergoClient:
        return await self.astart()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.astop()

    async def _astart_core(self) -> None:
        self._load_snapshot()
        with self._lock:
            pending = [sub for subs in self._subs.values() for sub in subs]
        for sub in pending:
            self._deliver_cached(sub)
        self._stream = SubscribeStream(
            self._endpoints,
            on_open=self._on_stream_open,
            on_response=self._handler.handle,
            backoff=self._backoff,
            channel_options=self._channel_options,
            tls=self._tls,
            token=self._token,
        )
        self._stream.start()
        if self._report_metadata:
            self._reporter = MetadataReporter(
                self._endpoints,
                app=self._app,
                node=build_node(**self._node_fields),
                services=self._services,
                interval=self._heartbeat_interval,
                timeout=self._report_timeout,
                channel_options=self._channel_options,
                call_metadata=self._registration_headers(),
                tls=self._tls,
                token=self._token,
            )
            self._reporter.start()
        _log.info(
            "OpenSergo client %s started (app %s, namespace %s, endpoints %s, %s)",
            self._identifier,
            self._app,
            self._namespace,
            ",".join(self._endpoints),
            self._tls.describe() if self._tls is not None else "plaintext",
        )

    async def _astop_core(self) -> None:
        stream, self._stream = self._stream, None
        reporter = self._reporter
        if stream is not None:
            await stream.close()
        if reporter is not None:
            await reporter.close()
        await self._flush_snapshot()
        self._cache.notify()
        _log.info("OpenSergo client %s stopped", self._identifier)

    def _load_snapshot(self) -> None:
        if self._snapshot is None:
            return
        document = self._snapshot.load()
        if document is None:
            return
        try:
            count = self._cache.load_snapshot(document, self._parser)
        except (ValueError, TypeError) as exc:
            _log.warning("ignoring snapshot %s: %s", self._snapshot.path, exc)
            return
        _log.info("loaded %d cached key(s) from snapshot %s", count, self._snapshot.path)

    # -- loop-thread helpers ------------------------------------------------------------------
    def _on_loop_thread(self) -> bool:
        return self._loop_thread_id is not None and threading.get_ident() == self._loop_thread_id

    def _run_on_loop(self, fn: Callable[[], T], timeout: float | None = 10.0) -> T:
        with self._state_lock:
            if self._state == _NEW:
                return fn()
            if self._state == _STOPPED:
                raise RuntimeError("the OpenSergo client is stopped")
            loop = self._loop
        assert loop is not None
        if self._on_loop_thread():
            return fn()
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def runner() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

        try:
            loop.call_soon_threadsafe(runner)
        except RuntimeError as exc:  # loop closed
            raise RuntimeError("the OpenSergo client is stopped") from exc
        return future.result(timeout)

    # -- subscriptions ---------------------------------------------------------------------------
    def subscribe(
        self,
        kind: str | KindLike,
        *,
        app: str | None = None,
        namespace: str | None = None,
        callback: Callback | None = None,
    ) -> Subscription:
        """Subscribe to ``kind`` for (namespace, app) (default: the client's).

        ``callback(resources, version)`` is called at once with cached or snapshot data if there is
        any, and after every applied push, on the client's loop thread. A callback that raises
        makes the client NACK the push (code 4007); the data stays applied.
        """
        info = _resolve_kind(kind)
        if isinstance(info, RawKind) and self._decoder is default_decoder:
            raise ValueError(f"unknown kind {info.full_kind!r} (not in opensergo.spec.kinds; pass a decoder)")
        key = SubscriptionKey(namespace or self._namespace, app or self._app, info.full_kind)
        sub = Subscription(self, key, info, callback)
        self._run_on_loop(lambda: self._add_subscription(sub))
        return sub

    def unsubscribe(self, subscription: Subscription) -> None:
        """Drop ``subscription``; the last one of a key sends UNSUBSCRIBE. Idempotent."""
        if not subscription.active:
            return
        with self._state_lock:
            stopped = self._state == _STOPPED
        if stopped:
            self._remove_subscription(subscription)
            return
        self._run_on_loop(lambda: self._remove_subscription(subscription))

    def _add_subscription(self, sub: Subscription) -> None:
        with self._lock:
            subs = self._subs.setdefault(sub.key, [])
            first = not subs
            subs.append(sub)
            self._kinds.setdefault(sub.key.kind, sub.kind_info)
        if self._state == _RUNNING:
            if first and self._stream is not None:
                self._stream.send(self._subscribe_request(sub.key))
            self._deliver_cached(sub)
        self._cache.notify()

    def _remove_subscription(self, sub: Subscription) -> None:
        with self._lock:
            subs = self._subs.get(sub.key, [])
            if sub not in subs:
                sub.active = False
                return
            subs.remove(sub)
            last = not subs
            if last:
                del self._subs[sub.key]
            sub.active = False
        if last and self._state == _RUNNING and self._stream is not None:
            rid = self._next_request_id(sub.key, "unsubscribe")
            self._stream.send(
                unsubscribe_request(sub.key, identifier=self._identifier, request_id=rid, labels=self._labels)
            )
        self._cache.notify()

    def _deliver_cached(self, sub: Subscription) -> None:
        if sub.callback is None:
            return
        entry = self._cache.entry(sub.key)
        if entry is None:
            return
        try:
            sub.callback(list(entry.items), entry.version)
        except Exception:
            _log.exception("subscriber callback for %s failed on cached data", sub)

    def _next_request_id(self, key: SubscriptionKey, what: str) -> str:
        rid = str(next(self._request_ids))
        self._request_keys[rid] = (what, key)
        while len(self._request_keys) > _MAX_TRACKED_REQUESTS:
            del self._request_keys[next(iter(self._request_keys))]
        return rid

    def _subscribe_request(self, key: SubscriptionKey) -> pb.SubscribeRequest:
        rid = self._next_request_id(key, "subscribe")
        return subscribe_request(key, identifier=self._identifier, request_id=rid, labels=self._labels)

    @property
    def instance_labels(self) -> dict[str, str]:
        """The selector labels the control plane gives this instance: tag, cluster, env, region,
        zone (when set) and the custom ``labels`` (which win)."""
        labels = {k: str(v) for k, v in self._node_fields.items() if v}
        labels.update(self._instance_labels)
        return labels

    def _registration_headers(self) -> list[tuple[str, str]]:
        """gRPC metadata our control plane reads with ReportMetadata (the upstream messages have no room)."""
        headers = [("opensergo-namespace", self._namespace), ("opensergo-client-id", self._identifier)]
        if self._instance_labels:
            text = ",".join(f"{k}={v}" for k, v in sorted(self._instance_labels.items()))
            headers.append(("opensergo-labels", text))
        return headers

    def _on_stream_open(self) -> list[pb.SubscribeRequest]:
        # A new stream may mean a restarted control plane or a broken stream that expired this
        # instance: register again at once rather than at the next beat.
        if self._reporter is not None:
            self._reporter.report_soon()
        self._request_keys.clear()
        with self._lock:
            keys = list(self._subs)
        return [self._subscribe_request(key) for key in keys]

    # -- PushHandler hooks ---------------------------------------------------------------------
    def resolve_push_kind(self, name: str) -> KindLike | None:
        with self._lock:
            known = self._kinds.get(name)
        return known if known is not None else kind_by_full_kind(name)

    def callbacks_for(self, key: SubscriptionKey) -> list[Callback]:
        with self._lock:
            return [sub.callback for sub in self._subs.get(key, ()) if sub.callback is not None]

    def persist(self) -> None:
        """Schedule a snapshot write. Writes run off the loop, one at a time, newest state last."""
        if self._snapshot is None:
            return
        self._snapshot_dirty = True
        if self._snapshot_writer is None or self._snapshot_writer.done():
            self._snapshot_writer = asyncio.get_running_loop().create_task(
                self._write_snapshots(), name="opensergo-snapshot"
            )

    async def _write_snapshots(self) -> None:
        snapshot = self._snapshot
        assert snapshot is not None
        while self._snapshot_dirty:
            self._snapshot_dirty = False
            document = self._cache.to_snapshot()  # taken on the loop: consistent with the cache
            try:
                await asyncio.to_thread(snapshot.save, document)
            except Exception:
                _log.exception("cannot write the rule snapshot %s", snapshot.path)

    async def _flush_snapshot(self) -> None:
        writer = self._snapshot_writer
        if writer is not None:
            await asyncio.shield(writer)

    def describe_request(self, request_id: str) -> str:
        found = self._request_keys.get(request_id)
        if found is None:
            return "unknown request"
        what, key = found
        return f"{what} {key.namespace}/{key.app} {key.kind}"

    # -- queries -------------------------------------------------------------------------------
    def get(
        self, kind: str | KindLike, *, app: str | None = None, namespace: str | None = None
    ) -> list[Resource]:
        """The cached resources of ``kind`` for (namespace, app) (default: the client's)."""
        return self._cache.get(kind, namespace=namespace or self._namespace, app=app or self._app)

    def version(
        self, kind: str | KindLike, *, app: str | None = None, namespace: str | None = None
    ) -> int | None:
        return self._cache.version(kind, namespace=namespace or self._namespace, app=app or self._app)

    def _version_predicate(
        self, kind: str | KindLike, min_version: int, app: str | None, namespace: str | None
    ) -> Callable[[], bool]:
        key = SubscriptionKey(namespace or self._namespace, app or self._app, _resolve_kind(kind).full_kind)

        def reached() -> bool:
            entry = self._cache.entry(key)
            return entry is not None and entry.live and entry.version >= min_version

        return reached

    def _synced(self) -> bool:
        with self._lock:
            keys = list(self._subs)
        for key in keys:
            entry = self._cache.entry(key)
            if entry is None or not entry.live:
                return False
        return True

    def wait_for_version(
        self,
        kind: str | KindLike,
        min_version: int,
        timeout: float | None,
        *,
        app: str | None = None,
        namespace: str | None = None,
    ) -> bool:
        """Block until a live push of at least ``min_version`` was applied for the key; False on timeout.

        Data loaded from the on-disk snapshot does not count. For use from sync code (or other
        threads); in asyncio code await :meth:`wait_for_version_async`.
        """
        self._check_not_loop("wait_for_version")
        return self._cache.wait_until(self._version_predicate(kind, min_version, app, namespace), timeout)

    async def wait_for_version_async(
        self,
        kind: str | KindLike,
        min_version: int,
        timeout: float | None,
        *,
        app: str | None = None,
        namespace: str | None = None,
    ) -> bool:
        predicate = self._version_predicate(kind, min_version, app, namespace)
        return await self._cache.wait_until_async(predicate, timeout)

    def wait_synced(self, timeout: float | None) -> bool:
        """Block until every active subscription has received at least one live push."""
        self._check_not_loop("wait_synced")
        return self._cache.wait_until(self._synced, timeout)

    async def wait_synced_async(self, timeout: float | None) -> bool:
        return await self._cache.wait_until_async(self._synced, timeout)

    def _check_not_loop(self, name: str) -> None:
        if self._on_loop_thread():
            raise RuntimeError(f"{name}() would block the client's event loop; await {name}_async() instead")

    def __repr__(self) -> str:
        return (
            f"<OpenSergoClient {self._identifier} app={self._app!r} namespace={self._namespace!r} "
            f"endpoints={self._endpoints} {self._state}>"
        )


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        try:
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()
