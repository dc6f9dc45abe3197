"""Metadata reporting: ``MetadataService.ReportMetadata`` at start and then on every heartbeat.

Failures are logged and retried at the next beat (on the next endpoint); nothing is raised into the
application. The reference control plane has no MetadataService, so an UNIMPLEMENTED answer is
logged once at INFO and then only at DEBUG.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
import grpc.aio
from google.protobuf import timestamp_pb2

from opensergo.client.connection import ChannelOptions
from opensergo.client.credentials import BearerToken
from opensergo.client.tls import TlsConfig, open_channel
from opensergo.common.address import routable_address
from opensergo.proto.service_contract.v1 import service_contract_pb2 as sc
from opensergo.proto.service_contract.v1 import service_contract_pb2_grpc as sc_grpc

__all__ = ["MetadataReporter", "ServiceInfo", "build_node", "process_start_time"]

_log = logging.getLogger("opensergo.client.reporter")

_IMPORT_TIME = time.time()
_UNSPECIFIED = ("", "0.0.0.0", "::", "[::]")


@dataclass(frozen=True)
class ServiceInfo:
    """A simple description of one service the application serves.

    ``listening_addresses`` entries are ``"host:port"`` strings or ``(host, port)`` tuples;
    ``protocols`` are names such as ``"http"`` or ``"grpc"``. An unspecified host (``""``,
    ``0.0.0.0``, ``::``) is replaced by this machine's routable address, because the spec forbids
    advertising it.
    """

    protocols: Sequence[str] = ()
    listening_addresses: Sequence[str | tuple[str, int]] = ()
    service_contract: sc.ServiceContract | None = None

    def to_proto(self) -> sc.ServiceMetadata:
        addresses = []
        for address in self.listening_addresses:
            if isinstance(address, str):
                host, sep, port = address.rpartition(":")
                if not sep or not port.isdigit():
                    raise ValueError(f"listening address {address!r} is not host:port")
                addresses.append(
                    sc.SocketAddress(address=_advertised(host.strip("[]")), port_value=int(port))
                )
            else:
                addresses.append(
                    sc.SocketAddress(address=_advertised(address[0]), port_value=int(address[1]))
                )
        message = sc.ServiceMetadata(listening_addresses=addresses, protocols=list(self.protocols))
        if self.service_contract is not None:
            message.service_contract.CopyFrom(self.service_contract)
        return message


def _advertised(host: str) -> str:
    return routable_address() if host in _UNSPECIFIED else host


def process_start_time() -> float:
    """This process's start time (Unix seconds), from /proc on Linux; else the module import time."""
    try:
        with open("/proc/self/stat", encoding="ascii") as fh:
            stat = fh.read()
        # Field 22 (starttime, clock ticks since boot) counted after the ")" closing the command name.
        start_ticks = int(stat.rsplit(")", 1)[1].split()[19])
        with open("/proc/stat", encoding="ascii") as fh:
            boot = next(int(line.split()[1]) for line in fh if line.startswith("btime "))
        return boot + start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return _IMPORT_TIME


def build_node(
    *,
    tag: str | None = None,
    cluster: str | None = None,
    env: str | None = None,
    region: str | None = None,
    zone: str | None = None,
) -> sc.Node:
    """The Node of this process: host name, pid, start time, and the optional placement fields."""
    start = timestamp_pb2.Timestamp()
    start.FromNanoseconds(int(process_start_time() * 1e9))
    node = sc.Node(
        identifier=sc.NodeIdentifier(host_name=socket.gethostname(), pid=os.getpid(), start_timestamp=start),
        tag=tag or "",
        cluster=cluster or "",
        env=env or "",
    )
    if region or zone:
        node.locality.CopyFrom(sc.Locality(region=region or "", zone=zone or ""))
    return node


class MetadataReporter:
    """Calls ReportMetadata now and then every ``interval`` seconds (only once if interval is None)."""

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        app: str,
        node: sc.Node,
        services: Sequence[sc.ServiceMetadata | ServiceInfo] = (),
        interval: float | None = 30.0,
        timeout: float = 5.0,
        channel_options: ChannelOptions = (),
        call_metadata: Sequence[tuple[str, str]] = (),
        tls: TlsConfig | None = None,
        token: BearerToken | None = None,
    ) -> None:
        if not endpoints:
            raise ValueError("at least one endpoint is required")
        self._endpoints = list(endpoints)
        self._tls = tls
        self._token = token
        self._index = 0
        self._interval = interval if interval is not None and interval > 0 else None
        self._timeout = timeout
        self._options = list(channel_options)
        self._call_metadata = tuple(call_metadata)
        self._wake: asyncio.Event | None = None
        self._channel: grpc.aio.Channel | None = None
        self._channel_endpoint: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping: asyncio.Event | None = None
        self._unimplemented_logged = False
        self.request = sc.ReportMetadataRequest(
            app_name=app,
            node=node,
            service_metadata=[s.to_proto() if isinstance(s, ServiceInfo) else s for s in services],
        )
        self.reports_ok = 0
        self.reports_failed = 0
        self.last_error: str | None = None
        self._consecutive_failures = 0

    def start(self) -> None:
        if self._task is not None:
            return
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="opensergo-report-metadata")

    async def close(self) -> None:
        if self._stopping is not None:
            self._stopping.set()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._close_channel()

    async def report_once(self) -> bool:
        """One ReportMetadata call; True on success. Never raises (except cancellation)."""
        endpoint = self._endpoints[self._index % len(self._endpoints)]
        if self._channel is None or self._channel_endpoint != endpoint:
            await self._close_channel()
            self._channel = open_channel(endpoint, self._tls, self._options, self._token)
            self._channel_endpoint = endpoint
        stub = sc_grpc.MetadataServiceStub(self._channel)  # type: ignore[no-untyped-call]
        try:
            await stub.ReportMetadata(self.request, timeout=self._timeout, metadata=self._call_metadata)
        except asyncio.CancelledError:
            raise
        except grpc.aio.AioRpcError as exc:
            self._failed(endpoint, exc.code(), exc.details() or "")
            return False
        except Exception as exc:
            self._failed(endpoint, None, f"{type(exc).__name__}: {exc}")
            return False
        if self._consecutive_failures:
            _log.info("ReportMetadata to %s succeeded again", endpoint)
        self.reports_ok += 1
        self._consecutive_failures = 0
        self.last_error = None
        return True

    def _failed(self, endpoint: str, code: grpc.StatusCode | None, details: str) -> None:
        self.reports_failed += 1
        self._consecutive_failures += 1
        self.last_error = f"{code.name}: {details}" if code is not None else details
        if code == grpc.StatusCode.UNIMPLEMENTED:
            level = logging.DEBUG if self._unimplemented_logged else logging.INFO
            self._unimplemented_logged = True
            _log.log(level, "control plane %s does not implement ReportMetadata", endpoint)
            return
        # Try the next endpoint at the next beat.
        self._index += 1
        level = logging.WARNING if self._consecutive_failures == 1 else logging.DEBUG
        _log.log(
            level, "ReportMetadata to %s failed: %s (retrying at the next beat)", endpoint, self.last_error
        )

    async def _close_channel(self) -> None:
        channel, self._channel = self._channel, None
        self._channel_endpoint = None
        if channel is not None:
            await channel.close(None)

    def report_soon(self) -> None:
        """Report now instead of at the next beat (e.g. after a reconnect). Call on the loop."""
        if self._wake is not None:
            self._wake.set()

    async def _run(self) -> None:
        assert self._stopping is not None and self._wake is not None
        while not self._stopping.is_set():
            self._wake.clear()
            await self.report_once()
            if self._interval is None:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
