"""The RateLimitService answers from the token service's sliding windows (Global limits)."""

from __future__ import annotations

import pytest
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from envoy.service.ratelimit.v3 import rls_pb2

from opensergo.controlplane.tokens import GlobalLimits
from opensergo.controlplane.xds.ratelimit import RateLimitService
from tests.unit.xds.test_translate import Cache

pytestmark = pytest.mark.unit

RULES = """
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: RateLimitStrategy
metadata: {name: shared, labels: {app: orders}}
spec: {limitMode: Global, threshold: 3, statDuration: 60s}
---
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: RateLimitStrategy
metadata: {name: local, labels: {app: orders}}
spec: {limitMode: Local, threshold: 1, statDuration: 60s}
"""


def request(strategy: str, hits: int = 0) -> rls_pb2.RateLimitRequest:
    entries = [("namespace", "default"), ("app", "orders"), ("resource", "GET:/x"), ("strategy", strategy)]
    descriptor = ratelimit_pb2.RateLimitDescriptor(
        entries=[ratelimit_pb2.RateLimitDescriptor.Entry(key=k, value=v) for k, v in entries]
    )
    return rls_pb2.RateLimitRequest(domain="opensergo", descriptors=[descriptor], hits_addend=hits)


def test_global_window_and_other_strategies() -> None:
    cache = Cache()
    cache.put(RULES)
    now = [0]
    service = RateLimitService(GlobalLimits(cache.cache, clock=lambda: now[0]))
    ok, over = rls_pb2.RateLimitResponse.OK, rls_pb2.RateLimitResponse.OVER_LIMIT
    codes = [service.decide(request("shared")).overall_code for _ in range(4)]
    assert codes == [ok, ok, ok, over]
    blocked = service.decide(request("shared"))
    assert blocked.statuses[0].current_limit.requests_per_unit == 3
    assert blocked.response_headers_to_add[0].key == "x-opensergo-blocked"
    # A Local strategy (or none) is not the service's business: OK.
    assert service.decide(request("local")).overall_code == ok
    assert service.decide(request("missing")).overall_code == ok
    # The window slides: a minute later the tokens are back.
    now[0] += 61 * 10**9
    assert service.decide(request("shared", hits=2)).overall_code == ok
    assert service.decide(request("shared", hits=2)).overall_code == over
