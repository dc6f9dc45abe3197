"""Several processes serving one control plane's gRPC port (``--workers N``).

One Python process spends most of a gRPC call in grpc.aio itself and cannot use a second core
(docs/scaling.md). With ``--workers N`` the control plane started by the user (the primary) runs
N-1 more processes. Each binds the same gRPC port (gRPC sets ``SO_REUSEPORT``: the kernel spreads
connections over the processes) and is a replica in every other respect: it follows the store,
holds the streams and instances of the connections it accepted, and publishes its status document.
Their store is the primary's: a SQLite file opened ``shared`` (or etcd, Kubernetes). Only the
primary serves HTTP (REST, the dashboard) and compacts the store.

Each process also listens on a port of its own, the address its status document advertises, so
that a token-service REDIRECT reaches the process owning a key. A worker relays OTLP exports
(dashboard metrics, traces, logs) to the primary, which keeps them for the dashboard, over a Unix
socket in a private directory; the primary authenticates them as if they came to it directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import shutil
import tempfile
from dataclasses import replace
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import grpc

from opensergo.controlplane.handlers import Generic, Handler

if TYPE_CHECKING:
    from opensergo.controlplane.app import Settings

log = logging.getLogger(__name__)

# The OTLP methods a worker relays to the primary (request and response as bytes).
RELAYED_METHODS = (
    "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
)
_RELAYED_HEADERS = ("authorization",)  # what the primary needs to authenticate the caller
_RELAY_TIMEOUT = 30.0
READY_TIMEOUT = 90.0
RESTART_DELAY = 1.0


class WorkerMain(Protocol):
    """A worker process's main (app.serve_worker): a module-level function, as spawn needs."""

    def __call__(self, settings: Settings, index: int, relay: str, ready: Event, log_level: int) -> None: ...


def relay_socket_dir() -> Path:
    """A directory only this user can enter, for the primary's relay socket."""
    return Path(tempfile.mkdtemp(prefix="opensergo-relay-"))


class OtlpRelay(Generic):
    """A worker's OTLP services: each export forwarded, as bytes, to the primary."""

    def __init__(self, primary: str) -> None:
        self._primary = primary
        self._channel: grpc.aio.Channel | None = None

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Handler | None:
        method = handler_call_details.method
        if method not in RELAYED_METHODS:
            return None

        async def forward(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
            if self._channel is None:
                self._channel = grpc.aio.insecure_channel(self._primary)
            metadata = tuple(
                (key, value)
                for key, value in context.invocation_metadata() or ()
                if key in _RELAYED_HEADERS and isinstance(value, str)
            )
            call = self._channel.unary_unary(method, None, None)  # bytes in, bytes out
            try:
                answer: bytes = await call(request, metadata=metadata, timeout=_RELAY_TIMEOUT)
            except grpc.aio.AioRpcError as err:
                await context.abort(err.code(), err.details() or "")
            return answer

        return grpc.unary_unary_rpc_method_handler(forward)

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close(None)


class WorkerPool:
    """The primary's workers: started once the primary listens, restarted if one dies, stopped
    with the primary."""

    def __init__(self, settings: Settings, main: WorkerMain) -> None:
        self.settings = settings
        self._main = main
        self.count = settings.workers - 1
        self._dir = relay_socket_dir()
        self.relay_address = f"unix:{self._dir / 'primary.sock'}"
        self._context = multiprocessing.get_context("spawn")  # no forked copy of a running loop
        self._processes: dict[int, BaseProcess] = {}
        self._supervisor: asyncio.Task[None] | None = None
        self._stopping = False

    def _spawn(self, index: int) -> tuple[BaseProcess, Event]:
        ready = self._context.Event()
        process = self._context.Process(
            target=self._main,
            args=(self.settings, index, self.relay_address, ready, logging.getLogger().getEffectiveLevel()),
            name=f"opensergo-worker-{index}",
            daemon=True,
        )
        process.start()
        self._processes[index] = process
        return process, ready

    async def start(self, grpc_port: int) -> None:
        """Start every worker on ``grpc_port`` (the port the primary got: it may have asked for
        port 0) and wait until each listens; OSError if one cannot."""
        self.settings = replace(self.settings, grpc_port=grpc_port)
        started = [self._spawn(index) for index in range(1, self.count + 1)]
        deadline = asyncio.get_running_loop().time() + READY_TIMEOUT
        for process, ready in started:
            while not await asyncio.to_thread(ready.wait, 0.2):
                if not process.is_alive() or asyncio.get_running_loop().time() > deadline:
                    await self.stop()
                    raise OSError(f"{process.name} did not start (exit code {process.exitcode})")
        log.info("%d worker process(es) serve gRPC port %d", self.count, self.settings.grpc_port)
        self._supervisor = asyncio.create_task(self._supervise())

    async def _supervise(self) -> None:
        while not self._stopping:
            await asyncio.sleep(RESTART_DELAY)
            for index, process in list(self._processes.items()):
                if not process.is_alive() and not self._stopping:
                    log.warning("%s ended (exit code %s); starting it again", process.name, process.exitcode)
                    self._spawn(index)

    async def stop(self, grace: float = 5.0) -> None:
        self._stopping = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        for process in self._processes.values():
            if process.is_alive():
                process.terminate()  # SIGTERM: the worker stops gracefully
        for process in self._processes.values():
            await asyncio.to_thread(process.join, grace)
            if process.is_alive():
                process.kill()
                await asyncio.to_thread(process.join, grace)
        shutil.rmtree(self._dir, ignore_errors=True)
