"""MetadataService.ReportMetadata: the registry of apps and their instances.

Records are keyed by (app, node identity). The identity is the reported NodeIdentifier
(host name, pid, start time); reporters that send no node (Kitex) are keyed by their first
listening address, else by their peer address. Every report refreshes ``last_seen``; a report is
also the heartbeat.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict

from opensergo.proto.service_contract.v1 import service_contract_pb2 as sc
from opensergo.proto.service_contract.v1 import service_contract_pb2_grpc as sc_grpc

log = logging.getLogger(__name__)

DEFAULT_HEARTBEAT_INTERVAL = 30.0


@dataclass
class Instance:
    app: str
    node_id: str
    report: sc.ReportMetadataRequest
    peer: str
    first_seen: float
    last_seen: float
    reports: int = 1

    def to_dict(self, now: float, stale_after: float) -> dict[str, Any]:
        node = self.report.node
        return {
            "app": self.app,
            "nodeId": self.node_id,
            "hostName": node.identifier.host_name,
            "pid": node.identifier.pid,
            "tag": node.tag,
            "cluster": node.cluster,
            "env": node.env,
            "region": node.locality.region,
            "zone": node.locality.zone,
            "addresses": [
                f"{p}://{a.address}:{a.port_value}" if p else f"{a.address}:{a.port_value}"
                for m in self.report.service_metadata
                for a in m.listening_addresses
                for p in (list(m.protocols)[:1] or [""])
            ],
            "peer": self.peer,
            "firstSeen": self.first_seen,
            "lastSeen": self.last_seen,
            "reports": self.reports,
            "healthy": now - self.last_seen <= stale_after,
            "serviceMetadata": [
                MessageToDict(m, preserving_proto_field_name=False) for m in self.report.service_metadata
            ],
        }


def node_id(request: sc.ReportMetadataRequest, peer: str) -> str:
    """A stable identity for the reporting instance."""
    if request.HasField("node") and request.node.HasField("identifier"):
        ident = request.node.identifier
        started = ident.start_timestamp.seconds * 1000 + ident.start_timestamp.nanos // 1_000_000
        return f"{ident.host_name}/{ident.pid}/{started}"
    for metadata in request.service_metadata:
        for address in metadata.listening_addresses:
            return f"{address.address}:{address.port_value}"
    return peer


class MetadataRegistry:
    """Apps and instances as reported; in memory (instances re-report on every heartbeat)."""

    def __init__(self, heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL) -> None:
        self.heartbeat_interval = heartbeat_interval
        self._instances: dict[tuple[str, str], Instance] = {}

    @property
    def stale_after(self) -> float:
        return 3 * self.heartbeat_interval

    def report(self, request: sc.ReportMetadataRequest, peer: str, now: float | None = None) -> Instance:
        if not request.app_name:
            raise ValueError("app_name is required")
        now = time.time() if now is None else now
        key = (request.app_name, node_id(request, peer))
        instance = self._instances.get(key)
        if instance is None:
            instance = Instance(key[0], key[1], request, peer, now, now)
            self._instances[key] = instance
            log.info("instance %s of app %s registered from %s", key[1], key[0], peer)
        else:
            instance.report = request
            instance.last_seen = now
            instance.peer = peer
            instance.reports += 1
        return instance

    def instances(self, app: str | None = None) -> list[Instance]:
        return [i for (a, _), i in sorted(self._instances.items()) if app is None or a == app]

    def apps(self, now: float | None = None) -> list[dict[str, Any]]:
        now = time.time() if now is None else now
        by_app: dict[str, list[Instance]] = {}
        for instance in self.instances():
            by_app.setdefault(instance.app, []).append(instance)
        out = []
        for app, members in sorted(by_app.items()):
            healthy = [m for m in members if now - m.last_seen <= self.stale_after]
            services = sorted(
                {
                    s.name
                    for m in healthy
                    for md in m.report.service_metadata
                    for s in md.service_contract.services
                }
            )
            out.append(
                {
                    "app": app,
                    "instances": len(members),
                    "healthyInstances": len(healthy),
                    "lastSeen": max(m.last_seen for m in members),
                    "services": services,
                }
            )
        return out


class MetadataService(sc_grpc.MetadataServiceServicer):
    def __init__(self, registry: MetadataRegistry) -> None:
        self._registry = registry

    async def ReportMetadata(
        self,
        request: sc.ReportMetadataRequest,
        context: grpc.aio.ServicerContext[sc.ReportMetadataRequest, sc.ReportMetadataReply],
    ) -> sc.ReportMetadataReply:
        try:
            self._registry.report(request, context.peer())
        except ValueError as err:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        return sc.ReportMetadataReply()
