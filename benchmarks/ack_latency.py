"""Time from `apply` (REST PUT) until N subscribers have ACKed the new version.

Runs a real control-plane process and N SDK clients (asyncio, one process) over loopback, then
applies ROUNDS updates one after another. Latency per round = the latest server-side ACK time
minus the time just before the PUT. Usage: python benchmarks/ack_latency.py [N] [ROUNDS]
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from opensergo.client import OpenSergoClient, Snapshot  # noqa: E402
from tests.helpers import ControlPlaneProcess  # noqa: E402

KIND = "fault-tolerance.opensergo.io/v1alpha1/RateLimitStrategy"
PATH = "/apis/fault-tolerance.opensergo.io/v1alpha1/namespaces/default/ratelimitstrategies/bench"


def body(threshold: int) -> dict[str, object]:
    return {
        "apiVersion": "fault-tolerance.opensergo.io/v1alpha1",
        "kind": "RateLimitStrategy",
        "metadata": {"name": "bench", "labels": {"app": "bench-app"}},
        "spec": {"threshold": threshold, "statDurationSeconds": 1},
    }


async def measure(cp: ControlPlaneProcess, subscribers: int, rounds: int, tmp: Path) -> list[float]:
    clients = [
        OpenSergoClient(cp.grpc_address, app="bench-app", snapshot=Snapshot(tmp / str(i)), heartbeat=None)
        for i in range(subscribers)
    ]
    for c in clients:
        c.subscribe(KIND)
    await asyncio.gather(*(c.astart() for c in clients))
    latencies = []
    try:
        async with httpx.AsyncClient(base_url=cp.http_url) as http:
            for n in range(1, rounds + 1):
                started = time.time()
                version = int((await http.put(PATH, json=body(n))).json()["metadata"]["resourceVersion"])
                while True:
                    await asyncio.sleep(0.005)
                    items = (await http.get("/api/v1/clients", params={"connected": "true"})).json()["items"]
                    subscriptions = [s for c in items for s in c["subscriptions"]]
                    acks = [s["ackedAt"] for s in subscriptions if s["ackedVersion"] == version]
                    if len(acks) == subscribers:
                        break
                latencies.append(max(acks) - started)
                print(f"\r{n}/{rounds} rounds", end="", file=sys.stderr, flush=True)
        print(file=sys.stderr)
    finally:
        await asyncio.gather(*(c.astop() for c in clients))
    return latencies


def main() -> None:
    subscribers = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    with tempfile.TemporaryDirectory() as tmp:
        logs = Path(tmp) / "logs"
        logs.mkdir()
        cp = ControlPlaneProcess(Path(tmp) / "data", logs)
        cp.start()
        try:
            latencies = asyncio.run(measure(cp, subscribers, rounds, Path(tmp)))
        finally:
            cp.stop()
    ms = sorted(x * 1000 for x in latencies)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    print(
        f"apply -> {subscribers} subscribers ACKed, {rounds} rounds: median {statistics.median(ms):.1f} ms,"
        f" p99 {p99:.1f} ms, min {ms[0]:.1f} ms, max {ms[-1]:.1f} ms"
    )


if __name__ == "__main__":
    main()
