"""Cluster flow control figures (`make bench`).

1. Token decisions per second the token service sustains: one client stream pipelining lease
   requests to a real control-plane process over loopback (and, for reference, the decision
   function alone in-process).
2. Latency a guarded call adds, p50 and p99, with a Global rate limit (tokens leased from the real
   control plane) beside the same limit in Local mode, at a load well under the threshold.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import grpc
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from opensergo.client.tokens import TokenClient  # noqa: E402
from opensergo.controlplane.snapshots import SnapshotCache  # noqa: E402
from opensergo.controlplane.store.base import EventType, StoredObject, WatchEvent  # noqa: E402
from opensergo.controlplane.tokens import GlobalLimits  # noqa: E402
from opensergo.governance import Engine  # noqa: E402
from opensergo.proto.flowcontrol.v1 import token_pb2 as tk  # noqa: E402
from opensergo.proto.flowcontrol.v1 import token_pb2_grpc as tk_grpc  # noqa: E402
from opensergo.spec.loader import parse_documents  # noqa: E402
from tests.helpers import ControlPlaneProcess  # noqa: E402

FT = "fault-tolerance.opensergo.io/v1alpha1"


def rules(mode: str, threshold: int) -> str:
    return f"""
apiVersion: {FT}
kind: RateLimitStrategy
metadata: {{name: rl, labels: {{app: bench}}}}
spec: {{metricType: RequestAmount, limitMode: {mode}, threshold: {threshold}, statDurationSeconds: 1}}
---
apiVersion: {FT}
kind: FaultToleranceRule
metadata: {{name: rule, labels: {{app: bench}}}}
spec: {{targets: [{{targetResourceName: "GET:/x"}}], strategies: [{{name: rl, kind: RateLimitStrategy}}]}}
"""


KEY = ("default", "bench", "GET:/x", "rl")


def in_process_decisions(seconds: float = 1.0) -> float:
    cache = SnapshotCache()
    for i, obj in enumerate(parse_documents(rules("Global", 10**9)), start=1):
        kind = f"{FT}/{obj.kind}"
        stored = StoredObject(kind, obj.namespace, obj.name, obj.to_dict(), i)
        cache.apply(WatchEvent(EventType.ADDED, stored, i))
    limits = GlobalLimits(cache)
    n = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for _ in range(1000):
            limits.lease(KEY, 1)
        n += 1000
    return n / seconds


async def stream_decisions(address: str, seconds: float = 3.0, batch: int = 1) -> float:
    """Lease decisions per second over one stream, ``batch`` requests per message, 4 messages in
    flight. batch=1 is the worst case (one decision per message)."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = tk_grpc.TokenServiceStub(channel)  # type: ignore[no-untyped-call]
        queue: asyncio.Queue[tk.TokenBatch] = asyncio.Queue()

        async def requests():  # type: ignore[no-untyped-def]
            while True:
                yield await queue.get()

        key = tk.FlowKey(namespace=KEY[0], app=KEY[1], resource=KEY[2], strategy=KEY[3])
        message = tk.TokenBatch(
            requests=[tk.TokenRequest(id=i, key=key, lease=tk.Lease(count=1)) for i in range(batch)]
        )
        for _ in range(4):
            queue.put_nowait(message)
        answered = 0
        started = time.perf_counter()
        async for answers in stub.Connect(requests()):
            answered += len(answers.responses)
            if time.perf_counter() - started >= seconds:
                break
            queue.put_nowait(message)
        return answered / (time.perf_counter() - started)


def guard_latencies(engine: Engine, calls: int, rate: float) -> list[float]:
    """Per-call entry+exit time (µs) at ``rate`` calls per second."""
    out = []
    interval = 1.0 / rate
    next_at = time.perf_counter()
    for _ in range(calls):
        t0 = time.perf_counter_ns()
        engine.entry("GET:/x").exit()
        out.append((time.perf_counter_ns() - t0) / 1000)
        next_at += interval
        delay = next_at - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    return out


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))]


def main() -> None:
    print(f"token decisions, decision function alone (in-process): {in_process_decisions():,.0f}/s")
    with tempfile.TemporaryDirectory() as tmp:
        logs = Path(tmp) / "logs"
        logs.mkdir()
        cp = ControlPlaneProcess(Path(tmp) / "data", logs)
        cp.start()
        try:
            for obj in parse_documents(rules("Global", 10**9)):
                plural = "ratelimitstrategies" if obj.kind == "RateLimitStrategy" else "faulttolerancerules"
                url = f"{cp.http_url}/apis/{FT}/namespaces/default/{plural}/{obj.name}"
                httpx.put(url, json=obj.to_dict()).raise_for_status()
            for batch in (1, 16, 64):
                rate = asyncio.run(stream_decisions(cp.grpc_address, batch=batch))
                print(f"token decisions over one gRPC stream, {batch:>2} per message: {rate:,.0f}/s")

            calls, load = 3000, 1000.0
            local = Engine()
            local.set_rules(parse_documents(rules("Local", 100_000)))
            local_us = guard_latencies(local, calls, load)
            tokens = TokenClient([cp.grpc_address], client_id="bench").start()
            while not tokens.usable:
                time.sleep(0.01)
            glob = Engine()
            glob.set_token_source(tokens)
            glob.set_rules(parse_documents(rules("Global", 100_000)))
            time.sleep(0.2)
            global_us = guard_latencies(glob, calls, load)
            tokens.stop()
        finally:
            cp.stop()
    print(f"guard latency at {load:.0f} calls/s ({calls} calls): entry+exit, µs")
    print(f"  {'mode':<8}{'p50':>8}{'p99':>8}{'mean':>8}")
    for name, values in (("Local", local_us), ("Global", global_us)):
        print(f"  {name:<8}{pct(values, 0.5):>8.2f}{pct(values, 0.99):>8.2f}{statistics.mean(values):>8.2f}")
    print(f"  Global / Local p50: {pct(global_us, 0.5) / pct(local_us, 0.5):.2f}x (target <= 2x)")


if __name__ == "__main__":
    main()
