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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import uvicorn

from opensergo.controlplane.api.rest import create_app
from opensergo.controlplane.metadata import DEFAULT_HEARTBEAT_INTERVAL, MetadataRegistry, MetadataService
from opensergo.controlplane.snapshots import SnapshotCache
from opensergo.controlplane.store.base import Store
from opensergo.controlplane.store.sqlite import SqliteStore
from opensergo.controlplane.tokens import GlobalLimits, TokenService
from opensergo.controlplane.transport import TransportService
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


def control_plane_identity() -> str:
    """Upstream's form: "osg-" + host name."""
    try:
        return "osg-" + socket.gethostname()
    except OSError:
        return "osg-unknown-host"


def open_store(settings: Settings) -> Store:
    if settings.store in ("sqlite", ""):
        return SqliteStore(settings.data_dir)
    if settings.store.startswith("etcd://"):
        from opensergo.controlplane.store.etcd import EtcdStore, parse_endpoints

        return EtcdStore(parse_endpoints(settings.store))
    raise ValueError(f"unsupported store {settings.store!r} (use sqlite or etcd://host:port,...)")


class _EmbeddedUvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: the control plane owns shutdown."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ControlPlane:
    """Store + snapshot cache + gRPC (transport, metadata) + HTTP (REST), in one event loop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = open_store(settings)
        self.snapshots = SnapshotCache()
        self.transport = TransportService(self.snapshots, settings.identity or control_plane_identity())
        self.replica_id = (
            f"{settings.identity or control_plane_identity()}-{os.getpid()}-{secrets.token_hex(3)}"
        )
        self.registry = MetadataRegistry(
            self.store,
            heartbeat_interval=settings.heartbeat_interval,
            ttl=settings.instance_ttl,
            expire_on_disconnect=settings.expire_on_disconnect,
            allow_loopback=settings.allow_loopback,
        )
        self.transport.add_disconnect_listener(self.registry.client_disconnected)
        self.global_limits = GlobalLimits(self.snapshots)
        self.http_app = create_app(self.store, self.snapshots, self.transport, self.registry, self.replica_id)
        self.grpc_port = settings.grpc_port
        self.http_port = settings.http_port
        self._grpc: grpc.aio.Server | None = None
        self._http: uvicorn.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await self.store.open()
        ready = asyncio.Event()
        self._tasks.append(asyncio.create_task(self.snapshots.follow(self.store, ready)))
        await ready.wait()
        await self.registry.start()
        if self.store.supports_ttl:
            self._tasks.append(asyncio.create_task(self._publish_status()))

        self._grpc = grpc.aio.server(
            options=[
                ("grpc.keepalive_time_ms", 30_000),
                ("grpc.keepalive_timeout_ms", 10_000),
                ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
                ("grpc.keepalive_permit_without_calls", 1),
                # A burst of (re)connecting data planes must queue, not be refused: gRPC's
                # defaults reject new calls beyond 1,000 pending (3,000 hard).
                ("grpc.server.max_pending_requests", 100_000),
                ("grpc.server.max_pending_requests_hard_limit", 100_000),
            ]
        )
        self._grpc.add_generic_rpc_handlers((self.transport.rpc_handler(),))
        tk_grpc.add_TokenServiceServicer_to_server(  # type: ignore[no-untyped-call]
            TokenService(self.global_limits), self._grpc
        )
        # The generated registration function is untyped.
        sc_grpc.add_MetadataServiceServicer_to_server(  # type: ignore[no-untyped-call]
            MetadataService(self.registry), self._grpc
        )
        self.grpc_port = self._grpc.add_insecure_port(f"{self.settings.host}:{self.settings.grpc_port}")
        if self.grpc_port == 0:
            raise OSError(f"cannot listen on {self.settings.host}:{self.settings.grpc_port}")
        await self._grpc.start()

        config = uvicorn.Config(
            self.http_app,
            host=self.settings.host,
            port=self.settings.http_port,
            log_level="warning",
            lifespan="off",
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

    async def _publish_status(self, period: float = 1.0) -> None:
        """Share this replica's clients and their ACK state with the other replicas."""
        while True:
            try:
                clients = [c.to_dict() for c in self.transport.clients(include_disconnected=False)]
                await self.store.publish_status(
                    self.replica_id, {"clients": clients}, ttl=max(5.0, 5 * period)
                )
            except Exception as err:
                log.warning("cannot publish replica status: %s", err)
            await asyncio.sleep(period)

    async def stop(self) -> None:
        await self.registry.stop()
        if self._grpc is not None:
            await self._grpc.stop(grace=1.0)
        if self._http is not None:
            self._http.should_exit = True
        for task in self._tasks:
            if task is not self._tasks[-1] or self._http is None:
                task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.store.close()

    async def run_forever(self) -> None:
        await self.start()
        # Tens of thousands of long-lived stream objects make CPython's default GC thresholds
        # rescan them constantly (17% of CPU at 5,000 streams): move what exists now out of the
        # collector's sight and collect young objects less often.
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)
        host = self.settings.host
        print(
            f"OpenSergo control plane ready: grpc={host}:{self.grpc_port} http=http://{host}:{self.http_port}"
            f" store={self.settings.store} data-dir={self.settings.data_dir}",
            flush=True,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("shutting down")
        await self.stop()
