"""The rules an xDS translation reads, remembering which groups (and versions) it read.

Every group read is a source of the built resources: when the node ACKs or NACKs them, the
answer is recorded against each source group, so Envoys appear in the same rollout view as SDKs.
"""

from __future__ import annotations

from opensergo.common.protocol import SubscriptionKey
from opensergo.controlplane.snapshots import SnapshotCache
from opensergo.spec import kinds
from opensergo.spec.base import Resource
from opensergo.spec.discovery import ServiceInstance
from opensergo.spec.traffic import CLUSTER_DOMAIN, TrafficRouter, VirtualWorkload

INSTANCE_KIND = kinds.lookup("ServiceInstance").full_kind
ROUTER_KIND = kinds.lookup("TrafficRouter").full_kind
WORKLOAD_KIND = kinds.lookup("VirtualWorkload").full_kind


def short_host(host: str, namespace: str) -> str:
    suffix = f".{namespace}.{CLUSTER_DOMAIN}"
    return host[: -len(suffix)] if host.endswith(suffix) else host


class RuleView:
    def __init__(self, cache: SnapshotCache) -> None:
        self.cache = cache
        self.sources: dict[SubscriptionKey, int] = {}

    def group(self, namespace: str, app: str, kind: str) -> tuple[Resource, ...]:
        key = SubscriptionKey(namespace, app, kind)
        snapshot = self.cache.get(key)
        self.sources[key] = snapshot.version
        return snapshot.resources

    def instances(self, namespace: str, app: str) -> list[ServiceInstance]:
        """Healthy, routable instances (weight > 0, status not unhealthy/disabled)."""
        out = []
        for item in self.group(namespace, app, INSTANCE_KIND):
            if not isinstance(item, ServiceInstance) or item.spec.weight <= 0:
                continue
            status = item.status or {}
            if status.get("healthy", True) is False or status.get("enabled", True) is False:
                continue
            out.append(item)
        return out

    def routers(self, namespace: str, service: str) -> list[TrafficRouter]:
        routers = [r for r in self.group(namespace, service, ROUTER_KIND) if isinstance(r, TrafficRouter)]
        applies = [
            r for r in routers if any(short_host(h, namespace) == service or h == "*" for h in r.spec.hosts)
        ]
        return sorted(applies, key=lambda r: r.metadata.name)

    def workload(self, namespace: str, service: str) -> VirtualWorkload | None:
        found = sorted(
            (
                w
                for w in self.group(namespace, service, WORKLOAD_KIND)
                if isinstance(w, VirtualWorkload) and short_host(w.spec.host, namespace) == service
            ),
            key=lambda w: w.metadata.name,
        )
        return found[0] if found else None

    def services(self, namespace: str) -> list[str]:
        """Every app of the namespace that has instances or a TrafficRouter."""
        names = {
            obj.spec.app
            for obj in self.cache.objects(INSTANCE_KIND)
            if isinstance(obj, ServiceInstance) and obj.metadata.namespace == namespace
        }
        for router in self.cache.objects(ROUTER_KIND):
            if isinstance(router, TrafficRouter) and router.metadata.namespace == namespace:
                names.update(short_host(h, namespace) for h in router.spec.hosts if h != "*")
        return sorted(names)
