"""The OpenSergo data-plane client: subscriptions, a rule cache, metadata reports, global tokens.

The client puts together the parts that each do one thing:

- :class:`~opensergo.client.loop.LoopThread`: where the asyncio core runs. Sync code uses
  :meth:`OpenSergoClient.start` / ``stop`` (or ``with``): one daemon thread with its own loop.
  Asyncio code uses ``await astart()`` / ``await astop()`` (or ``async with``) on its running loop.
  Subscription callbacks always run on the core's loop thread.
- :class:`~opensergo.client.connection.Connection`: the one selected endpoint, its channel, TLS,
  rotation and backoff, shared by the three users below.
- :class:`~opensergo.client.stream.SubscribeStream`, :class:`~opensergo.client.reporter.MetadataReporter`
  and :class:`~opensergo.client.tokens.TokenClient` (made on demand by :meth:`token_client`).
- :class:`~opensergo.client.registry.SubscriptionRegistry`: who subscribed to what; it answers the
  :class:`~opensergo.client.subscriber.PushHandler`'s questions about each push.
- :class:`~opensergo.client.cache.RuleCache` and :class:`~opensergo.client.snapshot.SnapshotWriter`
  (the on-disk snapshot).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from opensergo.client._spec import KindLike, RawKind, default_decoder, default_parser
from opensergo.client._spec import resolve_kind as _resolve_kind
from opensergo.client.bootstrap import BootstrapError, load_bootstrap, split_endpoints
from opensergo.client.cache import RuleCache
from opensergo.client.connection import ChannelOptions, Connection
from opensergo.client.credentials import BearerToken, TokenError, as_bearer_token
from opensergo.client.loop import LoopThread
from opensergo.client.options import (
    DEFAULT_BACKOFF,
    DEFAULT_CODEC,
    DEFAULT_HEARTBEAT,
    DEFAULT_INSTANCE,
    DEFAULT_SNAPSHOT,
    Backoff,
    Codec,
    Heartbeat,
    InstanceInfo,
    Snapshot,
)
from opensergo.client.registry import Subscription, SubscriptionRegistry
from opensergo.client.reporter import MetadataReporter, ServiceInfo, build_node
from opensergo.client.snapshot import SnapshotFile, SnapshotWriter, default_snapshot_dir
from opensergo.client.stream import SubscribeStream
from opensergo.client.subscriber import Callback, PushHandler
from opensergo.client.tls import TlsConfig, TlsError
from opensergo.client.tokens import DEFAULT_TIMEOUT, TokenClient
from opensergo.common.protocol import ENCODING_LABEL, Encoding, SubscriptionKey
from opensergo.proto.service_contract.v1 import service_contract_pb2 as sc
from opensergo.proto.transport.v1 import protocol_pb2 as pb
from opensergo.spec.base import Resource

__all__ = ["OpenSergoClient", "Subscription", "default_identifier"]

_log = logging.getLogger("opensergo.client")

_NEW, _RUNNING, _STOPPED = "new", "running", "stopped"


def default_identifier() -> str:
    """``<hostname>-<pid>-<8 random hex digits>``."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"


class OpenSergoClient:
    """Subscribe to OpenSergo rules over one stream; keep them cached in memory and on disk.

    ``endpoint`` is ``"host:port"``, a comma-separated list of those, or a sequence; the client
    rotates through them on failure. ``tls`` secures every channel (subscriptions, metadata
    reports, global-limit tokens); endpoints written ``grpcs://host:port`` or ``https://host:port``
    mean TLS verified by the system roots when ``tls`` is not given. Default: plaintext. ``token``
    (text or a :class:`~opensergo.client.credentials.BearerToken`, e.g. read from a file) is sent
    as ``authorization: Bearer`` on every call of every channel, for a control plane with auth on.

    ``service_metadata`` is what the application serves (reported with ReportMetadata);
    ``instance`` how this instance describes itself (placement fields and selector labels). The
    other settings come in groups (see :mod:`opensergo.client.options`): ``backoff`` between
    reconnects, ``heartbeat`` for metadata reports (None: never report), ``snapshot`` for the
    on-disk snapshot (None: none), ``codec`` for reading pushes. ``channel_options`` are extra
    gRPC channel arguments.
    """

    def __init__(
        self,
        endpoint: str | Sequence[str],
        *,
        app: str,
        namespace: str = "default",
        identifier: str | None = None,
        service_metadata: Sequence[sc.ServiceMetadata | ServiceInfo] = (),
        instance: InstanceInfo = DEFAULT_INSTANCE,
        tls: TlsConfig | None = None,
        token: str | BearerToken | None = None,
        backoff: Backoff = DEFAULT_BACKOFF,
        heartbeat: Heartbeat | None = DEFAULT_HEARTBEAT,
        snapshot: Snapshot | None = DEFAULT_SNAPSHOT,
        codec: Codec = DEFAULT_CODEC,
        channel_options: ChannelOptions = (),
    ) -> None:
        if not app:
            raise ValueError("app must be a non-empty string")
        if not namespace:
            raise ValueError("namespace must be a non-empty string")
        endpoints, scheme_tls = split_endpoints(endpoint if isinstance(endpoint, str) else list(endpoint))
        if tls is None and scheme_tls:
            tls = TlsConfig()
        if tls is not None:
            tls.channel_credentials()  # read the files now: a missing one fails here, not on every retry
        self._app = app
        self._namespace = namespace
        self._identifier = identifier or default_identifier()
        self._instance = instance
        self._services = list(service_metadata)
        self._heartbeat = heartbeat
        self._decoder = codec.decoder or default_decoder
        self._connection = Connection(
            endpoints,
            tls=tls,
            token=as_bearer_token(token),
            backoff=backoff,
            channel_options=channel_options,
        )
        self._cache = RuleCache(namespace=namespace, app=app)
        self._snapshot: SnapshotWriter | None = None
        if snapshot is not None:
            directory = Path(snapshot.directory) if snapshot.directory is not None else default_snapshot_dir()
            file = SnapshotFile(directory, namespace=namespace, app=app)
            self._snapshot = SnapshotWriter(file, self._cache, codec.parser or default_parser)
        labels = [(ENCODING_LABEL, Encoding.NATIVE.value)] if codec.encoding is Encoding.NATIVE else []
        self._registry = SubscriptionRegistry(
            identifier=self._identifier, labels=labels, snapshot=self._snapshot
        )
        self._handler = PushHandler(
            cache=self._cache, identifier=self._identifier, decoder=self._decoder, hooks=self._registry
        )

        self._state_lock = threading.RLock()
        self._state = _NEW
        self._loop = LoopThread(f"opensergo-client-{app}")
        self._stream: SubscribeStream | None = None
        self._reporter: MetadataReporter | None = None
        self._tokens: TokenClient | None = None

    # -- construction from the environment ---------------------------------------------------------
    @classmethod
    def from_env(
        cls, *, app: str | None = None, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> OpenSergoClient:
        """A client configured by ``OPENSERGO_BOOTSTRAP_CONFIG`` / ``OPENSERGO_BOOTSTRAP``.

        The app is ``app``, else the bootstrap ``"app"``, else ``$OPENSERGO_APP``. ``overrides``
        are bootstrap keys in snake_case (``endpoint``, ``namespace``, ``snapshot_dir``,
        ``heartbeat_interval``, ``tag``, ``cluster``, ``env``, ``region``, ``zone``, ``tls``,
        ``token``),
        which replace the bootstrap's values, or constructor keywords (``service_metadata=``,
        ``instance=``, ``snapshot=``, ...), which replace the whole group the bootstrap made.
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
        explicit = "tls" in overrides or "token" in overrides
        if "endpoint" in overrides:
            overrides["endpoints"] = overrides.pop("endpoint")
        bootstrap_keys = {f.name for f in dataclasses.fields(config)} - {"app", "source"}
        replaced = {key: overrides.pop(key) for key in bootstrap_keys & overrides.keys()}
        config = dataclasses.replace(config, **replaced)
        kwargs = config.client_options()
        kwargs.setdefault("namespace", env.get("OPENSERGO_NAMESPACE", "").strip() or "default")
        kwargs.update(overrides)
        try:
            return cls(config.endpoints, app=resolved_app, **kwargs)
        except (TlsError, TokenError) as exc:
            if explicit:
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
        return list(self._connection.endpoints)

    @property
    def connection(self) -> Connection:
        """The connection shared by the subscriptions, the metadata reports and the token client."""
        return self._connection

    @property
    def tls(self) -> TlsConfig | None:
        """The TLS settings of the channels; None: plaintext."""
        return self._connection.tls

    @property
    def token(self) -> BearerToken | None:
        """The access token sent on every call; None: no token."""
        return self._connection.token

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

    @property
    def service_metadata(self) -> list[sc.ServiceMetadata | ServiceInfo]:
        """What this client reports the application serves."""
        return list(self._services)

    def set_service_metadata(self, services: Sequence[sc.ServiceMetadata | ServiceInfo]) -> None:
        """Replace what the application serves (listening addresses, protocols, contracts) and
        report it at once when the client runs (e.g. once the server knows its port)."""
        self._services = list(services)

        def apply() -> None:
            if self._reporter is not None:
                self._reporter.set_services(self._services)
                self._reporter.report_soon()

        self._run_on_loop(apply)

    @property
    def instance_labels(self) -> dict[str, str]:
        """The selector labels the control plane gives this instance: tag, cluster, env, region,
        zone (when set) and the custom ``labels`` (which win)."""
        return self._instance.selector_labels()

    def subscriptions(self) -> list[Subscription]:
        return self._registry.subscriptions()

    # -- lifecycle: sync facade -----------------------------------------------------------------
    def start(self, timeout: float | None = 10.0) -> OpenSergoClient:
        """Start the core on a daemon thread with its own event loop. Idempotent."""
        with self._state_lock:
            if self._state == _RUNNING:
                return self
            self._check_not_stopped()
            self._loop.start()
            self._state = _RUNNING
        try:
            self._loop.run(self._astart_core(), timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop the stream, the reporter and the token client, close the channel and join the
        thread. Idempotent."""
        with self._state_lock:
            if self._state != _RUNNING:
                self._state = _STOPPED
                return
            if self._loop.on_loop_thread():
                hint = "call stop() from another thread" if self._loop.owns_thread else "await astop()"
                raise RuntimeError(f"stop() would block the client's own event loop; {hint}")
            self._state = _STOPPED
        try:
            self._loop.run(self._astop_core(), timeout)
        except Exception:
            _log.exception("error while stopping the OpenSergo client")
        finally:
            self._loop.stop(timeout)

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
            self._check_not_stopped()
            self._loop.adopt()
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
            owns = self._loop.owns_thread
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

    def _check_not_stopped(self) -> None:
        if self._state == _STOPPED:
            raise RuntimeError("this OpenSergoClient was stopped; create a new one")

    async def _astart_core(self) -> None:
        if self._snapshot is not None:
            self._snapshot.load()
        for sub in self._registry.subscriptions():
            sub.deliver_cached()
        if self._heartbeat is not None:
            self._reporter = MetadataReporter(
                self._connection,
                app=self._app,
                node=build_node(**_node_fields(self._instance)),
                services=self._services,
                heartbeat=self._heartbeat,
                call_metadata=self._registration_headers(),
            )
        self._stream = SubscribeStream(
            self._connection, on_open=self._on_stream_open, on_response=self._handler.handle
        )
        self._stream.start()
        if self._reporter is not None:
            self._reporter.start()
        if self._tokens is not None:
            await self._start_tokens(self._tokens)
        tls = self._connection.tls
        _log.info(
            "OpenSergo client %s started (app %s, namespace %s, endpoints %s, %s)",
            self._identifier,
            self._app,
            self._namespace,
            ",".join(self._connection.endpoints),
            tls.describe() if tls is not None else "plaintext",
        )

    async def _astop_core(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            await stream.close()
        if self._reporter is not None:
            await self._reporter.close()
        if self._tokens is not None:
            await self._stop_tokens(self._tokens)
        await self._connection.release()
        if self._snapshot is not None:
            await self._snapshot.flush()
        self._cache.notify()
        _log.info("OpenSergo client %s stopped", self._identifier)

    def _on_stream_open(self) -> list[pb.SubscribeRequest]:
        # A new stream may mean a restarted control plane or a broken stream that expired this
        # instance: register again at once rather than at the next beat.
        if self._reporter is not None:
            self._reporter.report_soon()
        return self._registry.on_stream_open()

    def _registration_headers(self) -> list[tuple[str, str]]:
        """gRPC metadata our control plane reads with ReportMetadata (the upstream messages have no room)."""
        headers = [("opensergo-namespace", self._namespace), ("opensergo-client-id", self._identifier)]
        if self._instance.labels:
            text = ",".join(f"{k}={v}" for k, v in sorted(self._instance.labels.items()))
            headers.append(("opensergo-labels", text))
        return headers

    # -- the token client (limitMode Global) -----------------------------------------------------
    def token_client(self, timeout: float = DEFAULT_TIMEOUT) -> TokenClient:
        """The client of the control plane's token service, on this client's connection; started
        and stopped with this client (made on the first call; ``timeout`` applies then).

        It runs on this client's loop thread. On an application's loop (:meth:`astart`) it gets a
        thread of its own instead, because global limits wait on it from guarded calls, which may
        run on that very loop."""
        with self._state_lock:
            if self._tokens is None:
                tokens = TokenClient(client_id=self._identifier, timeout=timeout, connection=self._connection)
                if self._state == _RUNNING:
                    if self._loop.owns_thread:
                        self._loop.call(tokens.start_here)
                    else:
                        tokens.start()
                self._tokens = tokens
            return self._tokens

    async def _start_tokens(self, tokens: TokenClient) -> None:
        if self._loop.owns_thread:
            tokens.start_here()
        else:  # on the application's loop: a thread of its own (see token_client)
            await asyncio.to_thread(tokens.start)

    async def _stop_tokens(self, tokens: TokenClient) -> None:
        if self._loop.owns_thread:
            await tokens.aclose()
        else:
            await asyncio.to_thread(tokens.stop)

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
        sub = Subscription(key, info, callback, cache=self._cache, unsubscribe=self.unsubscribe)
        self._run_on_loop(lambda: self._add_subscription(sub))
        return sub

    def unsubscribe(self, subscription: Subscription) -> None:
        """Drop ``subscription``; the last one of a key sends UNSUBSCRIBE. Idempotent."""
        if not subscription.active:
            return
        with self._state_lock:
            stopped = self._state == _STOPPED
        if stopped:
            self._registry.remove(subscription)
            return
        self._run_on_loop(lambda: self._remove_subscription(subscription))

    def _run_on_loop(self, fn: Callable[[], None]) -> None:
        with self._state_lock:
            if self._state == _NEW:
                fn()
                return
            if self._state == _STOPPED:
                raise RuntimeError("the OpenSergo client is stopped")
        self._loop.call(fn)

    def _add_subscription(self, sub: Subscription) -> None:
        first = self._registry.add(sub)
        stream = self._stream
        if self._state == _RUNNING:
            if first and stream is not None:
                stream.send(self._registry.subscribe_request(sub.key))
            sub.deliver_cached()
        self._cache.notify()

    def _remove_subscription(self, sub: Subscription) -> None:
        last = self._registry.remove(sub)
        stream = self._stream
        if last and self._state == _RUNNING and stream is not None:
            stream.send(self._registry.unsubscribe_request(sub.key))
        self._cache.notify()

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
        for key in self._registry.keys():  # noqa: SIM118 (a method, not a dict)
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
        if self._loop.on_loop_thread():
            raise RuntimeError(f"{name}() would block the client's event loop; await {name}_async() instead")

    def __repr__(self) -> str:
        return (
            f"<OpenSergoClient {self._identifier} app={self._app!r} namespace={self._namespace!r} "
            f"endpoints={list(self._connection.endpoints)} {self._state}>"
        )


def _node_fields(instance: InstanceInfo) -> dict[str, str | None]:
    return {
        "tag": instance.tag,
        "cluster": instance.cluster,
        "env": instance.env,
        "region": instance.region,
        "zone": instance.zone,
    }
