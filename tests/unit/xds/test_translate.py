"""Rules -> Envoy resources: outbound routes/clusters/endpoints, inbound routes and filters."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import yaml
from google.protobuf import json_format

from opensergo.common.protocol import SubscriptionKey
from opensergo.controlplane.snapshots import SnapshotCache
from opensergo.controlplane.store.base import EventType, StoredObject, WatchEvent
from opensergo.controlplane.xds.build import INBOUND, OUTBOUND, Builder, build
from opensergo.controlplane.xds.inbound import route_match
from opensergo.controlplane.xds.node import NodeProfile
from opensergo.controlplane.xds.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE, Built
from opensergo.spec import kinds

pytestmark = pytest.mark.unit

SIDECAR = NodeProfile("default", "consumer", app_port=8080, inbound_port=15006, outbound_port=15001)
PROVIDER = NodeProfile("default", "provider", app_port=8080, inbound_port=15006)


class Cache:
    def __init__(self) -> None:
        self.cache = SnapshotCache()
        self.revision = 0

    def put(self, text: str) -> None:
        for body in yaml.safe_load_all(text):
            self.revision += 1
            meta = body["metadata"]
            meta.setdefault("namespace", "default")
            kind = kinds.by_api_version_kind(body["apiVersion"], body["kind"]).full_kind
            obj = StoredObject(kind, meta["namespace"], meta["name"], body, self.revision)
            self.cache.apply(WatchEvent(EventType.ADDED, obj, self.revision))

    def delete(self, kind: str, name: str) -> None:
        self.revision += 1
        full = kinds.lookup(kind).full_kind
        obj = StoredObject(full, "default", name, {}, self.revision)
        old = next(o for o in self.cache.objects(full) if o.name == name)
        obj = StoredObject(full, "default", name, old.to_dict(), self.revision)
        self.cache.apply(WatchEvent(EventType.DELETED, obj, self.revision))

    def instance(self, name: str, app: str, port: int, **labels: str) -> None:
        self.put(
            f"""
apiVersion: discovery.opensergo.io/v1alpha1
kind: ServiceInstance
metadata: {{name: {name}, labels: {{app: {app}}}}}
spec:
  app: {app}
  nodeId: {name}
  addresses: [{{address: 10.0.0.{port % 250}, port: {port}, protocol: http}}]
  labels: {labels or {}}
"""
        )


def resource(built: Built, type_url: str, name: str) -> dict[str, Any]:
    found = built.resources[type_url][name]
    message = json_format.ParseDict({}, _message(type_url))
    found.Unpack(message)
    out: dict[str, Any] = json_format.MessageToDict(message, preserving_proto_field_name=True)
    return out


def _message(type_url: str) -> Any:
    from opensergo.controlplane.xds.resources import _MESSAGES

    return _MESSAGES[type_url]()


PROVIDER_RULES = """
apiVersion: traffic.opensergo.io/v1alpha1
kind: VirtualWorkload
metadata: {name: provider, labels: {app: provider}}
spec:
  host: provider
  trafficPolicy:
    loadBalancer: {simple: LEAST_REQUEST}
    outlierDetection:
      {consecutiveGatewayErrors: 2, interval: 1s, baseEjectionTime: 5s, maxEjectionPercent: 50}
    connectionPool: {tcp: {maxConnections: 7}, http: {http1MaxPendingRequests: 3}}
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}, trafficPolicy: {loadBalancer: {simple: RANDOM}}}
---
apiVersion: traffic.opensergo.io/v1alpha1
kind: TrafficRouter
metadata: {name: provider, labels: {app: provider}}
spec:
  hosts: [provider]
  http:
  - name: old
    match: [{uri: {prefix: /old}}]
    redirect: {uri: /new, authority: other, redirectCode: 302}
  - name: gone
    match: [{uri: {exact: /gone}}]
    directResponse: {status: 410, body: {string: gone}}
  - name: alice
    match: [{headers: {x-user: {exact: alice}}}, {queryParams: {user: {exact: alice}}}]
    route: [{destination: {host: provider, subset: v2, fallback: {host: provider, subset: v1}}}]
    timeout: 2s
    retries: {attempts: 3, perTryTimeout: 500ms, retryOn: "5xx,gateway-error,409"}
    fault:
      delay: {fixedDelay: 100ms, percentage: {value: 12.5}}
      abort: {httpStatus: 503, percentage: {value: 5}}
    mirror: {host: shadow}
    mirrorPercentage: {value: 10}
    rewrite: {uri: /v2, authority: provider-v2}
  - route:
    - {destination: {host: provider, subset: v1}, weight: 80}
    - {destination: {host: provider, subset: v2}, weight: 20}
"""


def test_outbound_routes_carry_the_resilience_fields() -> None:
    cache = Cache()
    cache.instance("p1", "provider", 9001, version="v1")
    cache.instance("p2", "provider", 9002, version="v2")
    cache.put(PROVIDER_RULES)
    built = build(cache.cache, SIDECAR)
    config = resource(built, ROUTE, OUTBOUND)
    host = next(h for h in config["virtual_hosts"] if h["name"] == "provider")
    assert host["domains"] == [
        "provider",
        "provider:*",
        "provider.default.svc.cluster.local",
        "provider.default.svc.cluster.local:*",
    ]
    routes = {r["name"]: r for r in host["routes"]}
    assert routes["old"]["redirect"] == {
        "path_redirect": "/new",
        "host_redirect": "other",
        "response_code": "FOUND",
    }
    assert routes["gone"]["direct_response"] == {"status": 410, "body": {"inline_string": "gone"}}
    # Two match blocks -> two routes with one action.
    first, second = routes["alice/0"], routes["alice/1"]
    assert first["match"]["headers"][0]["name"] == "x-user"
    assert second["match"]["query_parameters"][0]["name"] == "user"
    action = first["route"]
    assert action == second["route"]
    assert action["cluster"] == "outbound||v2|provider.default.svc.cluster.local"
    assert action["timeout"] == "2s"
    assert action["retry_policy"] == {
        "retry_on": "5xx,gateway-error,retriable-status-codes",
        "num_retries": 3,
        "per_try_timeout": "0.500s",
        "retriable_status_codes": [409],
    }
    assert action["request_mirror_policies"] == [
        {
            "cluster": "outbound|||shadow.default.svc.cluster.local",
            "runtime_fraction": {"default_value": {"numerator": 100000, "denominator": "MILLION"}},
        }
    ]
    assert action["prefix_rewrite"] == "/v2" and action["host_rewrite_literal"] == "provider-v2"
    fault = first["typed_per_filter_config"]["envoy.filters.http.fault"]
    assert fault["delay"] == {
        "fixed_delay": "0.100s",
        "percentage": {"numerator": 125000, "denominator": "MILLION"},
    }
    assert fault["abort"]["http_status"] == 503
    weighted = routes["provider[3]"]["route"]["weighted_clusters"]["clusters"]
    assert weighted == [
        {"name": "outbound||v1|provider.default.svc.cluster.local", "weight": 80},
        {"name": "outbound||v2|provider.default.svc.cluster.local", "weight": 20},
    ]
    assert routes["provider[3]"]["route"]["timeout"] == "0s"  # Envoy's 15 s default is switched off

    v2 = resource(built, CLUSTER, "outbound||v2|provider.default.svc.cluster.local")
    assert v2["lb_policy"] == "RANDOM"  # the subset's policy replaces the host's
    assert v2["outlier_detection"]["consecutive_gateway_failure"] == 2
    assert v2["outlier_detection"]["enforcing_consecutive_gateway_failure"] == 100
    assert v2["outlier_detection"]["base_ejection_time"] == "5s"
    v1 = resource(built, CLUSTER, "outbound||v1|provider.default.svc.cluster.local")
    assert v1["lb_policy"] == "LEAST_REQUEST"
    assert v1["circuit_breakers"]["thresholds"] == [{"max_connections": 7, "max_pending_requests": 3}]
    endpoints = resource(built, ENDPOINT, "outbound||v1|provider.default.svc.cluster.local")
    [locality] = endpoints["endpoints"]
    assert locality["locality"] == {"zone": "default"} and locality["load_balancing_weight"] == 1
    assert [e["endpoint"]["address"]["socket_address"]["port_value"] for e in locality["lb_endpoints"]] == [
        9001
    ]
    # The shadow host has no instance: its cluster exists with no endpoint.
    assert resource(built, ENDPOINT, "outbound|||shadow.default.svc.cluster.local") == {
        "cluster_name": "outbound|||shadow.default.svc.cluster.local"
    }
    # Every group read is a source, with its version.
    router_kind = kinds.lookup("TrafficRouter").full_kind
    assert built.sources[SubscriptionKey("default", "provider", router_kind)] == cache.revision


def test_empty_subset_goes_to_its_fallback_and_back() -> None:
    cache = Cache()
    cache.instance("p1", "provider", 9001, version="v1")
    cache.put(PROVIDER_RULES)
    routes = {
        r["name"]: r
        for r in resource(build(cache.cache, SIDECAR), ROUTE, OUTBOUND)["virtual_hosts"][-1]["routes"]
    }
    assert routes["alice/0"]["route"]["cluster"] == "outbound||v1|provider.default.svc.cluster.local"
    # No fallback on the weighted v2 destination: it keeps its share (Envoy answers 503, the
    # SDK raises NoAvailableInstance), as the SDK does.
    assert len(routes["provider[3]"]["route"]["weighted_clusters"]["clusters"]) == 2
    cache.instance("p2", "provider", 9002, version="v2")
    routes = {
        r["name"]: r
        for r in resource(build(cache.cache, SIDECAR), ROUTE, OUTBOUND)["virtual_hosts"][-1]["routes"]
    }
    assert routes["alice/0"]["route"]["cluster"] == "outbound||v2|provider.default.svc.cluster.local"


def test_lanes_get_header_routes_to_tagged_instances() -> None:
    cache = Cache()
    cache.instance("base", "provider", 9001)
    cache.instance("gray", "provider", 9002, tag="Gray")
    built = build(cache.cache, SIDECAR)
    routes = resource(built, ROUTE, OUTBOUND)["virtual_hosts"][0]["routes"]
    assert [r["name"] for r in routes] == ["default~gray", "default"]
    assert routes[0]["match"]["headers"] == [
        {"name": "x-opensergo-traffic", "string_match": {"exact": "gray", "ignore_case": True}}
    ]
    lane = resource(built, ENDPOINT, routes[0]["route"]["cluster"])
    base = resource(built, ENDPOINT, routes[1]["route"]["cluster"])
    assert ports(lane) == [9002] and ports(base) == [9001]


def ports(cla: dict[str, Any]) -> list[int]:
    return [
        e["endpoint"]["address"]["socket_address"]["port_value"] for e in cla["endpoints"][0]["lb_endpoints"]
    ]


INBOUND_RULES = """
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: RateLimitStrategy
metadata: {name: total, labels: {app: provider}}
spec: {threshold: 10, statDuration: 1s, limitMode: GlobalToLocal}
---
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: RateLimitStrategy
metadata: {name: shared, labels: {app: provider}}
spec: {threshold: 100, statDuration: 1s, limitMode: Global}
---
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: ConcurrencyLimitStrategy
metadata: {name: two, labels: {app: provider}}
spec: {maxConcurrency: 2}
---
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: CircuitBreakerStrategy
metadata: {name: errors, labels: {app: provider}}
spec:
  strategy: ErrorRequestRatio
  triggerRatio: '40%'
  statDuration: 10s
  recoveryTimeout: 5s
  minRequestAmount: 20
---
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: HttpRequestFallbackAction
metadata: {name: busy, labels: {app: provider}}
spec:
  behaviorDesc:
    responseStatusCode: 503
    responseContentBody: busy
    responseAdditionalHeaders: [{key: Retry-After, value: '1'}]
---
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: FaultToleranceRule
metadata: {name: rule, labels: {app: provider}}
spec:
  targets:
  - {targetResourceName: "GET:/users/{id}"}
  - {targetResourceName: "POST:/orders"}
  - {targetResourceName: "GET:api.example.com/x"}
  strategies: [{name: total}, {name: shared}, {name: two}, {name: errors}]
  fallbackAction: busy
"""


def test_inbound_rules_become_routes_filters_and_clusters() -> None:
    cache = Cache()
    cache.instance("p1", "provider", 9001)
    cache.instance("p2", "provider", 9002)
    cache.put(INBOUND_RULES)
    built = build(cache.cache, PROVIDER)
    assert sorted(built.resources[LISTENER]) == [INBOUND]  # no outbound port
    routes = resource(built, ROUTE, INBOUND)["virtual_hosts"][0]["routes"]
    # Exact paths first, templates after, the app's catch-all last; other names are skipped.
    assert [r["name"] for r in routes] == ["POST:/orders", "GET:/users/{id}", "app"]
    users = routes[1]
    assert users["match"]["safe_regex"]["regex"] == "/users/[^/]+"
    local = users["typed_per_filter_config"]["envoy.filters.http.local_ratelimit"]
    # GlobalToLocal: 10 per second over 2 live instances.
    assert local["token_bucket"] == {"max_tokens": 5, "tokens_per_fill": 5, "fill_interval": "1s"}
    assert local["filter_enforced"]["default_value"]["numerator"] == 100
    descriptors = users["route"]["rate_limits"][0]["actions"]
    assert [a["generic_key"]["descriptor_value"] for a in descriptors] == [
        "default",
        "provider",
        "GET:/users/{id}",
        "shared",
    ]
    assert users["route"]["cluster"].startswith("inbound|provider|concurrency-")
    cluster = resource(built, CLUSTER, users["route"]["cluster"])
    assert cluster["circuit_breakers"]["thresholds"][0]["max_requests"] == 2
    fallback = users["typed_per_filter_config"]["envoy.filters.http.custom_response"]
    policy = fallback["custom_response_matcher"]["matcher_list"]["matchers"][0]["on_match"]["action"][
        "typed_config"
    ]
    assert policy["status_code"] == 503 and policy["body"] == {"inline_string": "busy"}
    assert policy["response_headers_to_add"][0]["header"] == {"key": "Retry-After", "value": "1"}
    listener = resource(built, LISTENER, INBOUND)
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    names = [f["name"] for f in hcm["http_filters"]]
    assert names[0] == "envoy.filters.http.custom_response" and names[-1] == "envoy.filters.http.router"
    assert "envoy.filters.http.admission_control" in names
    ratelimit = next(f for f in hcm["http_filters"] if f["name"] == "envoy.filters.http.ratelimit")
    assert ratelimit["typed_config"]["timeout"] == "0.500s"  # not Envoy's failing-open 20 ms


def test_route_match_of_resource_names() -> None:
    assert route_match("GET:/a/b") == {
        "headers": [{"name": ":method", "string_match": {"exact": "GET"}}],
        "path": "/a/b",
    }
    assert route_match("GET:/users/<user_id>/x")["safe_regex"] == {"regex": "/users/[^/]+/x"}  # type: ignore[index]
    assert route_match("/helloworld.Greeter/SayHello") == {"path": "/helloworld.Greeter/SayHello"}
    assert route_match("GET:api.example.com/users") is None
    assert route_match("plain") is None


def test_builder_shares_builds_per_profile_and_revision() -> None:
    cache = Cache()
    cache.instance("p1", "provider", 9001)
    builder = Builder(cache.cache)
    first = builder.get(SIDECAR)
    assert builder.get(SIDECAR) is first and builder.builds == 1
    cache.instance("p2", "provider", 9002)
    assert builder.get(SIDECAR) is not first and builder.builds == 2
    # Another sidecar of the app, on other ports: the same translation, its own listeners.
    other = builder.get(replace(SIDECAR, inbound_port=16006, outbound_port=16001))
    assert builder.builds == 2
    mine = builder.get(SIDECAR)
    assert other.resources[ROUTE] is mine.resources[ROUTE]
    address = resource(other, LISTENER, INBOUND)["address"]["socket_address"]
    assert (address["address"], address["port_value"]) == ("0.0.0.0", 16006)
    assert resource(mine, LISTENER, OUTBOUND)["address"]["socket_address"]["port_value"] == 15001


def test_proxyless_listener_is_named_as_the_target() -> None:
    cache = Cache()
    cache.instance("p1", "provider", 9001)
    built = build(cache.cache, NodeProfile("default", "client"), ("provider",))
    listener = resource(built, LISTENER, "provider")
    hcm = listener["api_listener"]["api_listener"]
    assert hcm["rds"]["route_config_name"] == "provider"
    assert hcm["http_filters"][-1]["name"] == "envoy.filters.http.router"
    route = resource(built, ROUTE, "provider")["virtual_hosts"][0]["routes"][0]["route"]
    assert "timeout" not in route  # gRPC uses max_stream_duration
