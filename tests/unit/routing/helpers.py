"""Builders shared by the routing unit tests."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from opensergo.governance.routing import Instance, LaneManager, ServiceDirectory
from opensergo.spec import TrafficLane, TrafficRouter, VirtualWorkload, parse_object

SERVICE = "service-provider"

# routing-discovery-database.md §1.2 canonical example.
CANONICAL = """
apiVersion: traffic.opensergo.io/v1alpha1
kind: TrafficRouter
metadata: {name: service-provider, namespace: default, labels: {app: service-provider}}
spec:
  hosts: [service-provider]
  http:
  - match: [{headers: {tag: {exact: v2}}}]
    route:
    - destination: {host: service-provider, subset: v2, fallback: {host: service-provider, subset: v1}}
  - route:
    - destination: {host: service-provider, subset: v1}
"""


def instance(name: str, port: int = 8000, app: str = SERVICE, weight: int = 100, **labels: str) -> Instance:
    return Instance(app, name, [("10.0.0.1", port, "http")], labels, weight, name)


def router(text: str) -> TrafficRouter:
    resource = parse_object(yaml.safe_load(text))
    assert isinstance(resource, TrafficRouter)
    return resource


def simple_router(http: Sequence[Mapping[str, Any]], host: str = SERVICE, name: str = "r") -> TrafficRouter:
    body = {
        "apiVersion": "traffic.opensergo.io/v1alpha1",
        "kind": "TrafficRouter",
        "metadata": {"name": name, "labels": {"app": host}},
        "spec": {"hosts": [host], "http": list(http)},
    }
    resource = parse_object(body)
    assert isinstance(resource, TrafficRouter)
    return resource


def workload(spec: Mapping[str, Any], name: str = "vw") -> VirtualWorkload:
    body = {
        "apiVersion": "traffic.opensergo.io/v1alpha1",
        "kind": "VirtualWorkload",
        "metadata": {"name": name, "labels": {"app": spec.get("host", SERVICE)}},
        "spec": dict(spec),
    }
    resource = parse_object(body)
    assert isinstance(resource, VirtualWorkload)
    return resource


def lane(spec: Mapping[str, Any], name: str = "lane") -> TrafficLane:
    body = {
        "apiVersion": "traffic.opensergo.io/v1alpha1",
        "kind": "TrafficLane",
        "metadata": {"name": name},
        "spec": dict(spec),
    }
    resource = parse_object(body)
    assert isinstance(resource, TrafficLane)
    return resource


def directory(
    instances: Sequence[Instance] = (),
    routers: Sequence[TrafficRouter] = (),
    workloads: Sequence[VirtualWorkload] = (),
    *,
    service: str = SERVICE,
    seed: int = 7,
    local_labels: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> ServiceDirectory:
    kwargs.setdefault("lanes", LaneManager(use_otel=False))
    d = ServiceDirectory(local_labels=local_labels or {"app": "consumer"}, rng=random.Random(seed), **kwargs)
    d.update_instances(service, instances)
    d.update_routers(service, routers)
    d.update_workloads(service, workloads)
    return d


# routing-discovery-database.md §3, normalised.
GRAY_LANE_SPEC: dict[str, Any] = {
    "selector": {"app": "spring-cloud-a"},
    "rules": {
        "traffic": {"http": {"headers": [{"X-User-Id": {"exact": "12345"}}], "uri": {"exact": "/index"}}},
        "workload": {"selector": {"tag": "gray"}},
    },
    "lane": {"name": "Gray"},
    "traceIdBaggage": "x-opensergo-traffic",
}
