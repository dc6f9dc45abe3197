"""TrafficRouter timeout, retries, fault injection, mirror, rewrite, redirect and direct responses in
the SDK's outbound integrations, and outlier detection in its load balancer."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from opensergo.governance.routing import Instance, LaneManager, ServiceDirectory
from opensergo.governance.routing.outlier import OutlierSettings, record_outcome
from opensergo.governance.routing.resilience import CallPolicy
from opensergo.integrations.httpx import AsyncRoutingTransport, RoutingTransport
from opensergo.integrations.requests import routing_session
from opensergo.spec.resilience import route_policy
from opensergo.spec.traffic import HTTPRoute
from tests.helpers import wait_until

from .helpers import SERVICE, directory, simple_router, workload

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]


def provider(name: str, port: int = 8001, **labels: str) -> Instance:
    return Instance(SERVICE, name, [("127.0.0.1", port, "http")], labels, 100, name)


def routed(http: dict[str, Any], *instances: Instance, vw: dict[str, Any] | None = None) -> ServiceDirectory:
    return directory(
        list(instances) or [provider("a")],
        [simple_router([http])],
        [workload(vw)] if vw else [],
        lanes=LaneManager(use_otel=False),
    )


class Script:
    """An inner httpx transport answering from a list of statuses, recording every request."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.seen: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        # A copy: a retry sends the same request object again, with another URL.
        self.seen.append(httpx.Request(request.method, request.url, headers=request.headers))
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return httpx.Response(status, json={"host": request.url.host, "port": request.url.port})


def client(d: ServiceDirectory, script: Script) -> httpx.Client:
    return httpx.Client(transport=RoutingTransport(d, httpx.MockTransport(script)))


def test_retries_on_the_listed_conditions_and_stop_when_attempts_are_spent() -> None:
    d = routed({"route": [{"destination": {"host": SERVICE}}], "retries": {"attempts": 2, "retryOn": "5xx"}})
    script = Script(503, 500, 200)
    assert client(d, script).get(f"http://{SERVICE}/x").status_code == 200
    assert len(script.seen) == 3
    script = Script(503)
    assert client(d, script).get(f"http://{SERVICE}/x").status_code == 503
    assert len(script.seen) == 3  # 1 try + 2 retries
    # 4xx is not in 5xx; 409 only with retriable-4xx; listed codes retry too.
    script = Script(404, 200)
    assert client(d, script).get(f"http://{SERVICE}/x").status_code == 404
    d = routed(
        {
            "route": [{"destination": {"host": SERVICE}}],
            "retries": {"attempts": 1, "retryOn": "retriable-4xx,429"},
        }
    )
    for status in (409, 429):
        script = Script(status, 200)
        assert client(d, script).get(f"http://{SERVICE}/x").status_code == 200


def test_default_retry_on_is_istios() -> None:
    d = routed({"route": [{"destination": {"host": SERVICE}}], "retries": {"attempts": 1}})
    script = Script(503, 200)  # connect-failure,refused-stream,503
    assert client(d, script).get(f"http://{SERVICE}/x").status_code == 200
    script = Script(500, 200)
    assert client(d, script).get(f"http://{SERVICE}/x").status_code == 500


def test_retry_goes_to_a_new_pick_of_the_pool() -> None:
    d = routed(
        {"route": [{"destination": {"host": SERVICE}}], "retries": {"attempts": 1, "retryOn": "5xx"}},
        provider("a", 8001),
        provider("b", 8002),
    )
    script = Script(503, 200)
    client(d, script).get(f"http://{SERVICE}/x")
    assert {r.url.port for r in script.seen} == {8001, 8002}  # round robin moved on


def test_fault_abort_and_delay() -> None:
    d = routed(
        {
            "route": [{"destination": {"host": SERVICE}}],
            "fault": {"abort": {"httpStatus": 418, "percentage": {"value": 100}}},
        }
    )
    script = Script(200)
    response = client(d, script).get(f"http://{SERVICE}/x")
    assert (response.status_code, response.text) == (418, "fault filter abort")
    assert script.seen == []  # never called
    d = routed({"route": [{"destination": {"host": SERVICE}}], "fault": {"delay": {"fixedDelay": "200ms"}}})
    started = time.monotonic()
    assert client(d, Script(200)).get(f"http://{SERVICE}/x").status_code == 200
    assert time.monotonic() - started >= 0.19
    d = routed(
        {
            "route": [{"destination": {"host": SERVICE}}],
            "fault": {"abort": {"httpStatus": 503, "percentage": {"value": 0}}},
        }
    )
    assert client(d, Script(200)).get(f"http://{SERVICE}/x").status_code == 200


def test_redirect_direct_response_and_rewrite() -> None:
    d = directory(
        [provider("a")],
        [
            simple_router(
                [
                    {
                        "match": [{"uri": {"prefix": "/old"}}],
                        "redirect": {"uri": "/new", "redirectCode": 308},
                    },
                    {
                        "match": [{"uri": {"exact": "/gone"}}],
                        "directResponse": {"status": 410, "body": {"string": "bye"}},
                    },
                    {
                        "match": [{"uri": {"prefix": "/api/"}}],
                        "route": [{"destination": {"host": SERVICE}}],
                        "rewrite": {"uri": "/v2/", "authority": "backend"},
                    },
                ]
            )
        ],
        lanes=LaneManager(use_otel=False),
    )
    script = Script(200)
    http = client(d, script)
    response = http.get(f"http://{SERVICE}/old?q=1")
    assert response.status_code == 308 and response.headers["location"] == f"http://{SERVICE}/new?q=1"
    response = http.get(f"http://{SERVICE}/gone")
    assert (response.status_code, response.text) == (410, "bye")
    assert script.seen == []
    http.get(f"http://{SERVICE}/api/users?id=3")
    [seen] = script.seen
    assert seen.url.path == "/v2/users" and seen.url.query == b"id=3"
    assert seen.headers["host"] == "backend"


def test_mirror_sends_a_copy_with_a_shadow_host() -> None:
    shadow = Instance("shadow", "s", [("127.0.0.1", 9009, "http")], {}, 100, "s")
    d = routed(
        {
            "route": [{"destination": {"host": SERVICE}}],
            "mirror": {"host": "shadow"},
            "mirrorPercentage": {"value": 100},
        }
    )
    d.update_instances("shadow", [shadow])
    script = Script(200)
    assert client(d, script).get(f"http://{SERVICE}/x").status_code == 200
    wait_until(lambda: len(script.seen) == 2, timeout=5, what="the mirrored copy")
    mirrored = next(r for r in script.seen if r.url.port == 9009)
    assert mirrored.headers["host"] == f"{SERVICE}-shadow"


def test_call_policy_timeouts_with_a_clock() -> None:
    now = [100.0]
    http = HTTPRoute.model_validate(
        {
            "route": [{"destination": {"host": "x"}}],
            "timeout": "1s",
            "retries": {"attempts": 5, "perTryTimeout": "300ms", "retryOn": "5xx"},
        }
    )
    call = CallPolicy(route_policy(http), clock=lambda: now[0], rng=lambda: 0.5)
    assert call.try_timeout() == pytest.approx(0.3)
    assert call.retry_after_failure("timeout") == pytest.approx(0.0125)  # half of 25 ms
    now[0] += 0.8
    assert call.try_timeout() == pytest.approx(0.2)  # cut to what the route timeout leaves
    now[0] += 0.2
    assert call.expired() and call.retry_after_status(503) is None  # no retry past the deadline


# The slow upstream answers after 3 s: a 200 ms timeout that waited for it would take that long;
# the bound below (1.5 s) only needs to tell the two apart, with room for a loaded machine.
SLOW_S = 3.0
TIMED_OUT_WITHIN_S = 1.5


class _Slow(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    calls = 0

    def do_GET(self) -> None:
        type(self).calls += 1
        if self.path.startswith("/slow"):
            time.sleep(SLOW_S)
        body = json.dumps({"path": self.path}).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def slow_server() -> Iterator[int]:
    _Slow.calls = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Slow)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def test_route_timeout_answers_504_in_httpx_and_requests(slow_server: int) -> None:
    rule = {"route": [{"destination": {"host": SERVICE}}], "timeout": "200ms"}
    d = routed(rule, provider("a", slow_server))
    with httpx.Client(transport=RoutingTransport(d)) as http:
        started = time.monotonic()
        response = http.get(f"http://{SERVICE}/slow")
        assert (response.status_code, response.text) == (504, "upstream request timeout")
        assert time.monotonic() - started < TIMED_OUT_WITHIN_S
        assert http.get(f"http://{SERVICE}/fast").status_code == 200
    session = routing_session(d)
    started = time.monotonic()
    response = session.get(f"http://{SERVICE}/slow")
    assert response.status_code == 504 and time.monotonic() - started < TIMED_OUT_WITHIN_S
    assert session.get(f"http://{SERVICE}/fast").json() == {"path": "/fast"}


def test_per_try_timeout_is_retried(slow_server: int) -> None:
    rule = {
        "route": [{"destination": {"host": SERVICE}}],
        "retries": {"attempts": 2, "perTryTimeout": "100ms", "retryOn": "5xx"},
    }
    d = routed(rule, provider("a", slow_server))
    with httpx.Client(transport=RoutingTransport(d)) as http:
        assert http.get(f"http://{SERVICE}/slow").status_code == 504
    wait_until(lambda: _Slow.calls == 3, timeout=3, what="three tries")


async def test_async_transport_applies_the_policy() -> None:
    d = routed(
        {
            "route": [{"destination": {"host": SERVICE}}],
            "retries": {"attempts": 2, "retryOn": "gateway-error"},
        }
    )
    script = Script(502, 504, 200)
    async with httpx.AsyncClient(transport=AsyncRoutingTransport(d, httpx.MockTransport(script))) as http:
        assert (await http.get(f"http://{SERVICE}/x")).status_code == 200
    assert len(script.seen) == 3


def test_outlier_detection_ejects_and_readmits() -> None:
    vw = {
        "host": SERVICE,
        "trafficPolicy": {
            "outlierDetection": {
                "consecutiveGatewayErrors": 2,
                "baseEjectionTime": "1s",
                "maxEjectionPercent": 50,
            }
        },
    }
    bad, good = provider("bad", 8001), provider("good", 8002)
    d = routed({"route": [{"destination": {"host": SERVICE}}]}, bad, good, vw=vw)
    statuses = {8001: 502, 8002: 200}

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(statuses[request.url.port or 0])

    http = httpx.Client(transport=RoutingTransport(d, httpx.MockTransport(answer)))
    seen = [http.get(f"http://{SERVICE}/x").status_code for _ in range(10)]
    assert seen.count(502) == 2  # two gateway errors in a row eject the bad instance
    assert seen[-4:] == [200] * 4
    assert bad.outlier is not None and bad.outlier.ejections == 1


def test_outlier_max_ejection_percent_and_multiplier() -> None:
    settings = OutlierSettings(consecutive_5xx=1, base_ejection=10, max_ejection_percent=10)
    pool = [provider(f"p{i}") for i in range(4)]
    now = [0.0]
    assert record_outcome(pool[0], pool, settings, status=500, clock=lambda: now[0])
    # 10 % of 4 is 0.4: no second ejection while one is out (one is always allowed).
    assert not record_outcome(pool[1], pool, settings, status=500, clock=lambda: now[0])
    now[0] = 11.0
    assert record_outcome(pool[0], pool, settings, failed=True, clock=lambda: now[0])
    assert pool[0].outlier is not None and pool[0].outlier.ejected_until == pytest.approx(31.0)  # 2 x 10 s
