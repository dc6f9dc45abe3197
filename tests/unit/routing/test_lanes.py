"""TrafficLane colouring, propagation and lane routing (scenarios 17-19 of §7)."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

from opensergo.governance.routing import LANE_HEADER, LaneManager, LaneMark, SimpleRequest, lanes
from opensergo.governance.routing.lanes import merge_baggage, parse_baggage

from .helpers import GRAY_LANE_SPEC, directory, instance, lane, simple_router

pytestmark = pytest.mark.unit

CALLEE = "spring-cloud-b"

GRAY_LANE = GRAY_LANE_SPEC

GRAY = instance("gray", 9001, app=CALLEE, tag="gray")
BASE = instance("base", 9002, app=CALLEE)


def test_scenario_17_colour_by_rule_propagates_and_routes_to_the_gray_instance() -> None:
    manager = LaneManager(use_otel=False)
    d = directory([GRAY, BASE], service=CALLEE, local_labels={"app": "spring-cloud-a"}, lanes=manager)
    d.update_lanes([lane(GRAY_LANE)])
    token = manager.enter_from_headers({"X-User-Id": "12345"}, method="GET", path="/index")
    try:
        outbound: dict[str, str] = {}
        assert manager.inject(outbound) == LaneMark("Gray")
        assert outbound == {LANE_HEADER: "Gray", "baggage": "x-opensergo-traffic=Gray"}
        assert {d.choose(CALLEE).name for _ in range(10)} == {"gray"}
    finally:
        manager.reset(token)
    assert manager.current() is None
    assert {d.choose(CALLEE).name for _ in range(10)} == {"base"}


def test_scenario_17_rule_conditions_are_anded() -> None:
    manager = LaneManager(use_otel=False)
    d = directory([GRAY, BASE], service=CALLEE, local_labels={"app": "spring-cloud-a"}, lanes=manager)
    d.update_lanes([lane(GRAY_LANE)])
    for headers, path in (({"X-User-Id": "12345"}, "/other"), ({"X-User-Id": "1"}, "/index"), ({}, "/index")):
        token = manager.enter_from_headers(headers, path=path)
        assert manager.current() is None
        manager.reset(token)


def test_lane_rules_of_another_app_are_ignored() -> None:
    manager = LaneManager(use_otel=False)
    d = directory([GRAY, BASE], service=CALLEE, local_labels={"app": "other"}, lanes=manager)
    d.update_lanes([lane(GRAY_LANE)])
    token = manager.enter_from_headers({"X-User-Id": "12345"}, path="/index")
    assert manager.current() is None
    manager.reset(token)


def test_scenario_18_incoming_lane_is_forwarded_unchanged_and_falls_back_to_base() -> None:
    manager = LaneManager(use_otel=False)
    d = directory([BASE, instance("blue", app=CALLEE, tag="blue")], service=CALLEE, lanes=manager)
    token = manager.enter_from_headers([(b"x-opensergo-traffic", b"Gray"), (b"baggage", b"userId=7")])
    try:
        outbound = {"baggage": "userId=7"}
        manager.inject(outbound)
        assert outbound == {LANE_HEADER: "Gray", "baggage": "userId=7,x-opensergo-traffic=Gray"}
        assert {d.choose(CALLEE).name for _ in range(10)} == {"base"}  # no gray instance: untagged
    finally:
        manager.reset(token)


def test_scenario_19_colour_by_node() -> None:
    manager = LaneManager(use_otel=False)
    d = directory(
        [GRAY, BASE], service=CALLEE, local_labels={"app": "spring-cloud-a", "tag": "gray"}, lanes=manager
    )
    d.update_lanes([lane(GRAY_LANE)])
    token = manager.enter_from_headers({"accept": "*/*"}, path="/anything")
    try:
        outbound: dict[str, str] = {}
        manager.inject(outbound)
        assert outbound[LANE_HEADER] == "Gray"
        assert {d.choose(CALLEE).name for _ in range(10)} == {"gray"}
    finally:
        manager.reset(token)
    # Outside any request (a background job on the gray node) the node lane applies too.
    assert manager.current_name() == "Gray"


def test_first_colouring_wins() -> None:
    manager = LaneManager(use_otel=False)
    d = directory(
        [GRAY, BASE], service=CALLEE, local_labels={"app": "spring-cloud-a", "tag": "gray"}, lanes=manager
    )
    d.update_lanes([lane(GRAY_LANE)])
    token = manager.enter_from_headers({"x-opensergo-traffic": "Blue", "X-User-Id": "12345"}, path="/index")
    assert manager.current_name() == "Blue"
    manager.reset(token)
    # An outbound request that already carries a lane keeps it.
    with manager.use("Gray"):
        outbound = {LANE_HEADER: "Blue"}
        assert manager.inject(outbound) == LaneMark("Blue")
        assert outbound == {LANE_HEADER: "Blue", "baggage": "x-opensergo-traffic=Blue"}


def test_header_beats_baggage_and_baggage_alone_works() -> None:
    manager = LaneManager(use_otel=False)
    assert manager.extract(
        {"X-OpenSergo-Traffic": "Gray", "baggage": "x-opensergo-traffic=Blue"}
    ) == LaneMark("Gray")
    assert manager.extract({"baggage": "a=1, x-opensergo-traffic = Blue ;prop=1"}) == LaneMark("Blue")
    assert manager.extract({"baggage": "a=1"}) is None
    assert manager.extract([(b"baggage", b"a=1"), (b"baggage", b"x-opensergo-traffic=Red")]) == LaneMark(
        "Red"
    )


def test_custom_trace_id_baggage_key() -> None:
    manager = LaneManager(use_otel=False)
    d = directory([GRAY, BASE], service=CALLEE, local_labels={"app": "spring-cloud-a"}, lanes=manager)
    d.update_lanes([lane({**GRAY_LANE, "traceIdBaggage": "lane"})])
    assert manager.extract({"baggage": "lane=Gray"}) == LaneMark("Gray", "lane")
    token = manager.enter_from_headers({"X-User-Id": "12345"}, path="/index")
    outbound: dict[str, str] = {}
    manager.inject(outbound)
    assert outbound == {LANE_HEADER: "Gray", "baggage": "lane=Gray"}
    manager.reset(token)


def test_baggage_helpers() -> None:
    assert parse_baggage("k1=v1;p, k2 = a%20b ,bad, =x") == {"k1": "v1", "k2": "a b"}
    assert merge_baggage(None, "x-opensergo-traffic", "Gray") == "x-opensergo-traffic=Gray"
    assert merge_baggage("a=1,x-opensergo-traffic=Blue;p,b=2", "x-opensergo-traffic", "Gray") == (
        "a=1,b=2,x-opensergo-traffic=Gray"
    )


def test_lane_routing_is_case_insensitive_and_falls_back() -> None:
    manager = LaneManager(use_otel=False)
    d = directory([instance("g", app=CALLEE, tag="GRAY"), BASE], service=CALLEE, lanes=manager)
    with manager.use("gray"):
        assert {d.choose(CALLEE).name for _ in range(5)} == {"g"}
    with manager.use("blue"):
        assert {d.choose(CALLEE).name for _ in range(5)} == {"base"}
    # Only tagged instances: unlaned traffic uses them rather than failing.
    only_tagged = directory([GRAY], service=CALLEE, lanes=manager)
    assert only_tagged.choose(CALLEE).name == "gray"
    # An explicit lane argument beats the context.
    assert d.choose(CALLEE, lane=LaneMark("gray")).name == "g"
    assert d.choose(CALLEE, lane=None).name == "base"


def test_lane_routing_can_be_disabled() -> None:
    manager = LaneManager(use_otel=False)
    d = directory([GRAY, BASE], service=CALLEE, lanes=manager, lane_routing=False)
    assert {d.choose(CALLEE).name for _ in range(10)} == {"gray", "base"}


def test_lane_applies_within_the_routed_subset() -> None:
    manager = LaneManager(use_otel=False)
    v2_gray = instance("v2-gray", app=CALLEE, version="v2", tag="gray")
    v2 = instance("v2", app=CALLEE, version="v2")
    v1 = instance("v1", app=CALLEE, version="v1")
    d = directory([v1, v2, v2_gray], service=CALLEE, lanes=manager)
    d.update_routers(
        CALLEE, [simple_router([{"route": [{"destination": {"host": CALLEE, "subset": "v2"}}]}], host=CALLEE)]
    )
    assert {d.choose(CALLEE).name for _ in range(10)} == {"v2"}
    with manager.use("Gray"):
        assert {d.choose(CALLEE).name for _ in range(10)} == {"v2-gray"}


async def test_lane_is_inherited_by_tasks_and_copied_contexts() -> None:
    manager = LaneManager(use_otel=False)

    async def inner() -> str | None:
        await asyncio.sleep(0)
        return manager.current_name()

    with manager.use("Gray"):
        assert await asyncio.create_task(inner()) == "Gray"
        seen: list[str | None] = []
        context = contextvars.copy_context()
        thread = threading.Thread(target=lambda: seen.append(context.run(manager.current_name)))
        thread.start()
        thread.join()
        assert seen == ["Gray"]
    assert await asyncio.create_task(inner()) is None


def test_opentelemetry_baggage_is_set_and_read() -> None:
    from opentelemetry import baggage as otel_baggage  # the otel extra: installed by make test
    from opentelemetry import context as otel_context

    manager = LaneManager()
    token = manager.enter_from_headers({"x-opensergo-traffic": "Gray"})
    try:
        assert otel_baggage.get_baggage("x-opensergo-traffic") == "Gray"
    finally:
        manager.reset(token)
    assert otel_baggage.get_baggage("x-opensergo-traffic") is None
    # Baggage extracted by an OpenTelemetry propagator alone is honoured.
    otoken = otel_context.attach(otel_baggage.set_baggage("x-opensergo-traffic", "Blue"))
    try:
        assert manager.current_name() == "Blue"
        token = manager.enter_from_headers({})
        assert manager.current_name() == "Blue"
        manager.reset(token)
    finally:
        otel_context.detach(otoken)


def test_grpc_metadata_injection() -> None:
    manager = LaneManager(use_otel=False)
    with manager.use("Gray"):
        items, mark = manager.outbound_metadata([("baggage", "a=1"), ("x-b", "2")])
    assert mark == LaneMark("Gray")
    assert items == [("x-b", "2"), (LANE_HEADER, "Gray"), ("baggage", "a=1,x-opensergo-traffic=Gray")]
    assert manager.outbound_metadata(None) == ([], None)


def test_module_level_functions_use_the_default_manager() -> None:
    token = lanes.enter("Gray")
    try:
        assert lanes.current_name() == "Gray"
        assert lanes.default_manager().current_name() == "Gray"
        headers: dict[str, str] = {}
        lanes.inject(headers)
        assert headers[LANE_HEADER] == "Gray"
    finally:
        lanes.reset(token)
    assert lanes.current() is None or lanes.current_name() != "Gray"


def test_enter_from_headers_accepts_the_query_string_in_the_path() -> None:
    manager = LaneManager(use_otel=False)
    d = directory([GRAY, BASE], service=CALLEE, local_labels={"app": "a"}, lanes=manager)
    d.update_lanes(
        [
            lane(
                {
                    "selector": {"app": "a"},
                    "rules": {"traffic": {"http": {"queryParams": {"user": {"exact": "7"}}}}},
                    "lane": {"name": "Gray"},
                }
            )
        ]
    )
    token = manager.enter_from_headers({}, path="/x?user=7")
    assert manager.current_name() == "Gray"
    manager.reset(token)
    token = manager.enter_from_headers({}, path="/x", query={"user": "7"})
    assert manager.current_name() == "Gray"
    manager.reset(token)
    assert SimpleRequest("GET", "/x?user=7").query("user") == "7"
