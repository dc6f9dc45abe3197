"""Cost of one routing decision beside one plain loopback httpx call, in the same run.

A routing decision = TrafficRouter match + subset (VirtualWorkload labels) + fallback check +
lane split + load balancer, on a request view over a real ``httpx.Request`` (what the httpx
transport does per request). The reference is a plain ``httpx.Client.get`` to a local
``http.server`` on loopback (keep-alive). Also shown: a whole routed call through
``RoutingTransport`` against the same server, beside the plain call.

Every figure is the best of 5 runs, GC off while timing; the plain and routed calls run in
interleaved rounds so both see the same machine load.

Usage: python benchmarks/routing.py [DECISIONS] [CALLS]. Target: decision <= 5 % of the call.
"""

from __future__ import annotations

import gc
import random
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from opensergo.governance.routing import Instance, ServiceDirectory  # noqa: E402
from opensergo.integrations.httpx import HttpxRequestView, RoutingTransport  # noqa: E402
from opensergo.spec import parse_object  # noqa: E402

SERVICE = "service-provider"
ROUTER = """
apiVersion: traffic.opensergo.io/v1alpha1
kind: TrafficRouter
metadata: {name: service-provider, labels: {app: service-provider}}
spec:
  hosts: [service-provider]
  http:
  - match:
    - headers: {x-canary: {exact: "1"}}
      uri: {prefix: /admin}
    - queryParams: {beta: {exact: "true"}}
    route:
    - destination: {host: service-provider, subset: v3}
  - match: [{headers: {tag: {exact: v2}}}]
    route:
    - destination: {host: service-provider, subset: v2, fallback: {host: service-provider, subset: v1}}
  - route:
    - {destination: {host: service-provider, subset: v1}, weight: 90}
    - destination: {host: service-provider, subset: v2, fallback: {host: service-provider, subset: v1}}
      weight: 10
"""
WORKLOAD = """
apiVersion: traffic.opensergo.io/v1alpha1
kind: VirtualWorkload
metadata: {name: service-provider, labels: {app: service-provider}}
spec:
  host: service-provider
  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}
  subsets:
  - {name: v1, labels: {version: v1}}
  - name: v2
    labels: {version: v2}
    trafficPolicy: {loadBalancer: {simple: LEAST_REQUEST}}
  - {name: v3, labels: {version: v3}}
"""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        body = b'{"ok":true}'
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def per_op(fn: Callable[[], object], n: int, repeats: int = 5) -> float:
    """Best of ``repeats`` runs of the mean seconds per call of ``fn`` (GC off while timing).

    The best run is the least disturbed one on a shared machine.
    """
    results = []
    for _ in range(repeats):
        gc.collect()
        gc.disable()
        try:
            started = time.perf_counter()
            for _ in range(n):
                fn()
            results.append((time.perf_counter() - started) / n)
        finally:
            gc.enable()
    return min(results)


def build_directory(port: int) -> ServiceDirectory:
    # The process-wide lane manager, as in production (it also reads OpenTelemetry baggage).
    directory = ServiceDirectory(local_labels={"app": "bench"}, rng=random.Random(1))
    instances = [
        Instance(
            SERVICE,
            f"{version}-{n}",
            [("127.0.0.1", port, "http")],
            {"version": version},
            100,
            f"{version}-{n}",
        )
        for version in ("v1", "v2", "v3")
        for n in range(3)
    ]
    directory.update_instances(SERVICE, instances)
    directory.update_routers(SERVICE, [parse_object(yaml.safe_load(ROUTER))])  # type: ignore[list-item]
    directory.update_workloads(SERVICE, [parse_object(yaml.safe_load(WORKLOAD))])  # type: ignore[list-item]
    return directory


def main() -> None:
    decisions = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    calls = int(sys.argv[2]) if len(sys.argv) > 2 else 2_000
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    directory = build_directory(port)

    scenarios = {
        "header match (2nd rule -> v2)": httpx.Request(
            "GET", f"http://{SERVICE}/api/items", headers={"tag": "v2"}
        ),
        "catch-all weighted 90/10": httpx.Request("GET", f"http://{SERVICE}/api/items?page=2"),
        "1st rule, OR block 2 (query)": httpx.Request("GET", f"http://{SERVICE}/x?beta=true"),
    }
    try:
        with httpx.Client() as plain, httpx.Client(transport=RoutingTransport(directory)) as routed:
            url = f"http://127.0.0.1:{port}/api/items"
            for _ in range(200):  # warm up connections and code paths
                plain.get(url)
                routed.get(f"http://{SERVICE}/api/items")
            plain_runs, routed_runs = [], []
            for _ in range(5):
                plain_runs.append(per_op(lambda: plain.get(url), calls // 5, repeats=1))
                routed_runs.append(
                    per_op(lambda: routed.get(f"http://{SERVICE}/api/items"), calls // 5, repeats=1)
                )
            plain_call = min(plain_runs)
            routed_call = min(routed_runs)
            print(f"plain loopback httpx call        {plain_call * 1e6:9.1f} us")
            extra = routed_call - plain_call
            print(
                f"routed httpx call (transport)    {routed_call * 1e6:9.1f} us   "
                f"({extra * 1e6:+.1f} us, {100 * extra / plain_call:+.1f} %; noisy on a loaded machine)"
            )
            worst = 0.0
            for name, request in scenarios.items():
                cost = per_op(
                    lambda request=request: directory.choose(SERVICE, HttpxRequestView(request)), decisions
                )
                worst = max(worst, cost)
                share = 100 * cost / plain_call
                print(f"routing decision: {name:30s} {cost * 1e6:6.2f} us = {share:5.2f} % of the call")
            verdict = "OK" if worst <= 0.05 * plain_call else "ABOVE TARGET"
            share = 100 * worst / plain_call
            print(f"worst decision = {share:.2f} % of a plain call (target <= 5 %): {verdict}")
    finally:
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    main()
