"""``--otlp-forward``: pass the OTLP trace and log exports on to a real backend (Jaeger, Tempo,
an OpenTelemetry Collector) for retention, as received.

The target is ``host:port`` or ``http://host:port`` (plaintext gRPC) or ``https://host:port``
(TLS, verified against the system roots or ``ca_file``). Exports are queued (at most
``queue_size``; beyond it the oldest is dropped and counted) and sent by one task in order, each
with a timeout; a failed send is logged and dropped, never retried in a loop, so a slow or
unreachable backend costs the control plane a bounded amount of memory and never slows the data
planes' exports.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from pathlib import Path

import grpc
import grpc.aio
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as logs_pb
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc as logs_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as trace_pb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as trace_grpc

log = logging.getLogger(__name__)

__all__ = ["OtlpForwarder", "parse_target"]


def parse_target(target: str) -> tuple[str, bool]:
    """``(host:port, tls)`` from ``host:port``, ``http://host:port`` or ``https://host:port``."""
    text = target.strip().rstrip("/")
    tls = text.startswith("https://")
    for prefix in ("https://", "http://", "grpc://"):
        text = text.removeprefix(prefix)
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(
            f"--otlp-forward {target!r}: expected host:port, http://host:port or https://host:port"
        )
    return text, tls


class OtlpForwarder:
    """Sends queued exports to ``target``; :meth:`start` and :meth:`stop` on the event loop."""

    def __init__(
        self, target: str, *, queue_size: int = 1000, timeout: float = 10.0, ca_file: Path | None = None
    ) -> None:
        self.address, self.tls = parse_target(target)
        self.timeout = timeout
        self._ca_file = ca_file
        self._queue: deque[Message] = deque(maxlen=queue_size)
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._channel: grpc.aio.Channel | None = None
        self.sent = 0
        self.failed = 0
        self.dropped = 0

    def traces(self, request: trace_pb.ExportTraceServiceRequest) -> None:
        self._put(request)

    def logs(self, request: logs_pb.ExportLogsServiceRequest) -> None:
        self._put(request)

    def _put(self, request: Message) -> None:
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1  # deque(maxlen) drops the oldest
        self._queue.append(request)
        if self._wake is not None:
            self._wake.set()

    async def start(self) -> None:
        if self.tls:
            roots = self._ca_file.read_bytes() if self._ca_file is not None else None
            self._channel = grpc.aio.secure_channel(self.address, grpc.ssl_channel_credentials(roots))
        else:
            self._channel = grpc.aio.insecure_channel(self.address)
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="opensergo-otlp-forward")
        log.info(
            "forwarding OTLP traces and logs to %s (%s)", self.address, "TLS" if self.tls else "plaintext"
        )

    async def stop(self) -> None:
        if self._task is not None:
            await self.flush(timeout=2.0)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._channel is not None:
            await self._channel.close(None)
            self._channel = None

    async def flush(self, timeout: float = 5.0) -> bool:
        """Wait until the queue is empty (True) or ``timeout`` passed (False)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._queue or self._busy:
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.01)
        return True

    _busy = False

    async def _run(self) -> None:
        assert self._wake is not None and self._channel is not None
        traces = trace_grpc.TraceServiceStub(self._channel)  # type: ignore[no-untyped-call]
        logs = logs_grpc.LogsServiceStub(self._channel)  # type: ignore[no-untyped-call]
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            request = self._queue.popleft()
            self._busy = True
            try:
                if isinstance(request, trace_pb.ExportTraceServiceRequest):
                    await traces.Export(request, timeout=self.timeout)
                else:
                    await logs.Export(request, timeout=self.timeout)
                self.sent += 1
            except grpc.aio.AioRpcError as err:
                self.failed += 1
                level = logging.WARNING if self.failed == 1 or self.failed % 100 == 0 else logging.DEBUG
                log.log(level, "OTLP forward to %s failed (%d so far): %s %s", self.address, self.failed,
                        err.code().name, err.details())  # fmt: skip
            finally:
                self._busy = False
