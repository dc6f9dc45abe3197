"""Cluster flow control figures (`make bench`).

1. Token decisions per second the token service sustains: one client stream pipelining lease
   requests to a real control-plane process over loopback (and, for reference, the decision
   function alone in-process).
2. Latency a guarded call adds (entry + exit), p50 and p99, with a Global rate limit (tokens leased
   from the real control plane) beside the same limit in Local mode:
   - at a load well under the threshold, where leases are taken ahead of need and no call waits;
   - at twice the threshold, where the cluster's budget runs out every bucket, so the client's
     leases are exhausted and refilled over real round trips (and about half the calls refused).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from opensergo.client.tokens import TokenClient  # noqa: E402
from opensergo.controlplane.snapshots import SnapshotCache  # noqa: E402
from opensergo.controlplane.store.base import EventType, StoredObject, WatchEvent  # noqa: E402
from opensergo.controlplane.tokens import GlobalLimits  # noqa: E402
from opensergo.governance import BlockedError, Engine  # noqa: E402
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


@dataclass
class Latencies:
    """Entry + exit times (µs) of the calls of one row, and what happened to them."""

    us: list[float] = field(default_factory=list)
    passed: int = 0
    blocked: int = 0


class CountingSource:
    """The token client, counting lease requests (each one a round trip to the control plane)."""

    def __init__(self, client: TokenClient) -> None:
        self.client = client
        self.timeout = client.timeout
        self.leases = 0

    @property
    def usable(self) -> bool:
        return self.client.usable

    def mark_slow(self, seconds: float = 1.0) -> None:
        self.client.mark_slow(seconds)

    def request(
        self, key: tuple[str, str, str, str], op: str, count: int, bucket: int = 0
    ) -> concurrent.futures.Future[tk.TokenResponse]:
        if op == "lease":
            self.leases += 1
        return self.client.request(key, op, count, bucket)


def guard_latencies(engine: Engine, calls: int, rate: float) -> Latencies:
    """Per-call entry+exit time (µs) at ``rate`` calls per second (refused calls included)."""
    out = Latencies()
    interval = 1.0 / rate
    next_at = time.perf_counter()
    for _ in range(calls):
        t0 = time.perf_counter_ns()
        try:
            engine.entry("GET:/x").exit()
            out.passed += 1
        except BlockedError:
            out.blocked += 1
        out.us.append((time.perf_counter_ns() - t0) / 1000)
        next_at += interval
        delay = next_at - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    return out


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))]


def global_engine(source: CountingSource, threshold: int) -> Engine:
    engine = Engine()
    engine.set_token_source(source)
    engine.set_rules(parse_documents(rules("Global", threshold)))
    time.sleep(0.2)  # the first lease is taken when the rule arrives
    return engine


def put_rules(cp: ControlPlaneProcess, threshold: int) -> None:
    """The control plane's copy of the Global rule (its threshold is the cluster's budget)."""
    for obj in parse_documents(rules("Global", threshold)):
        plural = "ratelimitstrategies" if obj.kind == "RateLimitStrategy" else "faulttolerancerules"
        url = f"{cp.http_url}/apis/{FT}/namespaces/default/{plural}/{obj.name}"
        httpx.put(url, json=obj.to_dict()).raise_for_status()


Row = tuple[str, str, Latencies, int | None]  # name, what it does, latencies, lease round trips


def latency_rows(cp: ControlPlaneProcess, calls: int, load: float) -> list[Row]:
    local = Engine()
    local.set_rules(parse_documents(rules("Local", 100_000)))
    rows: list[Row] = [
        (
            "Local 100,000/s",
            "a local sliding window (2 x 500 ms), no network",
            guard_latencies(local, calls, load),
            None,
        )
    ]
    client = TokenClient([cp.grpc_address], client_id="bench").start()
    try:
        while not client.usable:
            time.sleep(0.01)
        put_rules(cp, 100_000)
        ahead = CountingSource(client)
        measured = guard_latencies(global_engine(ahead, 100_000), calls, load)
        does = "tokens spent from leases taken ahead of need (refilled in the background at half)"
        rows.append(("Global 100,000/s", does, measured, ahead.leases))
        threshold = int(load / 2)
        put_rules(cp, threshold)
        time.sleep(0.5)  # the token service picks the new budget up from its snapshot cache
        exhausted = CountingSource(client)
        measured = guard_latencies(global_engine(exhausted, threshold), calls, load)
        does = (
            f"offered 2x the threshold: the cluster's {threshold // 10} tokens per 100 ms bucket run out "
            "every bucket, so leases are exhausted and refilled over real round trips"
        )
        rows.append((f"Global {threshold:,}/s", does, measured, exhausted.leases))
    finally:
        client.stop()
    return rows


def print_rows(rows: list[Row], calls: int, load: float) -> None:
    print()
    print(f"guard latency at {load:,.0f} calls/s ({calls} calls per row): entry + exit, µs")
    print(f"  {'row':<18}{'p50':>8}{'p99':>9}{'mean':>8}{'passed':>8}{'refused':>8}{'leases':>8}")
    for name, _, measured, leases in rows:
        us = measured.us
        print(
            f"  {name:<18}{pct(us, 0.5):>8.2f}{pct(us, 0.99):>9.2f}{statistics.mean(us):>8.2f}"
            f"{measured.passed:>8}{measured.blocked:>8}{'-' if leases is None else leases:>8}"
        )
    for name, does, _, _ in rows:
        print(f"  {name}: {does}")
    local, ahead = rows[0][2].us, rows[1][2].us
    print(f"  Global (ahead of need) / Local p50: {pct(ahead, 0.5) / pct(local, 0.5):.2f}x (target <= 2x)")


def main() -> None:
    print(f"token decisions, decision function alone (in-process): {in_process_decisions():,.0f}/s")
    calls, load = 3000, 1000.0
    with tempfile.TemporaryDirectory() as tmp:
        logs = Path(tmp) / "logs"
        logs.mkdir()
        cp = ControlPlaneProcess(Path(tmp) / "data", logs)
        cp.start()
        try:
            put_rules(cp, 10**9)
            for batch in (1, 16, 64):
                rate = asyncio.run(stream_decisions(cp.grpc_address, batch=batch))
                print(f"token decisions over one gRPC stream, {batch:>2} per message: {rate:,.0f}/s")
            rows = latency_rows(cp, calls, load)
        finally:
            cp.stop()
    print_rows(rows, calls, load)


if __name__ == "__main__":
    main()
