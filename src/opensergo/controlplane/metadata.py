"""MetadataService.ReportMetadata: registration, heartbeats and expiry of instances.

A report registers (or refreshes) one instance, keyed by (namespace, app, node identity). The
identity is the reported NodeIdentifier (host name, pid, start time); reporters that send no
node (Kitex) are keyed by their first listening address, else by their peer address. Every
report is also the heartbeat.

Each instance is persisted as a ``ServiceInstance`` object (discovery.opensergo.io/v1alpha1) in
the store, written only when the object's content changes (a heartbeat that changes nothing the
object shows, such as a service contract's method list, is no new revision), so discovery flows
through the same store -> snapshot -> stream path as rules. An instance expires, and its object
is deleted, when no report arrived within the TTL (default: three heartbeat intervals), or at
once when the subscribe stream of the same client breaks (configurable).

Our SDK sends three gRPC metadata headers with each report (headers, not proto fields, so the
upstream messages stay untouched): ``opensergo-namespace``, ``opensergo-labels``
(``k=v,k2=v2``: version and other selector labels) and ``opensergo-client-id`` (the
``identifier`` of its SubscribeConfig stream).

The namespace, the app name and every label (headers and node fields) must follow Kubernetes'
naming rules (INVALID_ARGUMENT otherwise), and the caller must be a data plane (role agent or
admin) in that namespace (PERMISSION_DENIED otherwise; see grpcauth.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict

from opensergo.common.kube_names import InvalidName, check_app, check_label, check_namespace
from opensergo.controlplane.contracts import ContractRegistry, InvalidContract, contract_hashes
from opensergo.controlplane.grpcauth import OPEN, Action, GrpcAuth
from opensergo.controlplane.limits import Limits
from opensergo.controlplane.reclaim import MemoryReclaimer
from opensergo.controlplane.store.base import Delete, NotFoundError, Put, Store, StoredObject
from opensergo.controlplane.store.groupcommit import GroupCommit
from opensergo.controlplane.undecodable import checks_undecodable, undecodable_reason
from opensergo.proto.service_contract.v1 import service_contract_pb2 as sc
from opensergo.proto.service_contract.v1 import service_contract_pb2_grpc as sc_grpc
from opensergo.spec.discovery import InstanceAddress, ServiceInstance
from opensergo.spec.errors import SpecError
from opensergo.spec.kinds import by_full_kind
from opensergo.spec.loader import parse_object

log = logging.getLogger(__name__)

DEFAULT_HEARTBEAT_INTERVAL = 30.0
NAMESPACE_HEADER = "opensergo-namespace"
LABELS_HEADER = "opensergo-labels"
CLIENT_ID_HEADER = "opensergo-client-id"
# On ServiceInstance objects: the replica that registered the instance (shared stores without TTLs).
REPLICA_LABEL = "opensergo.io/replica"
INSTANCE_KIND = by_full_kind("discovery.opensergo.io/v1alpha1/ServiceInstance")

_NAME_CHARS = re.compile(r"[^a-z0-9-]+")


class RegistrationError(ValueError):
    """A report that cannot be accepted (shown to the reporter as INVALID_ARGUMENT)."""


@dataclass
class Instance:
    namespace: str
    app: str
    node_id: str
    name: str  # the ServiceInstance object name
    report: sc.ReportMetadataRequest
    labels: dict[str, str]
    peer: str
    client_id: str
    first_seen: float
    last_seen: float
    reports: int = 1
    # The body last written to the store (set when the write is queued, cleared if it fails),
    # and that write while it is in flight: a heartbeat repeating it waits for it.
    persisted: dict[str, Any] | None = None
    pending: asyncio.Future[StoredObject | None] | None = None
    revision: int | None = None  # of the last write stored
    labels_header: str = ""  # the opensergo-labels header of the report last accepted

    def to_dict(self, now: float, ttl: float) -> dict[str, Any]:
        node = self.report.node
        return {
            "namespace": self.namespace,
            "app": self.app,
            "name": self.name,
            "nodeId": self.node_id,
            "hostName": node.identifier.host_name,
            "pid": node.identifier.pid,
            "tag": node.tag,
            "cluster": node.cluster,
            "env": node.env,
            "region": node.locality.region,
            "zone": node.locality.zone,
            "labels": dict(self.labels),
            "addresses": [a.url for a in addresses_of(self.report)],
            "peer": self.peer,
            "clientId": self.client_id,
            "firstSeen": self.first_seen,
            "lastSeen": self.last_seen,
            "reports": self.reports,
            "healthy": now - self.last_seen <= ttl,
            "serviceMetadata": [MessageToDict(m) for m in self.report.service_metadata],
        }


def node_id(request: sc.ReportMetadataRequest, peer: str) -> str:
    """A stable identity for the reporting instance."""
    if request.HasField("node") and request.node.HasField("identifier"):
        ident = request.node.identifier
        started = ident.start_timestamp.seconds * 1000 + ident.start_timestamp.nanos // 1_000_000
        return f"{ident.host_name}/{ident.pid}/{started}"
    for address in addresses_of(request):
        return f"{address.address}:{address.port}"
    return peer


def addresses_of(request: sc.ReportMetadataRequest) -> list[InstanceAddress]:
    out = []
    for metadata in request.service_metadata:
        protocol = metadata.protocols[0] if metadata.protocols else ""
        for address in metadata.listening_addresses:
            out.append(
                InstanceAddress(address=address.address, port=address.port_value or 1, protocol=protocol)
            )
    return out


def parse_labels(text: str, max_bytes: int = 4096, max_labels: int = 64) -> dict[str, str]:
    """``version=v1,zone=a`` -> {"version": "v1", "zone": "a"}; keys and values are checked."""
    if len(text) > max_bytes:
        raise RegistrationError(f"{LABELS_HEADER}: longer than {max_bytes} bytes")
    labels: dict[str, str] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise RegistrationError(f"{LABELS_HEADER}: {item[:64]!r} is not key=value")
        try:
            check_label(key.strip(), value.strip(), LABELS_HEADER)
        except InvalidName as err:
            raise RegistrationError(str(err)) from None
        labels[key.strip()] = value.strip()
        if len(labels) > max_labels:
            raise RegistrationError(f"{LABELS_HEADER}: more than {max_labels} labels")
    return labels


def report_namespace(headers: Mapping[str, str]) -> str:
    """The namespace a report is for (its header, else "default"); RegistrationError if invalid."""
    try:
        return check_namespace(headers.get(NAMESPACE_HEADER) or "default", NAMESPACE_HEADER)
    except InvalidName as err:
        raise RegistrationError(str(err)) from None


def object_name(app: str, node: str) -> str:
    """A DNS-1123 name that is unique per (app, node identity)."""
    prefix = _NAME_CHARS.sub("-", app.lower()).strip("-")[:40] or "app"
    return f"{prefix}-{hashlib.sha256(node.encode()).hexdigest()[:12]}"


class MetadataRegistry:
    """Apps and instances as reported, mirrored into the store as ServiceInstance objects."""

    def __init__(
        self,
        store: Store,
        *,
        heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL,
        ttl: float | None = None,
        expire_on_disconnect: bool = True,
        allow_loopback: bool = False,
        replica_id: str = "",
        live_replicas: Callable[[], set[str]] | None = None,
        limits: Limits | None = None,
        contracts: ContractRegistry | None = None,
        reclaimer: MemoryReclaimer | None = None,
    ) -> None:
        """``replica_id`` and ``live_replicas`` (ids of the replicas alive now) matter on a store
        that several replicas share and that has no TTLs (Kubernetes): each replica then expires
        only the instances it registered, and those of replicas that are gone."""
        self._store = store
        self.limits = limits or Limits()
        self._contracts = contracts  # stores each new service contract once (contracts.py)
        self.replica_id = replica_id
        self._live_replicas = live_replicas
        self._orphans: set[str] = set()  # object names seen once with a dead owner
        self.heartbeat_interval = heartbeat_interval
        self.ttl = ttl if ttl is not None else 3 * heartbeat_interval
        self.expire_on_disconnect = expire_on_disconnect
        self.allow_loopback = allow_loopback
        self._instances: dict[tuple[str, str, str], Instance] = {}
        self._by_client: dict[str, set[tuple[str, str, str]]] = {}  # client id -> its instances
        # Instance writes of concurrent reports share store transactions (see groupcommit.py).
        self._writes = GroupCommit(store)
        self._reclaimer = reclaimer  # told of each expiry: thousands at once free much memory
        self._expiry: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start expiring instances.

        With a TTL-capable store (etcd leases) the store expires them, and every replica may
        refresh them; otherwise this registry adopts the instances persisted by an earlier run
        (they get one TTL to report again) and expires them itself.
        """
        if self._store.supports_ttl:
            return
        now = time.time()
        for stored in await self._store.list(INSTANCE_KIND.full_kind):
            owner = stored.body.get("metadata", {}).get("labels", {}).get(REPLICA_LABEL, "")
            if self._store.shared and owner != self.replica_id:
                continue  # another replica's (or an orphan, see collect_orphans)
            try:
                obj = ServiceInstance.model_validate(stored.body)
            except ValueError as err:
                log.warning("dropping unreadable instance %s: %s", stored.name, err)
                continue
            request = _request_from(obj)
            key = (obj.namespace, obj.spec.app, obj.spec.nodeId)
            self._instances[key] = Instance(
                obj.namespace, obj.spec.app, obj.spec.nodeId, obj.name, request,
                dict(obj.spec.labels), "", "", now, now, 0,
            )  # fmt: skip
        self._expiry = asyncio.create_task(self._expire_loop())

    async def stop(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._expiry

    async def report(
        self,
        request: sc.ReportMetadataRequest,
        peer: str,
        headers: Mapping[str, str] | None = None,
        now: float | None = None,
        namespace: str | None = None,
    ) -> Instance:
        """Register or refresh the instance a report describes. ``namespace``: the report's, when
        the caller has read it from ``headers`` already."""
        headers = headers or {}
        if namespace is None:
            namespace = report_namespace(headers)
        _check_addresses(request)  # before node_id(), which may take the first address
        nid = node_id(request, peer)
        key = (namespace, request.app_name, nid)
        existing = self._instances.get(key)
        labels_header = headers.get(LABELS_HEADER, "")
        if (
            existing is not None
            and existing.persisted is not None
            and existing.labels_header == labels_header
            and existing.report == request
        ):
            labels = existing.labels  # a heartbeat repeating the report last accepted: checked then
        else:
            labels = self._checked_labels(request, labels_header)
        now = time.time() if now is None else now
        body = self._checked_body(existing, namespace, nid, request, labels)
        if self._contracts is not None and (existing is None or body is not existing.persisted):
            try:
                await self._contracts.record(namespace, request)  # the body holds the contract hashes
            except InvalidContract as err:
                raise RegistrationError(str(err)) from None
        # From here to the queued write nothing awaits: concurrent reports of one instance are
        # applied, and their writes queued, in one order.
        instance = self._instances.get(key)
        client_id = headers.get(CLIENT_ID_HEADER, "")
        if instance is None:
            instance = Instance(
                namespace, request.app_name, nid, object_name(request.app_name, nid), request,
                labels, peer, client_id, now, now, labels_header=labels_header,
            )  # fmt: skip
            self._instances[key] = instance
            self._index_client(key, "", client_id)
            log.info("instance %s of %s/%s registered from %s", nid, namespace, request.app_name, peer)
            changed = True
        else:
            changed = instance.reports == 0  # adopted from an earlier run: write it once
            instance.report = request
            instance.labels = labels
            instance.labels_header = labels_header
            instance.last_seen = now
            instance.peer = peer
            if client_id and client_id != instance.client_id:
                self._index_client(key, instance.client_id, client_id)
                instance.client_id = client_id
            instance.reports += 1
        visible_change = changed or (body is not instance.persisted and body != instance.persisted)
        if visible_change:
            write = self._persist(instance, body)
        elif instance.pending is not None and not instance.pending.done():
            write = instance.pending  # the same body is being written: answer once it is durable
        elif await self._refresh(instance):
            return instance
        else:
            write = self._persist(instance, body)  # its lease expired: write it again
        await asyncio.shield(write)
        return instance

    def _checked_labels(self, request: sc.ReportMetadataRequest, labels_header: str) -> dict[str, str]:
        """A new report's app name checked; its labels (node fields and header)."""
        if not request.app_name:
            raise RegistrationError("app_name is required")
        try:
            check_app(request.app_name, "app_name")
        except InvalidName as err:
            raise RegistrationError(str(err)) from None
        return _node_labels(request.node) | parse_labels(
            labels_header, self.limits.report_labels_bytes, self.limits.report_labels
        )

    def _checked_body(
        self,
        existing: Instance | None,
        namespace: str,
        nid: str,
        request: sc.ReportMetadataRequest,
        labels: dict[str, str],
    ) -> dict[str, Any]:
        """The ServiceInstance body of a report; RegistrationError when it cannot be stored."""
        if (
            existing is not None
            and existing.persisted is not None
            and existing.report == request
            and existing.labels == labels
        ):
            # A heartbeat repeating the report last accepted: nothing to check, build or write.
            return existing.persisted
        addresses = addresses_of(request)
        if not self.allow_loopback:
            bad = [a.url for a in addresses if a.is_loopback_or_unspecified]
            if bad:
                raise RegistrationError(
                    f"listening address {', '.join(bad)} is not reachable by other hosts; advertise"
                    " a routable address (or start the control plane with --allow-loopback)"
                )
        name = existing.name if existing is not None else object_name(request.app_name, nid)
        body = self._body_of(namespace, request.app_name, nid, name, request, labels, addresses)
        if existing is None or body != existing.persisted:
            _check_instance(body)  # what is stored must be a valid object
        return body

    def _index_client(self, key: tuple[str, str, str], old: str, new: str) -> None:
        if old:
            keys = self._by_client.get(old)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_client[old]
        if new:
            self._by_client.setdefault(new, set()).add(key)

    async def _refresh(self, instance: Instance) -> bool:
        """Extend a TTL-store lease; False when the object is gone and must be written again."""
        if not self._store.supports_ttl:
            return True
        return await self._store.refresh(INSTANCE_KIND.full_kind, instance.namespace, instance.name)

    def _body_of(
        self,
        namespace: str,
        app: str,
        nid: str,
        name: str,
        report: sc.ReportMetadataRequest,
        labels: dict[str, str],
        addresses: list[InstanceAddress],
    ) -> dict[str, Any]:
        """The ServiceInstance object of an instance: everything a user sees of it."""
        services = sorted({s.name for m in report.service_metadata for s in m.service_contract.services})
        ident = report.node.identifier
        body = {
            "apiVersion": INSTANCE_KIND.api_version,
            "kind": INSTANCE_KIND.kind,
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {
                    "app": app,
                    **({REPLICA_LABEL: self.replica_id} if self.replica_id else {}),
                },
            },
            "spec": {
                "app": app,
                "nodeId": nid,
                "hostName": ident.host_name,
                "pid": ident.pid,
                "addresses": [a.model_dump() for a in addresses],
                "labels": labels,
                "services": services,
                "contracts": contract_hashes(report),
            },
        }
        return body

    def _persist(self, instance: Instance, body: dict[str, Any]) -> asyncio.Future[StoredObject | None]:
        """Queue the write of ``body``; the returned future completes once it is durable."""
        ttl = self.ttl if self._store.supports_ttl else None
        write = self._writes.submit(
            Put(INSTANCE_KIND.full_kind, instance.namespace, instance.name, body, ttl)
        )
        instance.persisted = body
        instance.pending = write

        def settled(done: asyncio.Future[StoredObject | None]) -> None:
            if (done.cancelled() or done.exception() is not None) and instance.persisted is body:
                instance.persisted = None  # not stored: the next report writes it again
            elif not done.cancelled() and done.exception() is None and (stored := done.result()):
                instance.revision = stored.revision

        write.add_done_callback(settled)
        return write

    async def expire(self, key: tuple[str, str, str], reason: str) -> None:
        instance = self._instances.pop(key, None)
        if instance is None:
            return
        self._index_client(key, instance.client_id, "")
        if self._reclaimer is not None:
            self._reclaimer.released()
        log.info(
            "instance %s of %s/%s expired: %s", instance.node_id, instance.namespace, instance.app, reason
        )
        # On a shared store the instance may have moved to another replica (its client connected
        # there again), which wrote it since: that write is not this replica's to delete.
        revision = instance.revision if self._store.shared else None
        with contextlib.suppress(NotFoundError):
            await self._writes.delete(
                Delete(INSTANCE_KIND.full_kind, instance.namespace, instance.name, revision)
            )

    async def client_disconnected(self, client_id: str) -> None:
        """The subscribe stream of ``client_id`` ended: expire its instances now (if configured)."""
        if not self.expire_on_disconnect or not client_id:
            return
        keys = sorted(self._by_client.get(client_id, ()))
        await asyncio.gather(*(self.expire(key, "its subscribe stream ended") for key in keys))

    async def expire_stale(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        stale = [(k, i) for k, i in self._instances.items() if now - i.last_seen > self.ttl]
        # Concurrently: their deletions share store transactions.
        await asyncio.gather(
            *(
                self.expire(key, f"no heartbeat for {now - i.last_seen:.1f}s (TTL {self.ttl:g}s)")
                for key, i in stale
            )
        )

    async def collect_orphans(self) -> int:
        """Shared store without TTLs: delete instances whose registering replica is gone (seen so
        twice in a row, so that a replica that has not published its status yet keeps its own).
        An instance that moved to a live replica was registered again there with its label."""
        if self._live_replicas is None or self._store.supports_ttl or not self._store.shared:
            return 0
        alive = self._live_replicas() | {self.replica_id}
        if alive == {self.replica_id}:
            return 0  # no view of the other replicas yet
        mine = {i.name for i in self._instances.values()}
        orphans = set()
        for stored in await self._store.list(INSTANCE_KIND.full_kind):
            owner = stored.body.get("metadata", {}).get("labels", {}).get(REPLICA_LABEL, "")
            if stored.name not in mine and owner not in alive:
                orphans.add(stored.name)
                if stored.name in self._orphans:
                    log.info("instance %s expired: replica %r that registered it is gone", stored.name, owner)
                    with contextlib.suppress(NotFoundError):
                        await self._writes.delete(
                            Delete(INSTANCE_KIND.full_kind, stored.namespace, stored.name)
                        )
        deleted = len(orphans & self._orphans)
        self._orphans = orphans - self._orphans
        return deleted

    async def _expire_loop(self) -> None:
        period = max(0.05, min(1.0, self.ttl / 4))
        orphans_every = max(1, round(self.ttl / period))
        rounds = 0
        while True:
            await asyncio.sleep(period)
            rounds += 1
            try:
                await self.expire_stale()
                if rounds % orphans_every == 0:
                    await self.collect_orphans()
            except Exception:
                log.exception("instance expiry failed")

    def instances(self, app: str | None = None, namespace: str | None = None) -> list[Instance]:
        return [
            i
            for _, i in sorted(self._instances.items())
            if (app is None or i.app == app) and (namespace is None or i.namespace == namespace)
        ]

    def apps(self, now: float | None = None) -> list[dict[str, Any]]:
        now = time.time() if now is None else now
        by_app: dict[tuple[str, str], list[Instance]] = {}
        for instance in self.instances():
            by_app.setdefault((instance.namespace, instance.app), []).append(instance)
        out = []
        for (namespace, app), members in sorted(by_app.items()):
            healthy = [m for m in members if now - m.last_seen <= self.ttl]
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
                    "namespace": namespace,
                    "app": app,
                    "instances": len(members),
                    "healthyInstances": len(healthy),
                    "lastSeen": max(m.last_seen for m in members),
                    "services": services,
                }
            )
        return out


def _check_addresses(request: sc.ReportMetadataRequest) -> None:
    """Listening addresses an instance can have; RegistrationError naming the field of a bad one."""
    for i, metadata in enumerate(request.service_metadata):
        for j, address in enumerate(metadata.listening_addresses):
            where = f"service_metadata[{i}].listening_addresses[{j}]"
            if not address.address:
                raise RegistrationError(f"{where}.address: required")
            if address.port_value > 65535:
                raise RegistrationError(f"{where}.port_value: must be at most 65535")


def _check_instance(body: dict[str, Any]) -> None:
    """A report whose ServiceInstance would be invalid is refused, naming the field."""
    try:
        parse_object(body)
    except SpecError as err:
        raise RegistrationError(f"{err.field}: {err.message}") from None


def _node_labels(node: sc.Node) -> dict[str, str]:
    labels = {"tag": node.tag, "cluster": node.cluster, "env": node.env}
    labels |= {"region": node.locality.region, "zone": node.locality.zone}
    labels = {k: v for k, v in labels.items() if v}
    for key, value in labels.items():
        try:
            check_label(key, value, f"node {key}")
        except InvalidName as err:
            raise RegistrationError(str(err)) from None
    return labels


def _request_from(obj: ServiceInstance) -> sc.ReportMetadataRequest:
    """A minimal report rebuilt from a persisted instance (the contract is not persisted)."""
    metadata = sc.ServiceMetadata()
    for address in obj.spec.addresses:
        metadata.listening_addresses.add(address=address.address, port_value=address.port)
        if address.protocol and address.protocol not in metadata.protocols:
            metadata.protocols.append(address.protocol)
    request = sc.ReportMetadataRequest(app_name=obj.spec.app, service_metadata=[metadata])
    request.node.identifier.host_name = obj.spec.hostName
    request.node.identifier.pid = obj.spec.pid
    return request


class MetadataService(sc_grpc.MetadataServiceServicer):
    def __init__(self, registry: MetadataRegistry, access: GrpcAuth = OPEN) -> None:
        self._registry = registry
        self._access = access

    @checks_undecodable  # called for every heartbeat: no wrapper coroutine around it
    async def ReportMetadata(
        self,
        request: sc.ReportMetadataRequest,
        context: grpc.aio.ServicerContext[sc.ReportMetadataRequest, sc.ReportMetadataReply],
    ) -> sc.ReportMetadataReply:
        undecodable = undecodable_reason(request)
        if undecodable is not None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, undecodable)
        headers = {k: v for k, v in (context.invocation_metadata() or ()) if isinstance(v, str)}
        try:
            namespace = report_namespace(headers)
        except RegistrationError as err:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        denial = self._access.denial(self._access.caller(), namespace, Action.REPORT)
        if denial is not None:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, denial)
        try:
            await self._registry.report(request, context.peer(), headers, namespace=namespace)
        except RegistrationError as err:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
        return sc.ReportMetadataReply()
