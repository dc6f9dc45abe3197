"""The Envoy RouteConfiguration form: fallback on weighted routes travels in route metadata."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.config.route.v3 import route_pb2

from opensergo.spec import TrafficRouter
from opensergo.spec.upstream.codec import from_proto, to_proto
from opensergo.spec.upstream.traffic import CLUSTER_FALLBACK_PLUGIN, WEIGHTED_FALLBACK_METADATA

from .helpers import router

pytestmark = pytest.mark.unit

V1 = "outbound||v1|service-provider.default.svc.cluster.local"
V2 = "outbound||v2|service-provider.default.svc.cluster.local"
V3 = "outbound|8080|v3|service-provider.default.svc.cluster.local"
BACKUP = "outbound|||backup.default.svc.cluster.local"

WEIGHTED = """
apiVersion: traffic.opensergo.io/v1alpha1
kind: TrafficRouter
metadata: {name: service-provider, namespace: default, labels: {app: service-provider}}
spec:
  hosts: [service-provider]
  http:
  - match: [{headers: {x-canary: {exact: "1"}}}, {uri: {prefix: /beta}}]
    route:
    - {destination: {host: service-provider, subset: v1}, weight: 80}
    - destination: {host: service-provider, subset: v2, fallback: {host: service-provider, subset: v1}}
      weight: 15
    - destination: {host: service-provider, subset: v3, port: {number: 8080}, fallback: {host: backup}}
      weight: 5
  - route:
    - destination: {host: service-provider, subset: v2, fallback: {host: service-provider, subset: v1}}
"""


def routes(resource: TrafficRouter) -> list[Any]:
    config: Any = to_proto(resource)
    [vhost] = config.virtual_hosts
    return list(vhost.routes)


def test_weighted_route_carries_its_fallbacks_in_metadata() -> None:
    first, second, last = routes(router(WEIGHTED))
    for route in (first, second):  # both OR-ed match blocks of the weighted rule
        clusters = [(c.name, c.weight.value) for c in route.route.weighted_clusters.clusters]
        assert clusters == [(V1, 80), (V2, 15), (V3, 5)]  # unchanged for Envoy / SCA
        fields = route.metadata.filter_metadata[WEIGHTED_FALLBACK_METADATA].fields
        assert {k: v.string_value for k, v in fields.items()} == {V2: V1, V3: BACKUP}
    # A single destination keeps the upstream plugin and gets no metadata.
    assert last.route.inline_cluster_specifier_plugin.extension.name == CLUSTER_FALLBACK_PLUGIN
    assert WEIGHTED_FALLBACK_METADATA not in last.metadata.filter_metadata


def test_weighted_route_without_fallbacks_has_no_metadata() -> None:
    text = WEIGHTED.replace(", fallback: {host: service-provider, subset: v1}}", "}", 1).replace(
        ", fallback: {host: backup}}", "}"
    )
    first = routes(router(text))[0]
    assert not first.HasField("metadata")


def test_round_trip_restores_weighted_fallbacks() -> None:
    original = router(WEIGHTED)
    config = to_proto(original)
    wire = route_pb2.RouteConfiguration.FromString(config.SerializeToString())
    back = from_proto(
        TrafficRouter, wire, name="service-provider", namespace="default", app="service-provider"
    )
    weighted = back.spec.http[0].route
    assert weighted[0].destination.fallback is None
    fallback_v2 = weighted[1].destination.fallback
    fallback_v3 = weighted[2].destination.fallback
    assert fallback_v2 is not None and (fallback_v2.host, fallback_v2.subset) == ("service-provider", "v1")
    assert fallback_v3 is not None and (fallback_v3.host, fallback_v3.subset) == ("backup", None)
    assert len(back.spec.http[0].match) == 2
    assert to_proto(back) == config


def test_routing_uses_the_restored_fallbacks() -> None:
    from opensergo.governance.routing import SimpleRequest

    from .helpers import directory, instance

    back = from_proto(
        TrafficRouter,
        to_proto(router(WEIGHTED)),
        name="service-provider",
        namespace="default",
        app="service-provider",
    )
    d = directory([instance("a", version="v1")], [back])
    d.update_instances("backup", [instance("z", app="backup")])
    picks = {d.explain("service-provider", SimpleRequest("GET", "/beta")).fallback for _ in range(200)}
    assert picks == {True, False}
