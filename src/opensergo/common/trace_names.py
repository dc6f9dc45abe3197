"""Span attribute names shared by the SDK (which sets them on the spans its integrations make) and
the control plane (which indexes received traces by them).

The standard OpenTelemetry semantic conventions (``http.*``, ``url.*``, ``rpc.*``,
``server.*``) come from the maintained instrumentations; these are OpenSergo's additions.
"""

from __future__ import annotations

from typing import Final

from opensergo.common.metric_names import RESOURCE, RULE, STRATEGY, STRATEGY_KIND

__all__ = [
    "BLOCKED",
    "HTTP_ROUTE",
    "INSTANCE",
    "LANE",
    "RESOURCE",
    "ROUTE_FALLBACK",
    "ROUTE_HOST",
    "ROUTE_RULE",
    "RULE",
    "STRATEGY",
    "STRATEGY_KIND",
    "SUBSET",
]

BLOCKED: Final = "opensergo.blocked"
"""True on the span of a request that a fault-tolerance rule refused (with RULE and STRATEGY)."""
LANE: Final = "opensergo.lane"
"""The traffic lane the request travels in."""
ROUTE_RULE: Final = "opensergo.route.rule"
"""Client spans: the TrafficRouter rule (``<router>/<rule>``) that matched the call."""
ROUTE_HOST: Final = "opensergo.route.host"
"""Client spans: the destination service the route chose."""
SUBSET: Final = "opensergo.route.subset"
"""Client spans: the VirtualWorkload subset the route chose."""
ROUTE_FALLBACK: Final = "opensergo.route.fallback"
"""Client spans: True when the destination's fallback was used (its subset had no instance)."""
INSTANCE: Final = "opensergo.route.instance"
"""Client spans: the instance (its ServiceInstance name) the call went to."""
HTTP_ROUTE: Final = "http.route"
"""The semantic-convention attribute for the matched route template (set by the integrations)."""
