"""``grpc.aio`` client channels under the launcher, with no code change: a grpc.aio "front"
service calls a grpc.aio "greeter" (two versions) by its service name, every process under
``opensergo-run``, next to a real control plane, over loopback.

* the channel is built before governance starts, and still routes once it runs;
* a header route applied with ``opensergo apply`` picks the greeter version;
* the lane of the inbound call reaches the greeter;
* an outbound rate limit on ``/demo.Greeter/Hello`` blocks the front's calls (BlockedError);
* one trace spans both services: the greeter's server span is a child of the front's client
  span, which carries the route's subset.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from tests.helpers import ROOT, ControlPlaneProcess, free_port, run_cli, stop_processes, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

APPS = Path(__file__).parent / "apps"
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
ROUTER = """\
apiVersion: traffic.opensergo.io/v1alpha1
kind: TrafficRouter
metadata: {name: greeter-app, namespace: default, labels: {app: greeter-app}}
spec:
  hosts: [greeter-app]
  http:
  - match: [{headers: {x-user-tier: {exact: beta}}}]
    route: [{destination: {host: greeter-app, subset: v2}}]
  - route: [{destination: {host: greeter-app, subset: v1}}]
"""
GUARD = """\
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: RateLimitStrategy
metadata: {name: hello-rl, namespace: default, labels: {app: front}}
spec: {metricType: RequestAmount, limitMode: Local, threshold: 2, statDuration: 60s}
---
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: FaultToleranceRule
metadata: {name: hello-guard, namespace: default, labels: {app: front}}
spec:
  targets: [{targetResourceName: /demo.Greeter/Hello}]
  strategies: [{name: hello-rl, kind: RateLimitStrategy}]
"""


class Launched:
    def __init__(self, tmp: Path, cp: ControlPlaneProcess) -> None:
        self.tmp = tmp
        self.cp = cp
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    def run(self, name: str, app: str, labels: dict[str, str], *command: str) -> None:
        bootstrap = {"endpoint": self.cp.grpc_address, "snapshotDir": str(self.tmp / f"{name}-snapshot")}
        args = [sys.executable, "-m", "opensergo.launcher", "--app", app]
        for key, value in labels.items():
            args += ["--label", f"{key}={value}"]
        proc = subprocess.Popen(
            [*args, "--", sys.executable, *command],
            cwd=APPS,
            stdout=(self.tmp / f"{name}.log").open("wb"),
            stderr=subprocess.STDOUT,
            env={
                **os.environ,
                "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}",
                "OPENSERGO_BOOTSTRAP_CONFIG": json.dumps(bootstrap),
                "OTEL_BSP_SCHEDULE_DELAY": "100",
            },
        )
        self.procs.append((name, proc))

    def logs(self) -> str:
        return "\n".join(
            f"--- {name} ---\n{(self.tmp / f'{name}.log').read_text(errors='replace')[-6000:]}"
            for name, _ in self.procs
        )


@pytest.fixture
def cp(tmp_path: Path) -> Iterator[ControlPlaneProcess]:
    control = ControlPlaneProcess(
        tmp_path / "cp", tmp_path, extra_args=("--allow-loopback", "--metrics-history-retention", "0")
    )
    control.start()
    yield control
    control.stop()


@pytest.fixture
def launched(tmp_path: Path, cp: ControlPlaneProcess, request: pytest.FixtureRequest) -> Iterator[Launched]:
    apps = Launched(tmp_path, cp)
    yield apps
    stop_processes([p for _, p in apps.procs], timeout=15)
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(apps.logs())
        print(cp.logs())


def api(cp: ControlPlaneProcess, path: str, **params: Any) -> Any:
    response = httpx.get(cp.http_url + path, params=params, timeout=10)
    response.raise_for_status()
    return response.json()


def apply(cp: ControlPlaneProcess, tmp: Path, text: str) -> None:
    path = tmp / f"rules-{len(list(tmp.glob('rules-*')))}.yaml"
    path.write_text(text)
    result = run_cli("apply", "-f", str(path), "-s", cp.http_url)
    assert result.returncode == 0, result.stdout + result.stderr


def test_grpc_aio_channels_are_routed_guarded_and_traced_under_the_launcher(
    tmp_path: Path, cp: ControlPlaneProcess, launched: Launched
) -> None:
    v1, v2, front_port = free_port(), free_port(), free_port()
    launched.run("greeter-v1", "greeter-app", {"version": "v1"}, "greeter.py", "v1", str(v1))
    launched.run("greeter-v2", "greeter-app", {"version": "v2"}, "greeter.py", "v2", str(v2))
    launched.run("front", "front", {}, "front.py", str(front_port))

    def greeters() -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = api(cp, "/api/v1/instances", app="greeter-app")["items"]
        return items if len(items) == 2 and all(i["addresses"] for i in items) else []

    found = wait_until(greeters, timeout=60, interval=0.3, what="two greeter instances")
    assert sorted(a for i in found for a in i["addresses"]) == sorted(
        [f"grpc://127.0.0.1:{v1}", f"grpc://127.0.0.1:{v2}"]
    )

    channel = grpc.insecure_channel(f"127.0.0.1:{front_port}")
    front = channel.unary_unary("/demo.Front/Call")

    def call(*metadata: tuple[str, str]) -> dict[str, Any]:
        answer: dict[str, Any] = json.loads(front(b"", metadata=list(metadata), timeout=10))
        return answer

    def answered() -> dict[str, Any] | None:
        try:
            answer = call()
        except grpc.RpcError:
            return None
        return answer if answer.get("version") in ("v1", "v2") else None

    # Nothing listens on greeter-app:50051: an answer means the call was routed to an instance.
    wait_until(answered, timeout=60, interval=0.3, what="the front answering through the greeter")

    apply(cp, tmp_path, ROUTER)
    wait_until(
        lambda: call(("x-user-tier", "beta")).get("version") == "v2" and call().get("version") == "v1",
        timeout=30,
        interval=0.2,
        what="the header route applied",
    )
    assert {call()["version"] for _ in range(6)} == {"v1"}
    assert {call(("x-user-tier", "beta"))["version"] for _ in range(6)} == {"v2"}

    # The lane of the inbound call travels on (metadata and W3C baggage).
    lane = call(("x-opensergo-traffic", "gray"))
    assert lane["lane"] == "gray"
    assert "x-opensergo-traffic=gray" in lane["baggage"]

    # One trace across both services.
    traceparent = f"00-{TRACE_ID}-2222222222222222-01"
    traced = call(("traceparent", traceparent), ("x-user-tier", "beta"))
    assert traced["traceparent"].startswith(f"00-{TRACE_ID}-")

    def both_services() -> dict[str, Any] | None:
        try:
            trace: dict[str, Any] = api(cp, f"/api/v1/traces/{TRACE_ID}")
        except httpx.HTTPStatusError:
            return None
        apps = {s["app"] for s in trace["spans"] if s["kind"] == "server"}
        return trace if {"front", "greeter-app"} <= apps else None

    trace = wait_until(both_services, timeout=30, interval=0.3, what="a trace across both services")
    spans = trace["spans"]
    [front_server] = [s for s in spans if s["app"] == "front" and s["kind"] == "server"]
    [greeter_server] = [s for s in spans if s["app"] == "greeter-app" and s["kind"] == "server"]
    [client] = [s for s in spans if s["app"] == "front" and s["kind"] == "client"]
    assert front_server["parentSpanId"] == "2222222222222222"
    assert client["parentSpanId"] == front_server["spanId"]
    assert greeter_server["parentSpanId"] == client["spanId"]
    assert client["attributes"]["opensergo.route.subset"] == "v2"
    assert client["attributes"]["opensergo.route.host"] == "greeter-app"

    # An outbound guard on the greeter's method: 2 calls a minute, then BlockedError.
    apply(cp, tmp_path, GUARD)
    blocked = wait_until(
        lambda: (answer := call()).get("error") and answer,
        timeout=30,
        interval=0.1,
        what="a blocked outbound call",
    )
    assert "BlockedError" in blocked["error"], blocked
    assert "blocked by RateLimitStrategy 'hello-rl'" in blocked["detail"]
    assert [call().get("error") is not None for _ in range(3)] == [True] * 3
