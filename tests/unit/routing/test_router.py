"""TrafficRouter matching, subsets, fallback and the no-match policy.

Scenario numbers are those of routing-discovery-database.md §7 (instances A{version: v1} and
B{version: v2}, router = the §1.2 canonical example unless stated).
"""

from __future__ import annotations

import collections
import random
from typing import Any

import pytest

from opensergo.governance.routing import (
    CompiledRouter,
    NoAvailableInstance,
    NoRouteMatched,
    ServiceDirectory,
    SimpleRequest,
)

from .helpers import CANONICAL, SERVICE, directory, instance, router, simple_router, workload

pytestmark = pytest.mark.unit

A = instance("a", 8001, version="v1")
B = instance("b", 8002, version="v2")


def names(d: ServiceDirectory, request: SimpleRequest, n: int = 20, service: str = SERVICE) -> set[str]:
    return {d.choose(service, request).name for _ in range(n)}


def get(path: str = "/", **headers: str) -> SimpleRequest:
    return SimpleRequest("GET", path, headers)


@pytest.fixture
def canonical() -> ServiceDirectory:
    return directory([A, B], [router(CANONICAL)])


def test_scenario_01_header_tag_v2_goes_to_v2(canonical: ServiceDirectory) -> None:
    assert names(canonical, get(tag="v2")) == {"b"}
    decision = canonical.explain(SERVICE, get(tag="v2"))
    assert (decision.rule, decision.subset, decision.fallback) == ("service-provider[0]", "v2", False)


def test_scenario_02_no_header_falls_through_to_catch_all(canonical: ServiceDirectory) -> None:
    assert names(canonical, get()) == {"a"}
    assert canonical.explain(SERVICE, get()).rule == "service-provider[1]"


def test_scenario_03_exact_is_case_sensitive_but_header_names_are_not(canonical: ServiceDirectory) -> None:
    assert names(canonical, get(tag="V2")) == {"a"}
    assert names(canonical, SimpleRequest("GET", "/", {"TAG": "v2"})) == {"b"}


def test_scenario_04_empty_subset_uses_the_fallback(canonical: ServiceDirectory) -> None:
    canonical.update_instances(SERVICE, [A])  # B deregistered
    assert names(canonical, get(tag="v2")) == {"a"}
    decision = canonical.explain(SERVICE, get(tag="v2"))
    assert decision.fallback and decision.subset == "v1"


def test_scenario_05_empty_subset_without_fallback_raises() -> None:
    tr = simple_router(
        [
            {
                "match": [{"headers": {"tag": {"exact": "v2"}}}],
                "route": [{"destination": {"host": SERVICE, "subset": "v2"}}],
            },
            {"route": [{"destination": {"host": SERVICE, "subset": "v1"}}]},
        ]
    )
    d = directory([A], [tr])
    with pytest.raises(NoAvailableInstance, match="subset v2"):
        d.choose(SERVICE, get(tag="v2"))


def test_fallback_subset_empty_too_raises() -> None:
    d = directory([instance("c", version="v3")], [router(CANONICAL)])
    with pytest.raises(NoAvailableInstance, match="nor in its fallback service-provider subset v1"):
        d.choose(SERVICE, get(tag="v2"))


NO_CATCH_ALL = [
    {
        "match": [{"headers": {"tag": {"exact": "v2"}}}],
        "route": [{"destination": {"host": SERVICE, "subset": "v2"}}],
    },
    {
        "match": [{"headers": {"tag": {"exact": "v1"}}}],
        "route": [{"destination": {"host": SERVICE, "subset": "v1"}}],
    },
]


def test_scenario_06_no_rule_matches_default_policy_raises_no_route_matched() -> None:
    d = directory([A, B], [simple_router(NO_CATCH_ALL)])
    assert d.no_match == "error"
    with pytest.raises(NoRouteMatched) as info:
        d.choose(SERVICE, get(tag="v9"))
    assert info.value.service == SERVICE


def test_scenario_06_no_match_all_policy_uses_every_instance() -> None:
    d = directory([A, B], [simple_router(NO_CATCH_ALL)], no_match="all")
    assert names(d, get(tag="v9")) == {"a", "b"}


def test_scenario_06_no_match_last_policy_uses_the_last_route() -> None:
    d = directory([A, B], [simple_router(NO_CATCH_ALL)], no_match="last")
    assert names(d, get(tag="v9")) == {"a"}  # SCA's "default route version"


def test_no_match_policy_is_validated() -> None:
    with pytest.raises(ValueError, match="no_match"):
        ServiceDirectory(no_match="random")  # type: ignore[arg-type]


def test_scenario_07_no_router_balances_over_all_instances() -> None:
    d = directory([A, B])
    counts = collections.Counter(d.choose(SERVICE, get()).name for _ in range(100))
    assert counts == {"a": 50, "b": 50}  # round robin


def test_router_for_another_host_does_not_apply() -> None:
    other = simple_router([{"route": [{"destination": {"host": "other", "subset": "v2"}}]}], host="other")
    d = directory([A, B], [other])
    assert names(d, get()) == {"a", "b"}


def _two_rules(match: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"match": match, "route": [{"destination": {"host": SERVICE, "subset": "v2"}}]},
        {"route": [{"destination": {"host": SERVICE, "subset": "v1"}}]},
    ]


def test_scenario_08_conditions_of_one_block_are_anded() -> None:
    d = directory(
        [A, B],
        [simple_router(_two_rules([{"headers": {"x-a": {"exact": "1"}}, "uri": {"exact": "/index"}}]))],
    )
    assert names(d, SimpleRequest("GET", "/home", {"x-a": "1"})) == {"a"}
    assert names(d, SimpleRequest("GET", "/index", {"x-a": "1"})) == {"b"}


def test_scenario_09_match_blocks_are_ored() -> None:
    d = directory(
        [A, B],
        [simple_router(_two_rules([{"headers": {"x-a": {"exact": "1"}}}, {"uri": {"prefix": "/admin"}}]))],
    )
    assert names(d, get("/admin/users")) == {"b"}
    assert names(d, SimpleRequest("GET", "/x", {"x-a": "1"})) == {"b"}
    assert names(d, get("/x")) == {"a"}


def test_scenario_10_uri_prefix_and_ignore_uri_case() -> None:
    d = directory([A, B], [simple_router(_two_rules([{"uri": {"prefix": "/api"}}]))])
    assert names(d, get("/api/v1")) == {"b"}
    assert names(d, get("/api")) == {"b"}
    assert names(d, get("/apx")) == {"a"}
    d = directory([A, B], [simple_router(_two_rules([{"uri": {"exact": "/Index"}, "ignoreUriCase": True}]))])
    assert names(d, get("/index")) == {"b"}
    assert names(d, get("/index/")) == {"a"}
    d = directory([A, B], [simple_router(_two_rules([{"uri": {"exact": "/Index"}}]))])
    assert names(d, get("/index")) == {"a"}


def test_uri_ignores_the_query_string() -> None:
    d = directory([A, B], [simple_router(_two_rules([{"uri": {"exact": "/index"}}]))])
    assert names(d, get("/index?x=1")) == {"b"}


def test_scenario_11_regex_must_match_the_whole_value() -> None:
    d = directory([A, B], [simple_router(_two_rules([{"headers": {"x-id": {"regex": r"\d+"}}}]))])
    assert names(d, get(**{"x-id": "123"})) == {"b"}
    assert names(d, get(**{"x-id": "a123"})) == {"a"}
    assert names(d, get(**{"x-id": "123a"})) == {"a"}


def test_scenario_12_presence_and_without_headers() -> None:
    d = directory([A, B], [simple_router(_two_rules([{"headers": {"x-debug": {}}}]))])
    assert names(d, get(**{"x-debug": ""})) == {"b"}
    assert names(d, get(**{"x-debug": "anything"})) == {"b"}
    assert names(d, get()) == {"a"}
    d = directory([A, B], [simple_router(_two_rules([{"withoutHeaders": {"x-debug": {}}}]))])
    assert names(d, get(**{"x-debug": "1"})) == {"a"}
    assert names(d, get()) == {"b"}


def test_scenario_13_query_params() -> None:
    d = directory([A, B], [simple_router(_two_rules([{"queryParams": {"name": {"exact": "xiaoming"}}}]))])
    assert names(d, get("/?name=xiaoming")) == {"b"}
    assert names(d, get("/?name=xiao")) == {"a"}
    assert names(d, get("/")) == {"a"}
    d = directory([A, B], [simple_router(_two_rules([{"queryParams": {"flag": {"exact": ""}}}]))])
    assert names(d, get("/?flag")) == {"b"}


def test_method_scheme_and_authority() -> None:
    d = directory(
        [A, B],
        [
            simple_router(
                _two_rules(
                    [
                        {
                            "method": {"exact": "POST"},
                            "authority": {"prefix": "service"},
                            "scheme": {"exact": "http"},
                        }
                    ]
                )
            )
        ],
    )
    assert names(d, SimpleRequest("POST", "/", {"host": "service-provider"})) == {"b"}
    assert names(d, SimpleRequest("GET", "/", {"host": "service-provider"})) == {"a"}
    assert names(d, SimpleRequest("POST", "/", {"host": "other"})) == {"a"}


def test_header_keys_reserved_by_istio_are_ignored() -> None:
    d = directory([A, B], [simple_router(_two_rules([{"headers": {"uri": {"exact": "/never"}}}]))])
    assert names(d, get("/")) == {"b"}


def test_first_match_wins() -> None:
    http = [
        {"match": [{"uri": {"prefix": "/"}}], "route": [{"destination": {"host": SERVICE, "subset": "v1"}}]},
        {
            "match": [{"uri": {"prefix": "/api"}}],
            "route": [{"destination": {"host": SERVICE, "subset": "v2"}}],
        },
    ]
    d = directory([A, B], [simple_router(http)])
    assert names(d, get("/api")) == {"a"}


def test_routers_are_concatenated_in_name_order() -> None:
    second = simple_router([{"route": [{"destination": {"host": SERVICE, "subset": "v1"}}]}], name="b-router")
    first = simple_router(
        [
            {
                "match": [{"headers": {"x": {"exact": "1"}}}],
                "route": [{"destination": {"host": SERVICE, "subset": "v2"}}],
            }
        ],
        name="a-router",
    )
    d = directory([A, B], [second, first])
    assert names(d, get(x="1")) == {"b"}
    assert names(d, get()) == {"a"}


WEIGHTED_90_10 = [
    {
        "route": [
            {"destination": {"host": SERVICE, "subset": "v1"}, "weight": 90},
            {"destination": {"host": SERVICE, "subset": "v2"}, "weight": 10},
        ]
    }
]


def test_scenario_14_weighted_90_10_within_tolerance() -> None:
    d = directory([A, B], [simple_router(WEIGHTED_90_10)], seed=1234)
    counts = collections.Counter(d.choose(SERVICE, get()).name for _ in range(10_000))
    assert abs(counts["b"] / 10_000 - 0.10) <= 0.015
    assert counts["a"] + counts["b"] == 10_000


def test_scenario_14_weight_zero_is_never_chosen() -> None:
    http = [
        {
            "route": [
                {"destination": {"host": SERVICE, "subset": "v1"}, "weight": 100},
                {"destination": {"host": SERVICE, "subset": "v2"}, "weight": 0},
            ]
        }
    ]
    d = directory([A, B], [simple_router(http)])
    assert names(d, get(), n=2000) == {"a"}


def test_single_destination_takes_all_traffic_whatever_its_weight() -> None:
    d = directory(
        [A, B],
        [simple_router([{"route": [{"destination": {"host": SERVICE, "subset": "v2"}, "weight": 5}]}])],
    )
    assert names(d, get(), n=200) == {"b"}


def test_fallback_on_weighted_routes_is_applied_after_the_pick() -> None:
    http = [
        {
            "route": [
                {"destination": {"host": SERVICE, "subset": "v1"}, "weight": 50},
                {
                    "destination": {
                        "host": SERVICE,
                        "subset": "v2",
                        "fallback": {"host": SERVICE, "subset": "v1"},
                    },
                    "weight": 50,
                },
            ]
        }
    ]
    d = directory([A], [simple_router(http)], seed=3)
    decisions = [d.explain(SERVICE, get()) for _ in range(200)]
    assert {x.instance.name for x in decisions} == {"a"}
    fell_back = [x for x in decisions if x.fallback]
    assert fell_back and all(x.target is not None and x.target.subset == "v2" for x in fell_back)
    assert 60 < len(fell_back) < 140  # about half of the picks were v2


def test_fallback_to_another_host() -> None:
    http = [
        {
            "route": [
                {
                    "destination": {"host": SERVICE, "subset": "v2", "fallback": {"host": "backup"}},
                }
            ]
        }
    ]
    d = directory([A], [simple_router(http)])
    d.update_instances("backup", [instance("z", app="backup", version="v1")])
    decision = d.explain(SERVICE, get())
    assert (decision.instance.name, decision.host, decision.fallback) == ("z", "backup", True)


def test_fallback_is_one_level_only() -> None:
    # The fallback subset v1 is empty; its own rules are not consulted again.
    d = directory([instance("c", version="v3")], [router(CANONICAL)])
    with pytest.raises(NoAvailableInstance):
        d.choose(SERVICE, get(tag="v2"))


def test_scenario_15_virtual_workload_subset_labels() -> None:
    vw = workload(
        {
            "host": SERVICE,
            "subsets": [
                {"name": "v2", "labels": {"version": "v2", "zone": "a"}},
                {"name": "v1", "labels": {"version": "v1"}},
            ],
        }
    )
    plain = instance("b-plain", version="v2")
    zoned = instance("b-zoned", version="v2", zone="a", tag="x")
    d = directory([A, plain, zoned], [router(CANONICAL)], [vw], lane_routing=False)
    assert names(d, get(tag="v2")) == {"b-zoned"}


def test_default_subset_selector_is_the_version_label() -> None:
    d = directory([A, B, instance("b2", version="v2", zone="z")], [router(CANONICAL)])
    assert names(d, get(tag="v2")) == {"b", "b2"}


def test_virtual_workload_for_another_host_is_ignored() -> None:
    vw = workload({"host": "other", "subsets": [{"name": "v2", "labels": {"version": "v1"}}]})
    d = directory([A, B], [router(CANONICAL)], [vw])
    assert names(d, get(tag="v2")) == {"b"}


def test_scenario_16_source_labels_compare_with_the_local_instance() -> None:
    http = _two_rules([{"sourceLabels": {"app": "web"}}])
    batch = directory([A, B], [simple_router(http)], local_labels={"app": "batch"})
    assert names(batch, get()) == {"a"}
    web = directory([A, B], [simple_router(http)], local_labels={"app": "web"})
    assert names(web, get()) == {"b"}


def test_source_labels_only_remove_their_own_block() -> None:
    http = _two_rules([{"sourceLabels": {"app": "web"}}, {"headers": {"x": {"exact": "1"}}}])
    batch = directory([A, B], [simple_router(http)], local_labels={"app": "batch"})
    assert names(batch, get(x="1")) == {"b"}
    assert names(batch, get()) == {"a"}


def test_no_instances_at_all_raises_no_available_instance() -> None:
    d = directory([])
    with pytest.raises(NoAvailableInstance):
        d.choose(SERVICE, get())
    with pytest.raises(NoAvailableInstance):
        d.choose("never-seen", get())


def test_zero_weight_and_unhealthy_instances_are_excluded() -> None:
    d = directory([A, instance("dead", weight=0, version="v1")])
    assert names(d, get()) == {"a"}


def test_fqdn_service_names_are_short_names() -> None:
    d = directory([A, B], [router(CANONICAL)])
    assert d.choose(f"{SERVICE}.default.svc.cluster.local", get(tag="v2")).name == "b"


def test_rules_are_recompiled_on_update_and_instances_keep_their_in_flight_count() -> None:
    d = directory([A, B])
    a = d.instances(SERVICE)[0]
    a.acquire()
    d.update_instances(SERVICE, [instance("a", 8001, version="v1"), B])
    assert d.instances(SERVICE)[0] is a and a.active == 1
    d.update_routers(SERVICE, [router(CANONICAL)])
    assert names(d, get()) == {"a"}
    d.update_routers(SERVICE, [])
    assert names(d, get()) == {"a", "b"}


def test_compiled_router_directly() -> None:
    compiled = CompiledRouter([router(CANONICAL)], SERVICE, rng=random.Random(1))
    assert len(compiled.rules) == 2
    matched = compiled.route(get(tag="v2"))
    assert matched is not None
    _rule, target = matched
    assert target is not None and (target.subset, target.fallback_subset) == ("v2", "v1")
    assert compiled.match(get()) is compiled.last_rule
