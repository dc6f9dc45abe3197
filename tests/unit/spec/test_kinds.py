from __future__ import annotations

import pytest
from envoy.config.route.v3 import route_pb2

from opensergo.proto.fault_tolerance.v1 import fault_tolerance_pb2 as ft_pb2
from opensergo.spec import (
    KindInfo,
    RateLimitStrategy,
    TrafficRouter,
    all_kinds,
    by_api_version_kind,
    by_full_kind,
    by_resource,
    lookup,
)

pytestmark = pytest.mark.unit

FT, FT_PB = "fault-tolerance.opensergo.io/v1alpha1", "io.opensergo.proto.fault_tolerance.v1"
UPSTREAM_KINDS = {
    # protocol.md §3.1: the wire kinds the official SDKs register, with their payload messages.
    **{
        f"{FT}/{kind}": f"{FT_PB}.{kind}"
        for kind in (
            "FaultToleranceRule",
            "RateLimitStrategy",
            "ThrottlingStrategy",
            "ConcurrencyLimitStrategy",
            "CircuitBreakerStrategy",
        )
    },
    "traffic.opensergo.io/v1alpha1/TrafficRouter": "envoy.config.route.v3.RouteConfiguration",
}


def test_registry_shape() -> None:
    kinds = all_kinds()
    assert len(kinds) == 22  # 8 fault-tolerance, 3 traffic, 8 database, 1 cache, 2 discovery
    assert len({k.full_kind for k in kinds}) == len(kinds)
    assert len({k.model for k in kinds}) == len(kinds)
    for k in kinds:
        assert (k.group, k.version, k.kind, k.plural) == (
            k.model.GROUP,
            k.model.VERSION,
            k.model.KIND,
            k.model.PLURAL,
        )
        assert k.plural == k.plural.lower()


def test_upstream_payload_types() -> None:
    with_proto = {k.full_kind: k.type_url for k in all_kinds() if k.proto is not None}
    assert with_proto == {name: f"type.googleapis.com/{msg}" for name, msg in UPSTREAM_KINDS.items()}
    assert lookup("AdaptiveOverloadProtectionStrategy").type_url is None


def test_kind_info_properties() -> None:
    info = by_full_kind("fault-tolerance.opensergo.io/v1alpha1/RateLimitStrategy")
    assert isinstance(info, KindInfo)
    assert info.model is RateLimitStrategy
    assert info.proto is ft_pb2.RateLimitStrategy
    assert info.api_version == "fault-tolerance.opensergo.io/v1alpha1"
    assert info.singular == "ratelimitstrategy"
    assert info.plural == "ratelimitstrategies"
    tr = lookup("tr")
    assert tr.model is TrafficRouter and tr.proto is route_pb2.RouteConfiguration
    assert tr.short_names == ("tr",)
    with pytest.raises(AttributeError):
        info.kind = "x"  # type: ignore[misc]


def test_lookups() -> None:
    rls = by_full_kind("fault-tolerance.opensergo.io/v1alpha1/RateLimitStrategy")
    assert by_resource("fault-tolerance.opensergo.io", "v1alpha1", "ratelimitstrategies") is rls
    assert by_api_version_kind("fault-tolerance.opensergo.io/v1alpha1", "RateLimitStrategy") is rls
    for name in (
        "RateLimitStrategy",
        "ratelimitstrategy",
        "RATELIMITSTRATEGIES",
        "fault-tolerance.opensergo.io/v1alpha1/RateLimitStrategy",
        "ratelimitstrategies.fault-tolerance.opensergo.io",
        " ratelimitstrategy ",
    ):
        assert lookup(name) is rls, name
    assert lookup("TR").kind == "TrafficRouter"
    assert lookup("databasediscoveries").kind == "DatabaseDiscovery"


def test_unknown_kinds_raise_key_error_with_suggestions() -> None:
    with pytest.raises(KeyError, match="did you mean RateLimitStrategy"):
        lookup("ratelimitstrategie")
    with pytest.raises(KeyError, match="unknown kind"):
        lookup("nothing-like-it")
    with pytest.raises(KeyError):
        by_full_kind("RateLimitStrategy")  # the full name is required here
    with pytest.raises(KeyError):
        by_resource("fault-tolerance.opensergo.io", "v1", "ratelimitstrategies")
    with pytest.raises(KeyError):
        by_api_version_kind("traffic.opensergo.io/v1alpha1", "RateLimitStrategy")
