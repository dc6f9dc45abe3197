"""TrafficRouter <-> the Envoy ``RouteConfiguration`` that upstream consumers decode.

The encoding is what Spring Cloud Alibaba and Sentinel expect (protocol.md §4.2), with the §4.4
bugs fixed:

* Every ``match`` block becomes its own Envoy route with the same action. Istio ORs the blocks,
  and upstream's merge into one AND-list changed the meaning. An HTTP route without ``match``
  becomes a single catch-all route.
* Every route has a path specifier: ``uri`` exact -> ``path``, prefix -> ``prefix``, regex ->
  ``safe_regex``, and ``prefix: "/"`` when there is no uri. Envoy rejects a route without one.
  ``ignoreUriCase`` sets ``case_sensitive: false``.
* ``method`` / ``authority`` / ``scheme`` become ``:method`` / ``:authority`` / ``:scheme`` header
  matchers. Header matchers use the non-deprecated ``string_match`` form, and an empty match
  (``{}``) means "header present". ``withoutHeaders`` become inverted matchers, and query
  parameter matchers carry their ``name``. Within each group, matchers are sorted by name so
  the output is the same on every push.
* Cluster names are ``outbound|<port>|<subset>|<fqdn>``. The port segment stays empty (as
  upstream) unless ``destination.port.number`` is set. A host that already contains a dot is
  taken as fully qualified and is not suffixed again, for domains and clusters alike.
* One destination gives ``cluster``, or the inline ``cluster_fallback`` plugin when it has a
  fallback. Several destinations give ``weighted_clusters`` (weights as UInt32Value,
  ``total_weight`` unset). An HTTP route with no destination (redirect or direct response only)
  is a proxy feature and is left out.
* Fallback on weighted routes (upstream drops it; the Envoy plugin takes a single cluster): the
  route carries ``metadata.filter_metadata["io.opensergo.router.v1.fallback"]``, a Struct whose
  fields map each weighted cluster name to the name of its fallback cluster (only destinations
  with a fallback appear). ``weighted_clusters`` stays exactly as Envoy and Spring Cloud Alibaba
  expect it; Envoy ignores metadata it has no filter for, and :func:`decode_router` reads it
  back. If one cluster appears twice in a weighted route with different fallbacks, the first
  destination's fallback is kept.

Not translated because Envoy has no route-level equivalent, or they concern the proxy:
``sourceLabels``, ``sourceNamespace``, ``gateways``, ``port`` and the proxy-only HTTP route
fields.
"""

from __future__ import annotations

from typing import Any

from envoy.config.core.v3 import extension_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from google.protobuf import any_pb2, struct_pb2, wrappers_pb2
from google.protobuf.message import Message

from opensergo.proto.router.v1 import route_fallback_pb2
from opensergo.spec.errors import SpecError
from opensergo.spec.traffic import (
    CLUSTER_DOMAIN,
    Destination,
    Fallback,
    HTTPMatchRequest,
    HTTPRouteDestination,
    PortSelector,
    StringMatch,
    TrafficRouter,
)
from opensergo.spec.upstream.form import UpstreamForm, rebuild

CLUSTER_FALLBACK_PLUGIN = "envoy.router.cluster_specifier_plugin.cluster_fallback"
WEIGHTED_FALLBACK_METADATA = "io.opensergo.router.v1.fallback"
"""Route ``filter_metadata`` key: weighted cluster name -> fallback cluster name."""


def service_fqdn(host: str, namespace: str) -> str:
    """``svc`` -> ``svc.<ns>.svc.cluster.local``; hosts with a dot (or ``*``) are kept as they are."""
    if host == "*" or "." in host:
        return host
    return f"{host}.{namespace}.{CLUSTER_DOMAIN}"


def cluster_name(host: str, namespace: str, subset: str | None = None, port: int | None = None) -> str:
    """Istio's outbound cluster name: ``outbound|<port>|<subset>|<fqdn>``."""
    return f"outbound|{port or ''}|{subset or ''}|{service_fqdn(host, namespace)}"


def parse_cluster_name(name: str, namespace: str) -> Destination:
    """The reverse of :func:`cluster_name`; a name in another form is taken as the host."""
    parts = name.split("|")
    if len(parts) != 4 or parts[0] != "outbound":
        parts = ["", "", "", name]
    port, subset, host = parts[1], parts[2], parts[3]
    if not host:
        raise SpecError(f"cluster name {name!r} has no host")
    suffix = f".{namespace}.{CLUSTER_DOMAIN}"
    return Destination(
        host=host.removesuffix(suffix) if host.endswith(suffix) else host,
        subset=subset or None,
        port=PortSelector(number=int(port)) if port.isdigit() else None,
    )


def _string_matcher(match: StringMatch) -> Any:
    if match.exact is not None:
        return string_pb2.StringMatcher(exact=match.exact)
    if match.prefix is not None:
        return string_pb2.StringMatcher(prefix=match.prefix)
    return string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=match.regex or ""))


def _header_matcher(name: str, match: StringMatch, *, invert: bool = False) -> Any:
    matcher = rc.HeaderMatcher(name=name.lower(), invert_match=invert)
    if match.is_empty:
        matcher.present_match = True
    else:
        matcher.string_match.CopyFrom(_string_matcher(match))
    return matcher


def _set_path(out: Any, uri: StringMatch | None) -> None:
    """Every route gets a path specifier (Envoy rejects one without): ``prefix: /`` if no uri."""
    if uri is None or uri.is_empty:
        out.prefix = "/"
    elif uri.exact is not None:
        out.path = uri.exact
    elif uri.prefix is not None:
        out.prefix = uri.prefix
    else:
        out.safe_regex.CopyFrom(regex_pb2.RegexMatcher(regex=uri.regex or ""))


def _query_matcher(name: str, match: StringMatch) -> Any:
    query = rc.QueryParameterMatcher(name=name)
    if match.is_empty:
        query.present_match = True
    else:
        query.string_match.CopyFrom(_string_matcher(match))
    return query


def _route_match(match: HTTPMatchRequest | None) -> Any:
    out = rc.RouteMatch()
    _set_path(out, match.uri if match is not None else None)
    if match is None:
        return out
    if match.ignoreUriCase:
        out.case_sensitive.CopyFrom(wrappers_pb2.BoolValue(value=False))
    for pseudo, value in (
        (":method", match.method),
        (":authority", match.authority),
        (":scheme", match.scheme),
    ):
        if value is not None:
            out.headers.append(_header_matcher(pseudo, value))
    for name in sorted(match.headers):
        out.headers.append(_header_matcher(name, match.headers[name]))
    for name in sorted(match.withoutHeaders):
        out.headers.append(_header_matcher(name, match.withoutHeaders[name], invert=True))
    for name in sorted(match.queryParams):
        out.query_parameters.append(_query_matcher(name, match.queryParams[name]))
    return out


def _route_action(route: list[HTTPRouteDestination], namespace: str) -> Any:
    def cluster(dest: Destination | Fallback, port: PortSelector | None = None) -> str:
        return cluster_name(dest.host, namespace, dest.subset, port.number if port else None)

    action = rc.RouteAction()
    if len(route) == 1:
        dest = route[0].destination
        if dest.fallback is None:
            action.cluster = cluster(dest, dest.port)
        else:
            config = route_fallback_pb2.ClusterFallbackConfig_ClusterConfig(
                RoutingCluster=cluster(dest, dest.port), FallbackCluster=cluster(dest.fallback)
            )
            typed = any_pb2.Any()
            typed.Pack(config, deterministic=True)
            action.inline_cluster_specifier_plugin.extension.CopyFrom(
                extension_pb2.TypedExtensionConfig(name=CLUSTER_FALLBACK_PLUGIN, typed_config=typed)
            )
        return action
    for item in route:
        action.weighted_clusters.clusters.append(
            rc.WeightedCluster.ClusterWeight(
                name=cluster(item.destination, item.destination.port),
                weight=wrappers_pb2.UInt32Value(value=item.weight or 0),
            )
        )
    return action


def _weighted_fallbacks(route: list[HTTPRouteDestination], namespace: str) -> struct_pb2.Struct | None:
    """``{weighted cluster: fallback cluster}`` for a weighted route, None if there is none."""
    if len(route) < 2:
        return None
    mapping: dict[str, str] = {}
    for item in route:
        dest = item.destination
        if dest.fallback is None:
            continue
        routing = cluster_name(dest.host, namespace, dest.subset, dest.port.number if dest.port else None)
        mapping.setdefault(routing, cluster_name(dest.fallback.host, namespace, dest.fallback.subset))
    if not mapping:
        return None
    struct = struct_pb2.Struct()
    struct.update(mapping)
    return struct


def encode_router(router: TrafficRouter) -> Message:
    namespace = router.metadata.namespace
    vhost = rc.VirtualHost(
        name=router.metadata.name,
        domains=[service_fqdn(h, namespace) for h in router.spec.hosts],
    )
    for http in router.spec.http:
        if not http.route:
            continue
        action = _route_action(http.route, namespace)
        fallbacks = _weighted_fallbacks(http.route, namespace)
        matches: list[HTTPMatchRequest | None] = list(http.match) or [None]
        for match in matches:
            route = rc.Route(match=_route_match(match), route=action)
            if fallbacks is not None:
                route.metadata.filter_metadata[WEIGHTED_FALLBACK_METADATA].CopyFrom(fallbacks)
            name = (match.name if match is not None else None) or http.name
            if name:
                route.name = name
            vhost.routes.append(route)
    config: Message = route_pb2.RouteConfiguration(name=router.metadata.name, virtual_hosts=[vhost])
    return config


def decode_router(message: Message, /, *, name: str, namespace: str, app: str) -> TrafficRouter:
    """Read a RouteConfiguration as the Go control plane (or :func:`encode_router`) writes it."""
    config: Any = message
    suffix = f".{namespace}.{CLUSTER_DOMAIN}"
    hosts: list[str] = []
    http: list[dict[str, Any]] = []
    for vhost in config.virtual_hosts:
        for domain in vhost.domains:
            short = domain.removesuffix(suffix) if domain.endswith(suffix) else domain
            if short not in hosts:
                hosts.append(short)
        for route in vhost.routes:
            entry = _http_route_from_envoy(route, namespace)
            if entry is not None and not _merge_match_block(http, entry):
                http.append(entry)
    spec = {"hosts": hosts, "http": http}
    return rebuild(TrafficRouter, name=config.name or name, namespace=namespace, app=app, spec=spec)


def _http_route_from_envoy(route: Any, namespace: str) -> dict[str, Any] | None:
    """One Envoy route as an HTTP route with a single match block; None if it routes nowhere."""
    if route.WhichOneof("action") != "route":
        return None
    destinations = _destinations_from_envoy(route.route, namespace)
    if not destinations:
        return None
    _apply_weighted_fallbacks(route, destinations, namespace)
    entry: dict[str, Any] = {"route": destinations}
    match = _match_from_envoy(route.match)
    if match:
        entry["match"] = [match]
    if route.name:
        entry["name"] = route.name
    return entry


def _merge_match_block(http: list[dict[str, Any]], entry: dict[str, Any]) -> bool:
    """Consecutive routes with one action are the OR-ed match blocks of one HTTP route (that is
    how :func:`encode_router` writes them; first-match makes it equal). True if merged."""
    previous = http[-1] if http else None
    if (
        previous is None
        or "match" not in entry
        or not previous.get("match")
        or previous["route"] != entry["route"]
        or previous.get("name") != entry.get("name")
    ):
        return False
    previous["match"].extend(entry["match"])
    return True


def _string_match_from_envoy(matcher: Any) -> dict[str, str]:
    kind = matcher.WhichOneof("match_pattern")
    if kind == "exact":
        return {"exact": matcher.exact}
    if kind == "prefix":
        return {"prefix": matcher.prefix}
    if kind == "safe_regex":
        return {"regex": matcher.safe_regex.regex}
    raise SpecError(f"unsupported string matcher {kind!r} in upstream route")


def _header_match_from_envoy(header: Any) -> dict[str, str]:
    kind = header.WhichOneof("header_match_specifier")
    if kind == "string_match":
        return _string_match_from_envoy(header.string_match)
    if kind == "exact_match":  # the deprecated forms the Go control plane writes
        return {"exact": header.exact_match}
    if kind == "prefix_match":
        return {"prefix": header.prefix_match}
    if kind == "safe_regex_match":
        return {"regex": header.safe_regex_match.regex}
    if kind == "present_match" and header.present_match:
        return {}
    raise SpecError(f"unsupported header matcher {kind!r} for {header.name!r} in upstream route")


def _match_from_envoy(match: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    path = match.WhichOneof("path_specifier")
    if path == "path":
        out["uri"] = {"exact": match.path}
    elif path == "prefix" and match.prefix not in ("", "/"):
        out["uri"] = {"prefix": match.prefix}
    elif path == "safe_regex":
        out["uri"] = {"regex": match.safe_regex.regex}
    if match.HasField("case_sensitive") and not match.case_sensitive.value:
        out["ignoreUriCase"] = True
    pseudo = {":method": "method", ":authority": "authority", ":scheme": "scheme"}
    for header in match.headers:
        value = _header_match_from_envoy(header)
        if header.name in pseudo and not header.invert_match:
            out[pseudo[header.name]] = value
        else:
            out.setdefault("withoutHeaders" if header.invert_match else "headers", {})[header.name] = value
    for query in match.query_parameters:
        if not query.name:
            continue  # upstream never sets the name; such a matcher cannot be applied
        kind = query.WhichOneof("query_parameter_match_specifier")
        value = _string_match_from_envoy(query.string_match) if kind == "string_match" else {}
        out.setdefault("queryParams", {})[query.name] = value
    return out


def _destinations_from_envoy(action: Any, namespace: str) -> list[dict[str, Any]]:
    kind = action.WhichOneof("cluster_specifier")
    if kind == "cluster":
        return [{"destination": _destination_dict(action.cluster, namespace)}]
    if kind == "weighted_clusters":
        return [
            {"destination": _destination_dict(c.name, namespace), "weight": c.weight.value}
            for c in action.weighted_clusters.clusters
        ]
    if kind == "inline_cluster_specifier_plugin":
        config = route_fallback_pb2.ClusterFallbackConfig_ClusterConfig()
        if not action.inline_cluster_specifier_plugin.extension.typed_config.Unpack(config):
            raise SpecError("inline cluster specifier plugin is not a ClusterFallbackConfig_ClusterConfig")
        dest = _destination_dict(config.RoutingCluster, namespace)
        fallback = _destination_dict(config.FallbackCluster, namespace)
        dest["fallback"] = {k: v for k, v in fallback.items() if k in ("host", "subset")}
        return [{"destination": dest}]
    return []


def _apply_weighted_fallbacks(route: Any, destinations: list[dict[str, Any]], namespace: str) -> None:
    """Restore per-destination fallbacks of a weighted route from its route metadata."""
    if WEIGHTED_FALLBACK_METADATA not in route.metadata.filter_metadata:
        return
    if route.route.WhichOneof("cluster_specifier") != "weighted_clusters":
        return
    fields = route.metadata.filter_metadata[WEIGHTED_FALLBACK_METADATA].fields
    for item, weighted in zip(destinations, route.route.weighted_clusters.clusters, strict=True):
        value = fields.get(weighted.name)
        if value is None or value.WhichOneof("kind") != "string_value":
            continue
        fallback = _destination_dict(value.string_value, namespace)
        item["destination"]["fallback"] = {k: v for k, v in fallback.items() if k in ("host", "subset")}


def _destination_dict(name: str, namespace: str) -> dict[str, Any]:
    return parse_cluster_name(name, namespace).model_dump(exclude_none=True)


TRAFFIC_ROUTER = UpstreamForm(route_pb2.RouteConfiguration, encode_router, decode_router)
