"""Outbound traffic routing: TrafficRouter matching, subsets, fallback, load balancing, lanes.

>>> from opensergo.governance.routing import ServiceDirectory, SimpleRequest
>>> directory = ServiceDirectory(client)  # doctest: +SKIP
>>> directory.choose("service-provider", SimpleRequest("GET", "/", {"tag": "v2"}))  # doctest: +SKIP
<Instance service-provider ...>

The outbound integrations (``opensergo.integrations.httpx`` / ``requests`` / ``grpc_client``)
call :meth:`ServiceDirectory.choose` for each request; see docs/routing.md.
"""

from opensergo.governance.routing import lanes
from opensergo.governance.routing.lanes import LANE_HEADER, LaneManager, LaneMark
from opensergo.governance.routing.loadbalance import (
    Balancer,
    ConsistentHash,
    LeastRequest,
    RandomBalancer,
    RoundRobin,
    build_balancer,
)
from opensergo.governance.routing.model import (
    Instance,
    NoAvailableInstance,
    NoRouteMatched,
    RequestView,
    RoutingError,
    SimpleRequest,
)
from opensergo.governance.routing.registry import CURRENT_LANE, Decision, NoMatchPolicy, ServiceDirectory
from opensergo.governance.routing.router import CompiledRouter, Rule, Target

__all__ = [
    "CURRENT_LANE",
    "LANE_HEADER",
    "Balancer",
    "CompiledRouter",
    "ConsistentHash",
    "Decision",
    "Instance",
    "LaneManager",
    "LaneMark",
    "LeastRequest",
    "NoAvailableInstance",
    "NoMatchPolicy",
    "NoRouteMatched",
    "RandomBalancer",
    "RequestView",
    "RoundRobin",
    "RoutingError",
    "Rule",
    "ServiceDirectory",
    "SimpleRequest",
    "Target",
    "build_balancer",
    "lanes",
]
