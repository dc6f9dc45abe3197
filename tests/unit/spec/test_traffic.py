from __future__ import annotations

from typing import Any

import pytest
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2

from opensergo.proto.router.v1 import route_fallback_pb2
from opensergo.spec import SpecErrors, TrafficLane, TrafficRouter, VirtualWorkload, parse_documents
from opensergo.spec.upstream.codec import from_proto, to_proto
from opensergo.spec.upstream.traffic import (
    CLUSTER_FALLBACK_PLUGIN,
    cluster_name,
    parse_cluster_name,
    service_fqdn,
)

from .conftest import SAMPLES, one

pytestmark = pytest.mark.unit

TR = "apiVersion: traffic.opensergo.io/v1alpha1\nkind: TrafficRouter\n"

# The control plane's sample (protocol.md §4.3): the spec sample with header x-mse-tag.
CP_SAMPLE = (SAMPLES / "traffic.yaml").read_text().split("\n---\n")[0].replace("tag:", "x-mse-tag:")

V1 = "outbound||v1|service-provider.default.svc.cluster.local"
V2 = "outbound||v2|service-provider.default.svc.cluster.local"


def router(text: str) -> TrafficRouter:
    resource = one(text)
    assert isinstance(resource, TrafficRouter)
    return resource


def routes_of(text: str) -> list[Any]:
    config: Any = to_proto(router(text))
    [vhost] = config.virtual_hosts
    return list(vhost.routes)


def simple(http: str, name: str = "r", namespace: str = "default") -> str:
    return f"{TR}metadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  hosts: [svc]\n  http:\n{http}"


def test_sample_to_route_configuration() -> None:
    config: Any = to_proto(router(CP_SAMPLE))
    assert isinstance(config, route_pb2.RouteConfiguration)
    assert config.name == "service-provider"
    [vhost] = config.virtual_hosts
    assert vhost.name == "service-provider"
    assert list(vhost.domains) == ["service-provider.default.svc.cluster.local"]
    first, second = vhost.routes

    # Route 1: header x-mse-tag exact v2 -> v2, falling back to v1 (inline plugin).
    assert first.match.prefix == "/"  # fixed: upstream sends no path specifier
    [header] = first.match.headers
    assert header.name == "x-mse-tag"
    assert header.WhichOneof("header_match_specifier") == "string_match"
    assert header.string_match.exact == "v2"
    assert first.route.WhichOneof("cluster_specifier") == "inline_cluster_specifier_plugin"
    plugin = first.route.inline_cluster_specifier_plugin
    assert not plugin.is_optional
    assert plugin.extension.name == CLUSTER_FALLBACK_PLUGIN
    assert plugin.extension.typed_config.type_url == (
        "type.googleapis.com/io.opensergo.proto.router.v1.ClusterFallbackConfig_ClusterConfig"
    )
    fallback = route_fallback_pb2.ClusterFallbackConfig_ClusterConfig()
    assert plugin.extension.typed_config.Unpack(fallback)
    assert (fallback.RoutingCluster, fallback.FallbackCluster) == (V2, V1)

    # Route 2: no matchers, plain cluster v1.
    assert second.match.prefix == "/"
    assert not second.match.headers and not second.match.query_parameters
    assert second.route.cluster == V1


def test_each_match_block_is_its_own_route() -> None:
    routes = routes_of(
        simple(
            """    - name: gray
      match:
        - headers: {x-a: {exact: '1'}}
        - uri: {prefix: /admin}
      route: [{destination: {host: svc, subset: v2}}]
    - route: [{destination: {host: svc, subset: v1}}]
"""
        )
    )
    assert len(routes) == 3  # two OR-ed blocks + the catch-all
    a, b, rest = routes
    assert a.route == b.route  # same action
    assert a.name == b.name == "gray"
    assert [h.name for h in a.match.headers] == ["x-a"] and a.match.prefix == "/"
    assert not b.match.headers and b.match.prefix == "/admin"
    assert rest.route.cluster == "outbound||v1|svc.default.svc.cluster.local"


@pytest.mark.parametrize(
    ("uri", "field", "value"),
    [("{exact: /index}", "path", "/index"), ("{prefix: /api}", "prefix", "/api"), ("{}", "prefix", "/")],
)
def test_uri_becomes_the_path_specifier(uri: str, field: str, value: str) -> None:
    [route] = routes_of(
        simple(f"    - match: [{{uri: {uri}}}]\n      route: [{{destination: {{host: svc}}}}]\n")
    )
    assert route.match.WhichOneof("path_specifier") == field
    assert getattr(route.match, field) == value


def test_uri_regex_and_ignore_case() -> None:
    [route] = routes_of(
        simple(
            "    - match: [{uri: {regex: '/v[0-9]+/.*'}, ignoreUriCase: true}]\n"
            "      route: [{destination: {host: svc}}]\n"
        )
    )
    assert route.match.safe_regex.regex == "/v[0-9]+/.*"
    assert route.match.HasField("case_sensitive") and route.match.case_sensitive.value is False


def test_all_matchers() -> None:
    [route] = routes_of(
        simple(
            """    - match:
        - method: {exact: GET}
          authority: {prefix: api.}
          headers: {x-b: {regex: '\\d+'}, X-A: {prefix: v}, x-present: {}}
          withoutHeaders: {x-debug: {}}
          queryParams: {name: {exact: xiaoming}, flag: {}}
      route: [{destination: {host: svc}}]
"""
        )
    )
    headers = [(h.name, h.WhichOneof("header_match_specifier"), h.invert_match) for h in route.match.headers]
    assert headers == [
        (":method", "string_match", False),
        (":authority", "string_match", False),
        ("x-a", "string_match", False),  # names lower-cased, sorted within the group
        ("x-b", "string_match", False),
        ("x-present", "present_match", False),
        ("x-debug", "present_match", True),
    ]
    by_name = {h.name: h for h in route.match.headers}
    assert by_name[":method"].string_match.exact == "GET"
    assert by_name[":authority"].string_match.prefix == "api."
    assert by_name["x-a"].string_match.prefix == "v"
    assert by_name["x-b"].string_match.safe_regex.regex == "\\d+"
    queries = [
        (q.name, q.WhichOneof("query_parameter_match_specifier")) for q in route.match.query_parameters
    ]
    assert queries == [("flag", "present_match"), ("name", "string_match")]
    assert route.match.query_parameters[1].string_match.exact == "xiaoming"


def test_output_is_deterministic() -> None:
    http = """    - match: [{headers: {z: {exact: '1'}, a: {exact: '2'}, m: {exact: '3'}}}]
      route: [{destination: {host: svc}}]
"""
    first = to_proto(router(simple(http))).SerializeToString(deterministic=True)
    reordered = http.replace("z: {exact: '1'}, a: {exact: '2'}", "a: {exact: '2'}, z: {exact: '1'}")
    assert to_proto(router(simple(reordered))).SerializeToString(deterministic=True) == first


def test_weighted_clusters() -> None:
    [route] = routes_of(
        simple(
            """    - route:
        - {destination: {host: svc, subset: v1}, weight: 90}
        - destination: {host: svc, subset: v2, port: {number: 8080}, fallback: {host: svc, subset: v1}}
          weight: 10
"""
        )
    )
    clusters = [(c.name, c.weight.value) for c in route.route.weighted_clusters.clusters]
    assert clusters == [
        ("outbound||v1|svc.default.svc.cluster.local", 90),
        ("outbound|8080|v2|svc.default.svc.cluster.local", 10),
    ]
    assert not route.route.weighted_clusters.HasField("total_weight")


def test_single_destination_with_port_and_fqdn() -> None:
    config: Any = to_proto(
        router(
            f"{TR}metadata: {{name: r, namespace: prod}}\nspec:\n  hosts: [svc, other.example.com]\n  http:\n"
            "    - route: [{destination: {host: svc, port: {number: 9000}}, weight: 30}]\n"
        )
    )
    [vhost] = config.virtual_hosts
    assert list(vhost.domains) == ["svc.prod.svc.cluster.local", "other.example.com"]
    assert vhost.routes[0].route.cluster == "outbound|9000||svc.prod.svc.cluster.local"  # weight ignored


def test_proxy_only_routes_are_skipped() -> None:
    routes = routes_of(
        simple(
            """    - match: [{uri: {prefix: /old}}]
      redirect: {uri: /new}
    - route: [{destination: {host: svc}}]
"""
        )
    )
    assert len(routes) == 1
    assert routes[0].route.cluster == "outbound|||svc.default.svc.cluster.local"


def test_cluster_names() -> None:
    assert service_fqdn("svc", "ns") == "svc.ns.svc.cluster.local"
    assert service_fqdn("svc.ns.svc.cluster.local", "other") == "svc.ns.svc.cluster.local"
    assert service_fqdn("*", "ns") == "*"
    assert cluster_name("svc", "ns", "v1", 80) == "outbound|80|v1|svc.ns.svc.cluster.local"
    dest = parse_cluster_name("outbound|80|v1|svc.ns.svc.cluster.local", "ns")
    assert (dest.host, dest.subset, dest.port and dest.port.number) == ("svc", "v1", 80)
    assert parse_cluster_name("plain-cluster", "ns").host == "plain-cluster"


def test_round_trip_through_route_configuration() -> None:
    text = simple(
        """    - match:
        - headers: {x-a: {exact: '1'}}
          method: {exact: GET}
          queryParams: {q: {prefix: p}}
        - uri: {regex: '/x.*'}
          ignoreUriCase: true
          withoutHeaders: {x-b: {}}
      route: [{destination: {host: svc, subset: v2, fallback: {host: svc, subset: v1}}}]
    - route:
        - {destination: {host: svc, subset: v1}, weight: 80}
        - {destination: {host: svc, subset: v2, port: {number: 81}}, weight: 20}
"""
    )
    original = router(text)
    back = from_proto(TrafficRouter, to_proto(original), name="r", namespace="default", app="svc")
    assert back.spec == original.spec
    assert to_proto(back) == to_proto(original)


def test_from_go_control_plane_route_configuration() -> None:
    # Upstream form: no path specifier, deprecated exact_match, query matcher without a name.
    route = rc.Route(
        match=rc.RouteMatch(
            headers=[rc.HeaderMatcher(name="x-mse-tag", exact_match="v2")],
            query_parameters=[rc.QueryParameterMatcher()],
        ),
        route=rc.RouteAction(cluster=V2),
    )
    config = route_pb2.RouteConfiguration(
        name="service-provider",
        virtual_hosts=[
            rc.VirtualHost(
                name="service-provider",
                domains=["service-provider.default.svc.cluster.local"],
                routes=[route, rc.Route(match=rc.RouteMatch(), route=rc.RouteAction(cluster=V1))],
            )
        ],
    )
    tr = from_proto(TrafficRouter, config, name="x", namespace="default", app="service-provider")
    assert tr.name == "service-provider"
    assert tr.spec.hosts == ["service-provider"]
    first, second = tr.spec.http
    assert first.match[0].headers["x-mse-tag"].exact == "v2"
    assert first.route[0].destination.subset == "v2"
    assert second.match == [] and second.route[0].destination.subset == "v1"


@pytest.mark.parametrize(
    ("http", "field"),
    [
        ("    - route: []\n", "spec.http[0].route"),
        ("    - route: [{destination: {host: a}}, {destination: {host: b}}]\n", "spec.http[0].route"),
        ("    - route: [{destination: {host: a}, weight: -1}]\n", "spec.http[0].route[0].weight"),
        ("    - route: [{destination: {host: ''}}]\n", "spec.http[0].route[0].destination.host"),
        (
            "    - match: [{uri: {exact: /a, prefix: /b}}]\n      route: [{destination: {host: a}}]\n",
            "spec.http[0].match[0].uri",
        ),
        (
            "    - match: [{headers: {x: {regex: '('}}}]\n      route: [{destination: {host: a}}]\n",
            "spec.http[0].match[0].headers.x.regex",
        ),
        (
            "    - match: [{headerz: {}}]\n      route: [{destination: {host: a}}]\n",
            "spec.http[0].match[0].headerz",
        ),
    ],
)
def test_router_validation(http: str, field: str) -> None:
    with pytest.raises(SpecErrors) as info:
        parse_documents(simple(http), source="tr.yaml")
    [error] = info.value.errors
    assert (error.source, error.document, error.field) == ("tr.yaml", 0, field)


def test_router_needs_hosts() -> None:
    with pytest.raises(SpecErrors) as info:
        parse_documents(f"{TR}metadata: {{name: r}}\nspec: {{http: []}}")
    assert info.value.errors[0].field == "spec.hosts"


def test_full_virtual_service_body_parses() -> None:
    tr = router(
        simple(
            """    - name: everything
      match:
        - name: m
          uri: {prefix: /}
          scheme: {exact: https}
          port: 8080
          sourceLabels: {app: web}
          gateways: [mesh]
          sourceNamespace: web
          statPrefix: s
      route: [{destination: {host: svc}, weight: 100, headers: {request: {set: {x: '1'}}}}]
      rewrite: {uri: /v2}
      timeout: 5s
      retries: {attempts: 3, perTryTimeout: 2s}
      fault: {delay: {fixedDelay: 1s, percentage: {value: 10}}}
      mirror: {host: shadow}
      mirrorPercentage: {value: 5.0}
      mirror_percent: 5
      corsPolicy: {allowOrigins: [{exact: 'https://a'}]}
      headers: {response: {remove: [x-internal]}}
  gateways: [mesh]
  exportTo: ['.']
  tcp: [{route: [{destination: {host: svc}}]}]
"""
        )
    )
    assert tr.spec.http[0].match[0].sourceLabels == {"app": "web"}
    assert tr.spec.http[0].mirror_percent == 5


def test_string_match_semantics() -> None:
    tr = router(
        simple(
            """    - match: [{headers: {a: {exact: '12345'}, b: {prefix: v}, c: {regex: '\\d+'}, d: {}}}]
      route: [{destination: {host: svc}}]
"""
        )
    )
    headers = tr.spec.http[0].match[0].headers
    assert headers["a"].matches("12345") and not headers["a"].matches("1234")
    assert headers["b"].matches("v2") and not headers["b"].matches("x")
    assert (
        headers["c"].matches("123") and not headers["c"].matches("a123") and not headers["c"].matches("123a")
    )
    assert headers["d"].matches("anything") and not headers["d"].matches(None)
    assert headers["a"].matches("12345", ignore_case=True)


# --- VirtualWorkload ---------------------------------------------------------------------------


VW = """apiVersion: traffic.opensergo.io/v1alpha1
kind: VirtualWorkload
metadata: {name: service-provider, labels: {app: service-provider}}
spec:
  host: service-provider
  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}
  subsets:
  - {name: v1, labels: {version: v1}}
  - name: v2
    labels: {version: v2}
    trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-user-id}}}
"""


def test_virtual_workload() -> None:
    vw = one(VW)
    assert isinstance(vw, VirtualWorkload)
    assert vw.spec.trafficPolicy is not None and vw.spec.trafficPolicy.loadBalancer is not None
    assert vw.spec.trafficPolicy.loadBalancer.simple is not None
    assert vw.spec.trafficPolicy.loadBalancer.simple.value == "ROUND_ROBIN"
    v2 = vw.spec.subset("v2")
    assert v2 is not None and v2.labels == {"version": "v2"}
    assert vw.spec.subset("v3") is None
    assert to_proto(vw) is None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (("name: v2", "name: v1"), "spec.subsets[1].name"),
        (("httpHeaderName: x-user-id", "httpHeaderName: x, useSourceIp: true"), None),
        (("simple: ROUND_ROBIN", "simple: FASTEST"), "spec.trafficPolicy.loadBalancer.simple"),
    ],
)
def test_virtual_workload_validation(change: tuple[str, str], field: str | None) -> None:
    with pytest.raises(SpecErrors) as info:
        parse_documents(VW.replace(*change))
    error = info.value.errors[0]
    assert error.field == (field or "spec.subsets[1].trafficPolicy.loadBalancer.consistentHash")


# --- TrafficLane -------------------------------------------------------------------------------


def test_lane_sample() -> None:
    lane = parse_documents((SAMPLES / "traffic.yaml").read_text())[1]
    assert isinstance(lane, TrafficLane)
    assert lane.app == "spring-cloud-a"  # from spec.selector
    assert lane.spec.lane.name == "Gray"
    assert lane.spec.traceIdBaggage == "x-opensergo-traffic"
    assert lane.spec.rules.traffic is not None and lane.spec.rules.traffic.http is not None
    http = lane.spec.rules.traffic.http
    assert http.headers["X-User-Id"].exact == "12345"  # list of single-key maps, number as text
    assert http.uri is not None and http.uri.exact == "/index"
    assert lane.spec.rules.workload is not None and lane.spec.rules.workload.selector == {"tag": "gray"}


def test_lane_fields_under_rules_are_hoisted() -> None:
    lane = one(
        """apiVersion: traffic.opensergo.io/v1alpha1
kind: TrafficLane
metadata: {name: lane}
spec:
  selector: {app: a}
  rules:
    workload: {selector: {tag: gray}}
    lane: {name: Gray}
"""
    )
    assert isinstance(lane, TrafficLane)
    assert lane.spec.lane.name == "Gray"
    assert lane.spec.traceIdBaggage == "x-opensergo-traffic"


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ("{rules: {}, lane: {name: Gray}}", "spec.rules"),
        ("{rules: {workload: {selector: {tag: g}}}, lane: {name: 'a b'}}", "spec.lane.name"),
        (
            "{rules: {traffic: {http: {headers: [{a: {exact: '1'}}, {a: {exact: '2'}}]}}}, lane: {name: G}}",
            None,
        ),
    ],
)
def test_lane_validation(spec: str, field: str | None) -> None:
    with pytest.raises(SpecErrors) as info:
        parse_documents(
            f"apiVersion: traffic.opensergo.io/v1alpha1\nkind: TrafficLane\nmetadata: {{name: l}}\n"
            f"spec: {spec}"
        )
    error = info.value.errors[0]
    assert error.field == (field or "spec.rules.traffic.http.headers")
