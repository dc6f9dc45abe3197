"""Wires the control plane together from settings. Nothing else knows about wiring."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import secrets
import signal
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.synchronize import Event
from pathlib import Path

import grpc
import uvicorn

from opensergo.common.address import routable_address
from opensergo.controlplane.api.auth import AuthConfig, is_loopback
from opensergo.controlplane.api.cookies import load_session_key
from opensergo.controlplane.api.guards import HostPolicy
from opensergo.controlplane.api.server import create_app
from opensergo.controlplane.contracts import ContractRegistry
from opensergo.controlplane.grpcauth import GrpcAuth
from opensergo.controlplane.handlers import Registrar
from opensergo.controlplane.limits import Limits
from opensergo.controlplane.metadata import DEFAULT_HEARTBEAT_INTERVAL, MetadataRegistry, MetadataService
from opensergo.controlplane.metrics import otlp
from opensergo.controlplane.metrics.history import MetricsHistory
from opensergo.controlplane.metrics.prometheus import ControlPlaneMetrics
from opensergo.controlplane.metrics.store import MetricStore
from opensergo.controlplane.replicas import ReplicaStatus
from opensergo.controlplane.rollout import RolloutStatusWriter
from opensergo.controlplane.snapshots import SnapshotCache
from opensergo.controlplane.store.base import Store
from opensergo.controlplane.store.sqlite import SqliteStore
from opensergo.controlplane.tls import load_server_tls
from opensergo.controlplane.tokens import GlobalLimits, TokenService
from opensergo.controlplane.traces import otlp as otlp_traces
from opensergo.controlplane.traces.forward import OtlpForwarder
from opensergo.controlplane.traces.store import TraceStore
from opensergo.controlplane.transport import TransportService, peer_host
from opensergo.controlplane.undecodable import refuse_undecodable
from opensergo.controlplane.workers import OtlpRelay, WorkerPool
from opensergo.controlplane.xds import add_to_server as add_xds_to_server
from opensergo.proto.flowcontrol.v1 import token_pb2_grpc as tk_grpc
from opensergo.proto.service_contract.v1 import service_contract_pb2_grpc as sc_grpc

log = logging.getLogger(__name__)


@dataclass
class Settings:
    host: str = "127.0.0.1"
    grpc_port: int = 10246
    http_port: int = 10247
    data_dir: Path = Path(".opensergo")
    store: str = "sqlite"
    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL
    instance_ttl: float | None = None  # default: 3 heartbeat intervals
    expire_on_disconnect: bool = True
    allow_loopback: bool = False
    identity: str = ""
    # Auth of both ports: "auto" (on unless listening on loopback only), "on" or "off"; see
    # api/auth.py (HTTP) and grpcauth.py (gRPC).
    auth: str = "auto"
    auth_tokens: Path | None = None
    # Dashboard metrics: per-second series kept in memory, and the downsampled on-disk history.
    metrics_retention: int = 3600
    metrics_history_resolution: int = 60
    metrics_history_retention: int = 7 * 86400  # 0: no history
    # TLS on both ports (PEM files); with tls_client_ca the gRPC port also requires client
    # certificates signed by that CA (the HTTP port keeps its token auth).
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    # Host names the HTTP port answers to besides IP addresses, localhost and this machine's
    # names ("*.example.com": its subdomains); see api/guards.py.
    external_names: tuple[str, ...] = ()
    # Every resource bound (see limits.py and docs/security.md).
    limits: Limits = field(default_factory=Limits)
    # Traces and logs (OTLP): spans (and log records) kept in memory, and a backend to forward to.
    trace_max_spans: int = 200_000
    otlp_forward: str | None = None
    # Processes serving the gRPC port (see workers.py); more than one shares the store.
    workers: int = 1


def control_plane_identity() -> str:
    """Upstream's form: "osg-" + host name."""
    try:
        return "osg-" + socket.gethostname()
    except OSError:
        return "osg-unknown-host"


def open_store(settings: Settings) -> Store:
    if settings.store in ("sqlite", ""):
        shared = settings.workers > 1
        return SqliteStore(settings.data_dir, settings.limits.history_per_object, shared=shared)
    if settings.store.startswith("etcd://"):
        from opensergo.controlplane.store.etcd import EtcdStore, parse_endpoints

        return EtcdStore(parse_endpoints(settings.store))
    if settings.store == "kubernetes":
        from opensergo.controlplane.store.kubernetes import KubernetesStore

        return KubernetesStore()
    raise ValueError(f"unsupported store {settings.store!r} (use sqlite, etcd://host:port,... or kubernetes)")


class _EmbeddedUvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: the control plane owns shutdown."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    def abort_connections(self) -> None:
        """Drop the connections still open. An idle keep-alive HTTPS client (a browser tab) does
        not answer the TLS close, and uvicorn would wait for it for asyncio's 30 s SSL timeout."""
        for connection in list(self.server_state.connections):
            transport = getattr(connection, "transport", None)
            if transport is not None:
                transport.abort()


class ControlPlane:
    """Store + snapshot cache + gRPC (transport, metadata) + HTTP (REST), in one event loop.

    ``worker`` > 0: one of the primary's worker processes (workers.py): gRPC only, OTLP exports
    relayed to the primary at ``relay``."""

    def __init__(self, settings: Settings, *, worker: int = 0, relay: str = "") -> None:
        if settings.workers < 1:
            raise ValueError(f"workers must be at least 1, not {settings.workers}")
        self.settings = settings
        self.worker = worker
        self._relay = OtlpRelay(relay) if worker else None
        self.workers: WorkerPool | None = None
        self.tls = load_server_tls(settings.tls_cert, settings.tls_key, settings.tls_client_ca)
        self.store = open_store(settings)
        self.snapshots = SnapshotCache()
        limits = settings.limits
        self.auth = AuthConfig.from_settings(
            settings.auth,
            settings.host,
            settings.auth_tokens,
            settings.data_dir,
            session_ttl=limits.session_ttl,
            login_failures=limits.login_failures,
            login_failure_window=limits.login_failure_window,
        )
        # The same tokens and roles on the gRPC port; certificates identify callers only when
        # the port verifies them (--tls-client-ca).
        self.grpc_auth = GrpcAuth(
            self.auth, client_certificates=self.tls is not None and self.tls.client_ca is not None
        )
        self.transport = TransportService(
            self.snapshots,
            settings.identity or control_plane_identity(),
            limits,
            peer_identity=self.grpc_auth.peer_identity(peer_host),
            access=self.grpc_auth,
        )
        self.replica_id = (
            f"{settings.identity or control_plane_identity()}-{os.getpid()}-{secrets.token_hex(3)}"
        )
        self.replicas = ReplicaStatus(
            self.store, self.transport, self.replica_id, lambda: self.advertise_address
        )
        self.rollout_status = RolloutStatusWriter(self.store, self.snapshots, self.replicas)
        self.registry = MetadataRegistry(
            self.store,
            heartbeat_interval=settings.heartbeat_interval,
            ttl=settings.instance_ttl,
            expire_on_disconnect=settings.expire_on_disconnect,
            allow_loopback=settings.allow_loopback,
            replica_id=self.replica_id,
            live_replicas=self.replicas.live_ids,
            limits=limits,
            contracts=ContractRegistry(self.store),
        )
        self.transport.add_disconnect_listener(self.registry.client_disconnected)
        self.global_limits = GlobalLimits(self.snapshots)
        self.metric_store = MetricStore(settings.metrics_retention, limits=limits)
        self.trace_store = TraceStore(settings.trace_max_spans)
        # Forwarded by the primary, which receives every trace (a worker relays them to it).
        forward = settings.otlp_forward if not worker else None
        self.otlp_forwarder = OtlpForwarder(forward) if forward else None
        self.metrics_history = MetricsHistory(
            settings.data_dir / "metrics-history.db" if settings.metrics_history_retention > 0 else None,
            resolution=settings.metrics_history_resolution,
            retention=settings.metrics_history_retention,
        )
        self.prometheus = ControlPlaneMetrics(
            self.transport, self.snapshots, self.store, self.registry, self.metric_store
        )
        self.http_app = create_app(
            self.store,
            self.snapshots,
            self.transport,
            self.registry,
            self.replica_id,
            auth=self.auth,
            metric_store=self.metric_store,
            history=self.metrics_history,
            prometheus=self.prometheus,
            limits=limits,
            hosts=HostPolicy.of(settings.external_names, settings.host),
            trace_store=self.trace_store,
        )
        self.grpc_port = settings.grpc_port
        self.own_grpc_port = 0  # with workers: this process's own gRPC port (see workers.py)
        self.http_port = settings.http_port
        self._grpc: grpc.aio.Server | None = None
        self._http: _EmbeddedUvicorn | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await self.store.open()
        primary = not self.worker
        if primary:
            # The session key is the store's (shared by the replicas), cached in the data directory.
            self.auth.sessions.key = await load_session_key(self.settings.data_dir, self.store)
            self.auth.sessions.store = self.store
        ready = asyncio.Event()
        self._tasks.append(asyncio.create_task(self.snapshots.follow(self.store, ready)))
        await ready.wait()
        await self.registry.start()
        if self.store.shared:
            self._tasks.append(asyncio.create_task(self.replicas.run()))
        if self.store.status_subresource:
            self._tasks.append(asyncio.create_task(self.rollout_status.run()))
        if primary:
            self._tasks.append(asyncio.create_task(self._compact_history()))
        if self.otlp_forwarder is not None:
            await self.otlp_forwarder.start()
        self._grpc = self._grpc_server()
        self._listen()
        await self._grpc.start()
        if self.workers is not None:
            await self.workers.start(self.grpc_port)
        if self.tls is None and not is_loopback(self.settings.host):
            log.warning(
                "gRPC on %s:%d is plaintext: rules (with their secrets), metadata and access tokens"
                " travel in the clear%s; pass --tls-cert and --tls-key (and --tls-client-ca to"
                " require client certificates)",
                self.settings.host,
                self.grpc_port,
                "" if self.auth.enabled else ", and with --auth off any host can subscribe or register",
            )
        if primary:
            await self._start_http()

    def _grpc_server(self) -> grpc.aio.Server:
        """The gRPC server with every service registered, not listening yet."""
        server = grpc.aio.server(
            options=[
                ("grpc.keepalive_time_ms", 30_000),
                ("grpc.keepalive_timeout_ms", 10_000),
                ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
                ("grpc.keepalive_permit_without_calls", 1),
                # A burst of (re)connecting data planes must queue, not be refused: gRPC's
                # defaults reject new calls beyond 1,000 pending (3,000 hard).
                ("grpc.server.max_pending_requests", 100_000),
                ("grpc.server.max_pending_requests_hard_limit", 100_000),
                ("grpc.max_receive_message_length", self.settings.limits.grpc_max_message_bytes),
            ],
        )
        # Every service is registered through this: its handlers authenticate (auth on) and
        # refuse undecodable requests, wrapped once here rather than intercepted per call.
        authenticate = self.grpc_auth.handler_wrapper()
        services = Registrar(server, [*([authenticate] if authenticate else []), refuse_undecodable])
        services.add_generic_rpc_handlers((self.transport.rpc_handler(),))
        tk_grpc.add_TokenServiceServicer_to_server(  # type: ignore[no-untyped-call]
            TokenService(
                self.global_limits,
                self.replicas.token_owner if self.store.shared else None,
                self.grpc_auth,
            ),
            services,
        )
        # The generated registration function is untyped.
        sc_grpc.add_MetadataServiceServicer_to_server(  # type: ignore[no-untyped-call]
            MetadataService(self.registry, self.grpc_auth), services
        )
        if self._relay is not None:  # the primary authenticates and keeps them
            server.add_generic_rpc_handlers((self._relay,))
        else:
            otlp.add_to_server(self.metric_store, services, self.grpc_auth)
            otlp_traces.add_to_server(self.trace_store, services, self.otlp_forwarder, self.grpc_auth)
        self.xds = add_xds_to_server(
            services,
            self.snapshots,
            self.transport,
            self.global_limits,
            self.transport.identity,
            self.grpc_auth,
        )
        return server

    def _listen(self) -> None:
        """Bind the gRPC port; with workers also this process's own port, and on the primary
        the workers' relay socket."""
        assert self._grpc is not None
        server, settings = self._grpc, self.settings

        def bind(address: str) -> int:
            if self.tls is not None:
                return server.add_secure_port(address, self.tls.grpc_credentials())
            return server.add_insecure_port(address)

        self.grpc_port = bind(f"{settings.host}:{settings.grpc_port}")
        if self.grpc_port == 0:
            raise OSError(f"cannot listen on {settings.host}:{settings.grpc_port}")
        if settings.workers > 1:
            # The address other processes redirect this process's token-service clients to.
            self.own_grpc_port = bind(f"{settings.host}:0")
            if not self.worker:
                self.workers = WorkerPool(settings, serve_worker)
                server.add_insecure_port(self.workers.relay_address)

    async def _start_http(self) -> None:
        self.metrics_history.open()
        self._tasks.append(asyncio.create_task(self.metrics_history.run(self.metric_store)))
        config = uvicorn.Config(
            self.http_app,
            host=self.settings.host,
            port=self.settings.http_port,
            log_level="warning",
            lifespan="off",
            ssl_certfile=str(self.tls.cert_file) if self.tls is not None else None,
            ssl_keyfile=str(self.tls.key_file) if self.tls is not None else None,
        )
        self._http = _EmbeddedUvicorn(config)
        self._tasks.append(asyncio.create_task(self._http.serve()))
        while not self._http.started:
            if self._tasks[-1].done():
                self._tasks[-1].result()
                raise OSError(f"cannot listen on {self.settings.host}:{self.settings.http_port}")
            await asyncio.sleep(0.01)
        sockets = [s for server in self._http.servers for s in server.sockets]
        if sockets:
            self.http_port = sockets[0].getsockname()[1]

    async def _compact_history(self) -> None:
        """Keep the store's history within its retention (settings.limits.history_*)."""
        limits = self.settings.limits
        while True:
            try:
                await self.store.compact(limits.history_per_object, limits.history_retention)
            except Exception:
                log.exception("store history compaction failed")
            await asyncio.sleep(limits.history_compaction_interval)

    @property
    def advertise_address(self) -> str:
        """host:port at which other replicas' clients can reach this replica's gRPC port (this
        process's own port when several share the gRPC port)."""
        host = self.settings.host
        if host in ("0.0.0.0", "::", ""):
            host = routable_address()
        return f"{host}:{self.own_grpc_port or self.grpc_port}"

    async def stop(self) -> None:
        await self.registry.stop()
        # Streams ended by this shutdown are not departures: keep their instances registered
        # (expiring them would push empty endpoint lists to the clients still connected).
        self.registry.expire_on_disconnect = False
        if self._grpc is not None:
            await self._grpc.stop(grace=1.0)
        if self.workers is not None:
            await self.workers.stop()
        if self._relay is not None:
            await self._relay.close()
        if self._http is not None:
            self._http.should_exit = True
            if self.tls is not None:
                asyncio.get_running_loop().call_later(1.0, self._http.abort_connections)
        for task in self._tasks:
            if task is not self._tasks[-1] or self._http is None:
                task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.metrics_history.close()
        if self.otlp_forwarder is not None:
            await self.otlp_forwarder.stop()
        await self.store.close()

    async def run_forever(self, on_ready: Callable[[], None] | None = None, parent: int = 0) -> None:
        """Serve until SIGINT or SIGTERM. A worker calls ``on_ready`` once it listens, and stops
        when its primary (process ``parent``) is gone."""
        await self.start()
        # Tens of thousands of long-lived stream objects make CPython's default GC thresholds
        # rescan them constantly (17% of CPU at 5,000 streams): move what exists now out of the
        # collector's sight and collect young objects less often.
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)
        host = self.settings.host
        scheme = "https" if self.tls is not None else "http"
        if on_ready is not None:
            on_ready()
        if not self.worker:
            print(
                f"OpenSergo control plane ready: grpc={host}:{self.grpc_port}"
                f" http={scheme}://{host}:{self.http_port}"
                f" store={self.settings.store} data-dir={self.settings.data_dir}"
                f" auth={'on' if self.auth.enabled else 'off'}"
                f" tls={self.tls.mode if self.tls is not None else 'off'}"
                f" workers={self.settings.workers}",
                flush=True,
            )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        if parent:
            self._tasks.append(asyncio.create_task(_when_orphaned(parent, stop)))
        await stop.wait()
        log.info("shutting down")
        await self.stop()


async def _when_orphaned(parent: int, stop: asyncio.Event) -> None:
    """Set ``stop`` once process ``parent`` is gone (this process was re-parented)."""
    while os.getppid() == parent:
        await asyncio.sleep(1.0)
    log.warning("the primary process %d is gone: stopping", parent)
    stop.set()


def serve(plane: ControlPlane, on_ready: Callable[[], None] | None = None, parent: int = 0) -> None:
    """Run ``plane`` until it stops (see run_forever), on uvloop's event loop where it is installed:
    it costs less per gRPC call than asyncio's (docs/scaling.md)."""
    try:
        import uvloop
    except ImportError:  # Windows, or an install without it
        asyncio.run(plane.run_forever(on_ready, parent))
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(plane.run_forever(on_ready, parent))


def serve_worker(settings: Settings, index: int, relay: str, ready: Event, log_level: int) -> None:
    """A worker process's main (see workers.py): gRPC only, until SIGTERM or the primary's end."""
    logging.basicConfig(
        level=log_level, format=f"%(asctime)s %(levelname)s worker-{index} %(name)s: %(message)s"
    )
    serve(ControlPlane(settings, worker=index, relay=relay), on_ready=ready.set, parent=os.getppid())
