"""What the control plane shows about its state: the read models behind the REST views, the
dashboard and the Kubernetes status writer.

* clients: this replica's subscribe streams and the other replicas' (from their status
  documents), with per-subscription ACK state, filtered to the namespaces a caller may view;
* instances and apps: the registry's own, and those other replicas registered (from the store);
* rollout: where each subscribed client stands with an object's version, and per group counts;
* rules: rule objects per namespace and per app, rebuilt when the snapshot revision moves.

Everything here reads; nothing writes. Callers pass whom a view is for as a :class:`Viewer`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from opensergo.common.protocol import SubscriptionKey
from opensergo.controlplane.contracts import CONTRACT_KIND
from opensergo.controlplane.metadata import INSTANCE_KIND, Instance, MetadataRegistry, addresses_of
from opensergo.controlplane.metrics.store import MetricStore
from opensergo.controlplane.snapshots import SnapshotCache
from opensergo.controlplane.store.base import Store
from opensergo.controlplane.transport import ClientStream, TransportService
from opensergo.spec import kinds
from opensergo.spec.base import Resource
from opensergo.spec.kinds import KindInfo

T = TypeVar("T")
Client = dict[str, Any]  # a ClientStream.to_dict(), plus the replica that holds the stream
Subscription = dict[str, Any]  # one item of a client's "subscriptions"
Group = tuple[str, str, str]  # (namespace, app, full kind)
SubscriptionIndex = dict[Group, list[tuple[Client, Subscription]]]

# Rules are what people write: not the instances and contracts the control plane records.
RULE_KINDS = tuple(
    k for k in kinds.all_kinds() if k.full_kind not in (INSTANCE_KIND.full_kind, CONTRACT_KIND.full_kind)
)


class Viewer(Protocol):
    """Whom a view is for (an authenticated principal, or everyone when auth is off)."""

    def can_view(self, namespace: str) -> bool: ...

    @property
    def views_every_namespace(self) -> bool: ...


# -- clients --------------------------------------------------------------------------------------


def merge_clients(
    transport: TransportService, replica_id: str, status: dict[str, dict[str, Any]]
) -> list[Client]:
    """This replica's clients (connected and recently disconnected), and the connected ones in the
    other replicas' status documents."""
    items = [dict(c.to_dict(), replica=replica_id) for c in transport.clients()]
    for other, document in status.items():
        clients = document.get("clients")
        if other != replica_id and isinstance(clients, list):
            items += [dict(c, replica=other) for c in clients if isinstance(c, dict)]
    return items


@dataclass(frozen=True)
class Page:
    """A slice of a list view, as ``/api/v1/rules`` pages: ``offset`` and ``limit`` (None: all)."""

    offset: int = 0
    limit: int | None = None

    def of(self, total: int, items: list[Any]) -> dict[str, Any]:
        """The response body: ``items`` (this page) with ``total``, ``offset`` and ``limit``."""
        return {"total": total, "offset": self.offset, "limit": self.limit, "items": items}

    def slice(self, items: list[T]) -> list[T]:
        end = None if self.limit is None else self.offset + self.limit
        return items[self.offset : end]


@dataclass(frozen=True)
class ClientFilter:
    """Which clients a view lists: connected or not, subscribed to a namespace / app, and a
    case-insensitive text found in the identifier, id, peer or a subscribed app or kind."""

    connected: bool | None = None
    namespace: str | None = None
    app: str | None = None
    q: str = ""

    def matches_stream(self, stream: ClientStream, viewer: Viewer) -> bool:
        """The same test as :meth:`matches` on a stream itself (no dict built for it)."""
        if self.connected is not None and (stream.disconnected_at is None) != self.connected:
            return False
        keys: Iterable[SubscriptionKey] = stream.subscriptions.keys()
        if not viewer.views_every_namespace:
            keys = [k for k in keys if viewer.can_view(k.namespace)]
            if not keys:
                return False
        return self._matches(
            stream.identifier, stream.id, stream.peer, [(k.namespace, k.app, k.kind) for k in keys]
        )

    def matches(self, client: Client) -> bool:
        if self.connected is not None and bool(client.get("connected")) != self.connected:
            return False
        subs = [(s["namespace"], s["app"], s["kind"]) for s in client.get("subscriptions", [])]
        return self._matches(client.get("identifier", ""), client.get("id", ""), client.get("peer", ""), subs)

    def _matches(self, identifier: str, sid: str, peer: str, subs: list[tuple[str, str, str]]) -> bool:
        if self.namespace and not any(ns == self.namespace for ns, _, _ in subs):
            return False
        if self.app and not any(app == self.app for _, app, _ in subs):
            return False
        needle = self.q.lower()
        if not needle:
            return True
        text = " ".join([identifier, sid, peer, *(f"{app} {kind}" for _, app, kind in subs)])
        return needle in text.lower()


def client_page(
    transport: TransportService,
    replica_id: str,
    status: dict[str, dict[str, Any]],
    viewer: Viewer,
    select: ClientFilter,
    page: Page,
) -> dict[str, Any]:
    """One page of :func:`merge_clients` as ``viewer`` sees it, filtered before anything is
    built: at 10,000 streams only the page's clients become dicts."""
    local = [s for s in transport.clients() if select.matches_stream(s, viewer)]
    others: list[Client] = []
    for other, document in status.items():
        clients = document.get("clients")
        if other != replica_id and isinstance(clients, list):
            others += [dict(c, replica=other) for c in clients if isinstance(c, dict)]
    others = [c for c in visible_clients(others, viewer) if select.matches(c)]
    total = len(local) + len(others)
    shown: list[ClientStream | Client] = page.slice([*local, *others])
    items = [dict(c.to_dict(), replica=replica_id) if isinstance(c, ClientStream) else c for c in shown]
    return page.of(total, visible_clients(items, viewer))


async def all_clients(store: Store, transport: TransportService, replica_id: str) -> list[Client]:
    """:func:`merge_clients` with the replicas' status as the store has it now."""
    return merge_clients(transport, replica_id, await store.read_status())


def visible_clients(items: list[Client], viewer: Viewer) -> list[Client]:
    """Clients with their subscriptions in namespaces the viewer may view."""
    if viewer.views_every_namespace:
        return items
    out = []
    for client in items:
        subs = [s for s in client.get("subscriptions", []) if viewer.can_view(s["namespace"])]
        if subs:
            out.append(dict(client, subscriptions=subs))
    return out


def app_subscriptions(clients: Iterable[Client], namespace: str, app: str) -> list[dict[str, Any]]:
    """Per kind an app's connected clients subscribe to: how many, their states, the newest
    version pushed."""
    by_kind: dict[str, dict[str, Any]] = {}
    for client in clients:
        if not client.get("connected"):
            continue
        for sub in client.get("subscriptions", []):
            if sub["namespace"] != namespace or sub["app"] != app:
                continue
            entry = by_kind.setdefault(
                sub["kind"], {"kind": sub["kind"], "clients": 0, "states": {}, "version": 0}
            )
            entry["clients"] += 1
            entry["states"][sub["state"]] = entry["states"].get(sub["state"], 0) + 1
            entry["version"] = max(entry["version"], sub.get("pushedVersion") or 0)
    return sorted(by_kind.values(), key=lambda s: str(s["kind"]))


# -- instances and apps ---------------------------------------------------------------------------


def list_instances(
    registry: MetadataRegistry,
    snapshots: SnapshotCache,
    viewer: Viewer,
    app: str | None = None,
    namespace: str | None = None,
) -> list[dict[str, Any]]:
    """Instances registered here (full detail) and through other replicas (from the store)."""
    now = time.time()
    local = {
        (i.namespace, i.name): i.to_dict(now, registry.ttl)
        for i in registry.instances(app, namespace)
        if viewer.can_view(i.namespace)
    }
    # Instances registered through other replicas are known from the shared store only.
    for obj in snapshots.objects(INSTANCE_KIND.full_kind):
        spec = obj.spec
        if (obj.namespace, obj.name) in local or (app and spec.app != app):
            continue
        if (namespace and obj.namespace != namespace) or not viewer.can_view(obj.namespace):
            continue
        local[(obj.namespace, obj.name)] = _remote_instance(obj)
    return [local[k] for k in sorted(local)]


@dataclass(frozen=True)
class InstanceFilter:
    """Which instances a view lists: by app, namespace, health, and a case-insensitive text
    found in the name, node id, host name, an address or a label value."""

    app: str | None = None
    namespace: str | None = None
    healthy: bool | None = None
    q: str = ""

    def finds(self, words: Iterable[str]) -> bool:
        """Whether ``q`` is in the words (build them only when ``q`` is set)."""
        return self.q.lower() in " ".join(words).lower()


def instance_page(
    registry: MetadataRegistry,
    snapshots: SnapshotCache,
    viewer: Viewer,
    select: InstanceFilter,
    page: Page,
) -> dict[str, Any]:
    """One page of :func:`list_instances`, filtered and sliced before the (costly) detail of
    each instance is built."""
    now = time.time()
    app, namespace = select.app, select.namespace
    found: dict[tuple[str, str], Instance | Resource] = {}
    for i in registry.instances(app, namespace):
        if not viewer.can_view(i.namespace):
            continue
        if select.healthy is not None and (now - i.last_seen <= registry.ttl) != select.healthy:
            continue
        if not select.q or select.finds(_local_words(i)):
            found[(i.namespace, i.name)] = i
    # Instances registered through other replicas (a shared store) are in the snapshot cache only;
    # the keys come first, so that the ones already found cost no model access.
    for obj_namespace, name, obj in snapshots.named(INSTANCE_KIND.full_kind):
        if (obj_namespace, name) in found or select.healthy is False:
            continue
        if (namespace and obj_namespace != namespace) or not viewer.can_view(obj_namespace):
            continue
        spec = obj.spec
        if app and spec.app != app:
            continue
        if not select.q or select.finds(_remote_words(obj)):
            found[(obj_namespace, name)] = obj
    shown = page.slice([found[k] for k in sorted(found)])
    items = [i.to_dict(now, registry.ttl) if isinstance(i, Instance) else _remote_instance(i) for i in shown]
    return page.of(len(found), items)


def _local_words(i: Instance) -> list[str]:
    words = [i.name, i.node_id, i.report.node.identifier.host_name, *i.labels.values()]
    return words + [a.url for a in addresses_of(i.report)]


def _remote_words(obj: Any) -> list[str]:
    spec = obj.spec
    return [obj.name, spec.nodeId, spec.hostName, *spec.labels.values(), *(a.url for a in spec.addresses)]


def _remote_instance(obj: Any) -> dict[str, Any]:
    """An instance registered through another replica, as the shared store has it."""
    spec = obj.spec
    return {
        "namespace": obj.namespace,
        "app": spec.app,
        "name": obj.name,
        "nodeId": spec.nodeId,
        "hostName": spec.hostName,
        "pid": spec.pid,
        "labels": dict(spec.labels),
        "addresses": [a.url for a in spec.addresses],
        "lastSeen": None,
        "healthy": True,  # its lease is alive, or it would be gone
    }


def list_apps(
    registry: MetadataRegistry, metric_store: MetricStore | None, viewer: Viewer
) -> list[dict[str, Any]]:
    """Apps with instances registered through this replica, with their language and framework as
    the instances' labels, else their metric exports, describe them."""
    described = metric_store.app_info() if metric_store is not None else {}
    labelled = _app_labels(registry.instances())
    items = []
    for item in registry.apps():
        if not viewer.can_view(item["namespace"]):
            continue
        app_key = (item["namespace"], item["app"])
        info = described.get(app_key, {})
        extra = labelled.get(app_key, {})
        item["language"] = extra.get("language") or info.get("language", "")
        item["framework"] = extra.get("framework") or info.get("framework", "")
        items.append(item)
    return items


def _app_labels(instances: Iterable[Instance]) -> dict[tuple[str, str], dict[str, str]]:
    """(namespace, app) -> the first language and framework labels its instances carry."""
    labels: dict[tuple[str, str], dict[str, str]] = {}
    for i in instances:
        entry = labels.setdefault((i.namespace, i.app), {})
        for key in ("language", "framework"):
            if i.labels.get(key) and not entry.get(key):
                entry[key] = i.labels[key]
    return labels


def app_contracts(instances: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(services, types) the instances' reported service contracts declare, services with the
    number of instances serving each."""
    services: dict[str, dict[str, Any]] = {}
    types: dict[str, dict[str, Any]] = {}
    for inst in instances:
        for md in inst.get("serviceMetadata", []):
            contract = md.get("serviceContract") or {}
            for svc in contract.get("services", []):
                name = svc.get("name", "")
                entry = services.get(name)
                if entry is None:
                    entry = services[name] = {
                        "name": name,
                        "description": svc.get("description", ""),
                        "protocols": md.get("protocols", []),
                        "methods": svc.get("methods", []),
                        "instances": 0,
                    }
                entry["instances"] += 1
            for t in contract.get("types", []):
                types.setdefault(t.get("name", ""), t)
    return sorted(services.values(), key=lambda s: str(s["name"])), [types[k] for k in sorted(types)]


# -- rollout --------------------------------------------------------------------------------------


def body_app(body: dict[str, Any]) -> str | None:
    """The app whose data planes get the object: ``labels.app``, else ``spec.selector.app``."""
    labels = (body.get("metadata") or {}).get("labels") or {}
    if isinstance(labels, dict) and labels.get("app"):
        return str(labels["app"])
    selector = (body.get("spec") or {}).get("selector") if isinstance(body.get("spec"), dict) else None
    if isinstance(selector, dict) and selector.get("app"):
        return str(selector["app"])
    return None


def index_subscriptions(clients: Iterable[Client]) -> SubscriptionIndex:
    """(namespace, app, kind) -> [(client, subscription)] over connected clients."""
    out: SubscriptionIndex = {}
    for client in clients:
        if not client.get("connected", True):
            continue
        for sub in client.get("subscriptions", []):
            out.setdefault((sub["namespace"], sub["app"], sub["kind"]), []).append((client, sub))
    return out


def client_state(sub: Subscription, version: int) -> tuple[str, str]:
    """Where one subscription stands with a rule version: (state, message).

    ``acked``: the client ACKed a group version that contains this rule version;
    ``nacked``: it NACKed one (message given); ``rejected``: it answered with an error code;
    ``failed``: the control plane could not encode it (message given); ``pending``: no answer
    for it yet.
    """
    acked = sub.get("ackedVersion")
    if acked is not None and acked >= version:
        return "acked", ""
    for nack in reversed(sub.get("nacks") or []):
        if nack.get("version", 0) >= version:
            return "nacked", str(nack.get("message", ""))
    pushed = sub.get("pushedVersion")
    if sub.get("state") in ("rejected", "outdated", "failed") and pushed is not None and pushed >= version:
        return str(sub["state"]), str(sub.get("message", ""))
    return "pending", ""


_STATE_ORDER = {"nacked": 0, "failed": 0, "rejected": 1, "pending": 2}


def rollout(
    namespace: str, app: str | None, kind: str, version: int, index: SubscriptionIndex
) -> dict[str, Any]:
    """Which subscribed clients ACKed, NACKed (with the message) or have yet to answer ``version``."""
    # "failed" (the control plane could not encode the version) appears only when it happens.
    summary = {"acked": 0, "nacked": 0, "pending": 0, "rejected": 0, "outdated": 0}
    clients = []
    if app:
        for client, sub in index.get((namespace, app, kind), []):
            state, message = client_state(sub, version)
            summary[state] = summary.get(state, 0) + 1
            clients.append(
                {
                    "id": client.get("id"),
                    "identifier": client.get("identifier"),
                    "peer": client.get("peer"),
                    "replica": client.get("replica", ""),
                    "state": state,
                    "message": message,
                    "ackedVersion": sub.get("ackedVersion"),
                    "pushedVersion": sub.get("pushedVersion"),
                    "ackedAt": sub.get("ackedAt"),
                    "pushedAt": sub.get("pushedAt"),
                    "nacks": sub.get("nacks") or [],
                }
            )
    clients.sort(key=lambda c: (_STATE_ORDER.get(c["state"], 3), c["identifier"] or ""))
    return {"app": app, "version": version, "summary": summary, "clients": clients}


# A subscription's rollout state (client_state) -> the count it adds to in the status subresource.
_STATUS_COUNT = {
    "acked": "acked",
    "nacked": "nacked",
    "rejected": "nacked",
    "failed": "nacked",
    "pending": "pending",
    "outdated": "pending",
}


def rollout_counts(clients: Iterable[Client], snapshots: SnapshotCache) -> dict[Group, dict[str, int]]:
    """Per group: the connected clients that ACKed / NACKed / have not yet answered the group's
    current version (the counts of the Kubernetes status subresource)."""
    out: dict[Group, dict[str, int]] = {}
    for group, pairs in index_subscriptions(clients).items():
        version = snapshots.get(SubscriptionKey(*group)).version
        counts = out[group] = {"acked": 0, "nacked": 0, "pending": 0}
        for _, sub in pairs:
            counts[_STATUS_COUNT[client_state(sub, version)[0]]] += 1
    return out


# -- rules ----------------------------------------------------------------------------------------


def kind_dict(kind: KindInfo) -> dict[str, Any]:
    """A kind as the dashboard's JSON views name it."""
    return {
        "group": kind.group,
        "version": kind.version,
        "kind": kind.kind,
        "plural": kind.plural,
        "fullName": kind.full_kind,
    }


class RuleIndex:
    """Rule objects per namespace (counts) and per (namespace, app) (references), from the
    snapshot cache; rebuilt only when its revision moved."""

    def __init__(self, snapshots: SnapshotCache) -> None:
        self._snapshots = snapshots
        self._revision = -1
        self._per_namespace: dict[str, int] = {}
        self._per_app: dict[tuple[str, str], list[dict[str, Any]]] = {}

    def _refresh(self) -> None:
        revision = self._snapshots.revision
        if revision == self._revision:
            return
        per_namespace: dict[str, int] = {}
        per_app: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for kind in RULE_KINDS:
            for obj in self._snapshots.objects(kind.full_kind):
                per_namespace[obj.namespace] = per_namespace.get(obj.namespace, 0) + 1
                if obj.app:
                    per_app.setdefault((obj.namespace, obj.app), []).append(
                        {
                            **kind_dict(kind),
                            "namespace": obj.namespace,
                            "name": obj.name,
                            "resourceVersion": obj.metadata.resourceVersion,
                        }
                    )
        self._revision, self._per_namespace, self._per_app = revision, per_namespace, per_app

    def per_namespace(self) -> dict[str, int]:
        self._refresh()
        return self._per_namespace

    def of_app(self, namespace: str, app: str) -> list[dict[str, Any]]:
        self._refresh()
        return list(self._per_app.get((namespace, app), []))


def visible_namespaces(
    registry: MetadataRegistry, snapshots: SnapshotCache, rules: RuleIndex, viewer: Viewer
) -> list[str]:
    """Namespaces anything lives in (instances, subscribed groups, rules), that the viewer may view."""
    found = {"default"}
    found.update(i.namespace for i in registry.instances())
    found.update(s.key.namespace for s in snapshots.groups())
    found.update(rules.per_namespace())
    return sorted(ns for ns in found if viewer.can_view(ns))
