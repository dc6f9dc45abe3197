"""The reverse direction: our Python SDK consumes pushes shaped exactly as the upstream Go control plane
sends them (protocol.md §2.3-2.5, §3.4), from a scripted grpc.aio server (see upstream_server.py for
why it is scripted).

Covered: status 1 on the initial push with response_id = request_id; status 200 and an empty
response_id on change pushes; upstream-form payloads with the Go control plane's conversion bugs
(RateLimit enums 0, UNKNOWN time units, durations x10, slow_condition -1, FaultToleranceRule
without a name, deprecated Envoy header matchers); NACK replies; and versions that restart from 1
after a control-plane restart on the same port with the same identifier.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from envoy.config.core.v3 import extension_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from google.protobuf import any_pb2, wrappers_pb2

from opensergo.client import Backoff, OpenSergoClient, Snapshot
from opensergo.proto.common.v1 import common_pb2
from opensergo.proto.fault_tolerance.v1 import fault_tolerance_pb2 as ft
from opensergo.proto.router.v1 import route_fallback_pb2
from opensergo.proto.transport.v1 import protocol_pb2 as pb
from opensergo.spec.base import Resource
from tests.interop.expected import APP, BREAKER, CONCURRENCY, RATE, ROUTER, ROUTER_APP, RULE, THROTTLING
from tests.interop.upstream_server import ScriptedControlPlane, ScriptedStream, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

FQDN = "service-provider.default.svc.cluster.local"


def pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # prefix type.googleapis.com/, as the Go control plane
    return packed


# --- payloads exactly as the Go control plane's translateCrdToProto produces them -----------------


def upstream_dur(text: str) -> int:
    """The Go control plane's dur(): 'ms' x1, 's' x10 (its bug; correct is x1000), 'm' x600."""
    if "ms" in text:
        return int(text.removesuffix("ms"))
    if "s" in text:
        return int(text.removesuffix("s")) * 10
    if "m" in text:
        return int(text.rstrip("minute")) * 600
    raise ValueError(text)


def rate_limit(name: str, threshold: int) -> any_pb2.Any:
    # metricType/limitMode parsed as integers -> always 0; statDurationSeconds copied, unit UNKNOWN
    return pack(
        ft.RateLimitStrategy(
            name=name,
            metric_type=ft.RateLimitStrategy.TYPE_UNKNOWN,
            limit_mode=ft.RateLimitStrategy.MODE_UNKNOWN,
            threshold=threshold,
            stat_duration=1,
            stat_duration_time_unit=common_pb2.UNKNOWN,
        )
    )


def breakers() -> list[any_pb2.Any]:
    slow = ft.CircuitBreakerStrategy(
        name="slow-breaker",
        strategy=ft.CircuitBreakerStrategy.STRATEGY_SLOW_REQUEST_RATIO,
        trigger_ratio=0.6,
        stat_duration=upstream_dur("30s"),  # 300: the wire says 300 with unit UNKNOWN
        recovery_timeout=upstream_dur("5s"),  # 50
        min_request_amount=5,
    )
    slow.slow_condition.max_allowed_rt_millis = upstream_dur("200ms")
    error = ft.CircuitBreakerStrategy(
        name="error-breaker",
        strategy=ft.CircuitBreakerStrategy.STRATEGY_ERROR_REQUEST_RATIO,
        trigger_ratio=0.5,
        stat_duration=upstream_dur("1m"),  # 600
        recovery_timeout=upstream_dur("10s"),  # 100
        min_request_amount=10,
    )
    error.slow_condition.max_allowed_rt_millis = -1  # always present, -1 without slowConditions
    return [pack(slow), pack(error)]


def throttling() -> any_pb2.Any:
    return pack(
        ft.ThrottlingStrategy(
            name="throttling-foo",
            min_interval_millis_of_requests=upstream_dur("20ms"),
            queue_timeout_millis=upstream_dur("1s"),  # 10
        )
    )


def concurrency() -> any_pb2.Any:
    return pack(
        ft.ConcurrencyLimitStrategy(
            name="concurrency-foo", limit_mode=ft.ConcurrencyLimitStrategy.MODE_LOCAL, max_concurrency=8
        )
    )


def rule() -> any_pb2.Any:
    message = ft.FaultToleranceRule(
        targets=[ft.FaultToleranceRule.FaultToleranceRuleTargetRef(target_resource_name="GET:/foo")],
        strategies=[
            ft.FaultToleranceRule.FaultToleranceStrategyRef(name="rate-limit-foo", kind="RateLimitStrategy"),
            ft.FaultToleranceRule.FaultToleranceStrategyRef(
                name="concurrency-foo", kind="ConcurrencyLimitStrategy"
            ),
        ],
    )  # no name and no action: the proto has no name, the CP never sets the action
    return pack(message)


def router() -> any_pb2.Any:
    """The sample TrafficRouter as upstream translates it (protocol.md §4.3): no path specifier,
    deprecated exact_match, inline fallback plugin, cluster names with an empty port segment."""
    fallback = route_fallback_pb2.ClusterFallbackConfig_ClusterConfig(
        RoutingCluster=f"outbound||v2|{FQDN}", FallbackCluster=f"outbound||v1|{FQDN}"
    )
    gray = rc.Route(
        match=rc.RouteMatch(headers=[rc.HeaderMatcher(name="x-mse-tag", exact_match="v2")]),
        route=rc.RouteAction(
            inline_cluster_specifier_plugin=rc.ClusterSpecifierPlugin(
                extension=extension_pb2.TypedExtensionConfig(
                    name="envoy.router.cluster_specifier_plugin.cluster_fallback", typed_config=pack(fallback)
                )
            )
        ),
    )
    canary = rc.Route(
        match=rc.RouteMatch(),
        route=rc.RouteAction(
            weighted_clusters=rc.WeightedCluster(
                clusters=[
                    rc.WeightedCluster.ClusterWeight(
                        name=f"outbound||v1|{FQDN}", weight=wrappers_pb2.UInt32Value(value=90)
                    ),
                    rc.WeightedCluster.ClusterWeight(
                        name=f"outbound||v2|{FQDN}", weight=wrappers_pb2.UInt32Value(value=10)
                    ),
                ]
            )
        ),
    )
    config = route_pb2.RouteConfiguration(
        name="service-provider",
        virtual_hosts=[rc.VirtualHost(name="service-provider", domains=[FQDN], routes=[gray, canary])],
    )
    return pack(config)


# --- fixtures --------------------------------------------------------------------------------------


class Calls:
    """Records what each subscription callback received."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: dict[str, list[tuple[int, list[Resource]]]] = {}

    def callback(self, kind: str) -> Any:
        def record(resources: list[Resource], version: int) -> None:
            with self.lock:
                self.calls.setdefault(kind, []).append((version, list(resources)))

        return record

    def versions(self, kind: str) -> list[int]:
        with self.lock:
            return [v for v, _ in self.calls.get(kind, [])]


@pytest.fixture
def upstream() -> Iterator[ScriptedControlPlane]:
    server = ScriptedControlPlane()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def client(upstream: ScriptedControlPlane, tmp_path: Path) -> Iterator[OpenSergoClient]:
    sdk = OpenSergoClient(
        upstream.endpoint,
        app=APP,
        identifier="py-interop",
        snapshot=Snapshot(tmp_path / "snapshots"),
        heartbeat=None,  # the upstream control plane serves no MetadataService
        backoff=Backoff(initial=0.05, maximum=0.3),
    )
    try:
        yield sdk
    finally:
        sdk.stop()


def answer_to(stream: ScriptedStream, request_id: str, index: int = -1) -> pb.SubscribeRequest:
    answers = [a for a in stream.answers() if a.request_id == request_id]
    assert answers, f"no answer with request_id {request_id!r}: {stream.answers()}"
    return answers[index]


def initial_push(
    upstream: ScriptedControlPlane,
    stream: ScriptedStream,
    kind: str,
    version: int,
    data: list[Any],
    app: str = APP,
) -> pb.SubscribeRequest:
    """Answer the client's subscribe for ``kind`` as upstream does: status 1, response_id = request_id."""
    request = upstream.wait_subscribe(stream, kind)
    upstream.push(
        stream, kind=kind, version=version, data=data, status=1, response_id=request.request_id, app=app
    )
    return request


# --- tests -----------------------------------------------------------------------------------------


def test_upstream_payloads_and_push_shapes(upstream: ScriptedControlPlane, client: OpenSergoClient) -> None:
    calls = Calls()
    for kind in (RULE, RATE, THROTTLING, CONCURRENCY, BREAKER):
        client.subscribe(kind, callback=calls.callback(kind))
    client.subscribe(ROUTER, app=ROUTER_APP, callback=calls.callback(ROUTER))
    client.start()
    stream = upstream.wait_stream()

    initial = {
        RULE: (2, [rule()]),
        RATE: (3, [rate_limit("rate-limit-foo", 10)]),
        THROTTLING: (1, [throttling()]),
        CONCURRENCY: (1, [concurrency()]),
        BREAKER: (4, breakers()),
        ROUTER: (1, [router()]),
    }
    request_ids = {}
    for kind, (version, data) in initial.items():
        app = ROUTER_APP if kind == ROUTER else APP
        request_ids[kind] = initial_push(upstream, stream, kind, version, data, app=app).request_id
    upstream.wait_answer(stream, len(initial))
    for kind, rid in request_ids.items():
        ack = answer_to(stream, rid)
        # ACK with request_id = response_id (= our request id), our identifier, no target
        assert (ack.response_ack, ack.status.code, ack.identifier) == ("ACK", 1, "py-interop"), kind
        assert not ack.HasField("target")
        assert client.version(kind, app=ROUTER_APP if kind == ROUTER else None) == initial[kind][0]

    # What the payloads decode to: what is on the wire, with upstream's UNKNOWNs read as documented
    # (RateLimit: seconds; elsewhere: milliseconds; limit mode: Local).
    (rate,) = client.get(RATE)
    assert rate.name == "rate-limit-foo"
    assert (rate.spec.threshold, rate.spec.limitMode.value, rate.spec.metricType.value) == (
        10,
        "Local",
        "RequestAmount",
    )
    assert rate.spec.stat_duration_millis == 1000
    slow, error = sorted(client.get(BREAKER), key=lambda r: r.name != "slow-breaker")
    assert slow.spec.strategy.value == "SlowRequestRatio" and float(slow.spec.triggerRatio) == 0.6
    assert (slow.spec.statDuration.millis, slow.spec.recoveryTimeout.millis) == (300, 50)  # x10 bug as sent
    assert slow.spec.slowConditions is not None and slow.spec.slowConditions.maxAllowedRt.millis == 200
    assert slow.spec.minRequestAmount == 5
    assert error.spec.strategy.value == "ErrorRequestRatio"
    assert (error.spec.statDuration.millis, error.spec.recoveryTimeout.millis) == (600, 100)
    assert error.spec.slowConditions is None  # -1 means "none"
    (throttle,) = client.get(THROTTLING)
    assert (throttle.spec.minIntervalOfRequests.millis, throttle.spec.queueTimeout.millis) == (20, 10)
    (conc,) = client.get(CONCURRENCY)
    assert (conc.spec.maxConcurrency, conc.spec.limitMode.value) == (8, "Local")
    (ftr,) = client.get(RULE)
    assert ftr.name == "foo-app-rule-0"  # upstream rules have no name: one is derived
    assert [t.targetResourceName for t in ftr.spec.targets] == ["GET:/foo"]
    assert [(s.name, s.kind.value if s.kind else None) for s in ftr.spec.strategies] == [
        ("rate-limit-foo", "RateLimitStrategy"),
        ("concurrency-foo", "ConcurrencyLimitStrategy"),
    ]
    (tr,) = client.get(ROUTER, app=ROUTER_APP)
    spec = tr.to_dict()["spec"]
    gray, canary = spec["http"]
    assert gray["match"] == [{"headers": {"x-mse-tag": {"exact": "v2"}}}]
    (dest,) = gray["route"]
    assert dest["destination"]["subset"] == "v2" and dest["destination"]["fallback"]["subset"] == "v1"
    assert [(r["destination"]["subset"], r["weight"]) for r in canary["route"]] == [("v1", 90), ("v2", 10)]

    # A change push: status 200 and an empty response_id. Applied; the ACK carries request_id "".
    before = len(stream.answers())
    upstream.push(stream, kind=RATE, version=5, data=[rate_limit("rate-limit-foo", 20)], status=200)
    (ack,) = upstream.wait_answer(stream, before + 1)[before:]
    assert (ack.response_ack, ack.status.code, ack.request_id) == ("ACK", 1, "")
    assert [r.spec.threshold for r in client.get(RATE)] == [20]
    assert calls.versions(RATE) == [3, 5]

    # Replies to our requests (ack "NACK" with 4002, ack "ACK" with 1) are not pushes: no answer.
    for ack_flag, code in (("NACK", 4002), ("ACK", 1)):
        upstream.send(
            pb.SubscribeResponse(status=pb.Status(code=code, message="Request is invalid"), ack=ack_flag),
            stream,
        )
    # The next push is answered, and nothing in between was.
    upstream.push(stream, kind=RATE, version=6, data=[rate_limit("rate-limit-foo", 21)], status=200)
    answers = upstream.wait_answer(stream, before + 2)
    assert len(answers) == before + 2 and answers[-1].status.code == 1
    assert client.version(RATE) == 6


def test_versions_restart_after_an_upstream_restart(
    upstream: ScriptedControlPlane, client: OpenSergoClient
) -> None:
    calls = Calls()
    client.subscribe(RATE, callback=calls.callback(RATE))
    client.subscribe(BREAKER, callback=calls.callback(BREAKER))
    client.start()
    stream = upstream.wait_stream()
    initial_push(upstream, stream, RATE, 3, [rate_limit("rate-limit-foo", 10)])
    initial_push(upstream, stream, BREAKER, 4, breakers()[:1])
    upstream.wait_answer(stream, 2)
    upstream.push(stream, kind=RATE, version=5, data=[rate_limit("rate-limit-foo", 20)], status=200)
    upstream.wait_answer(stream, 3)
    assert client.version(RATE) == 5

    # The control plane restarts on the same port. Same host, so the same identifier; its
    # in-memory version counters start again from 1.
    port = upstream.port
    assert port is not None
    upstream.stop()
    wait_for(lambda: not client.connected, 10, "the client to notice the restart")
    upstream.start(port)
    new = upstream.wait_stream(2)
    upstream.wait_subscribe(new, RATE)
    breaker_request = upstream.wait_subscribe(new, BREAKER)

    # RateLimitStrategy: the restarted process's first subscriber of the kind gets no status-1
    # reply, only the reconcile burst: status 200, response_id "", versions 1, 2 as growing lists.
    upstream.push(new, kind=RATE, version=1, data=[rate_limit("rate-limit-foo", 30)], status=200)
    upstream.push(
        new,
        kind=RATE,
        version=2,
        data=[rate_limit("rate-limit-foo", 30), rate_limit("rate-limit-bar", 7)],
        status=200,
    )
    # CircuitBreakerStrategy: another client subscribed the kind first, so this one gets the
    # status-1 reply to its request, with the new counter's version 1 (< cached 4).
    upstream.push(
        new,
        kind=BREAKER,
        version=1,
        data=breakers()[1:],
        status=1,
        response_id=breaker_request.request_id,
    )
    answers = upstream.wait_answer(new, 3)
    assert [(a.response_ack, a.status.code) for a in answers] == [("ACK", 1)] * 3, answers
    wait_for(lambda: client.version(RATE) == 2, 5, "the new baseline")
    assert sorted(r.name for r in client.get(RATE)) == ["rate-limit-bar", "rate-limit-foo"]
    assert [r.name for r in client.get(BREAKER)] == ["error-breaker"]
    assert calls.versions(RATE) == [3, 5, 1, 2]
    assert calls.versions(BREAKER) == [4, 1]

    # Within the new stream versions must not go back: a late, older push is refused (4010).
    upstream.push(new, kind=RATE, version=1, data=[rate_limit("rate-limit-foo", 99)], status=200)
    late = upstream.wait_answer(new, 4)[-1]
    assert (late.response_ack, late.status.code, late.status.message) == ("ACK", 4010, "outdated version")
    assert client.version(RATE) == 2 and sorted(r.spec.threshold for r in client.get(RATE)) == [7, 30]
    # ...and newer ones are applied as usual.
    upstream.push(new, kind=RATE, version=3, data=[rate_limit("rate-limit-foo", 31)], status=200)
    assert upstream.wait_answer(new, 5)[-1].status.code == 1
    wait_for(lambda: client.version(RATE) == 3, 5, "version 3")
    assert calls.versions(RATE) == [3, 5, 1, 2, 3]
