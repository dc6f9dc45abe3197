"""100 concurrent subscribers all converge on every change, and every one of them ACKs."""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path

import httpx
import pytest

from opensergo.client import OpenSergoClient, Snapshot
from tests.helpers import ControlPlaneProcess

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

RATE_KIND = "fault-tolerance.opensergo.io/v1alpha1/RateLimitStrategy"
PATH = "/apis/fault-tolerance.opensergo.io/v1alpha1/namespaces/default/ratelimitstrategies/fanout"
SUBSCRIBERS = 100
ROUNDS = 5


def rule(threshold: int) -> dict[str, object]:
    return {
        "apiVersion": "fault-tolerance.opensergo.io/v1alpha1",
        "kind": "RateLimitStrategy",
        "metadata": {"name": "fanout", "labels": {"app": "fanout-app"}},
        "spec": {
            "metricType": "RequestAmount",
            "limitMode": "Local",
            "threshold": threshold,
            "statDurationSeconds": 1,
        },
    }


async def all_acked(http: httpx.AsyncClient, version: int) -> list[float] | None:
    clients = (await http.get("/api/v1/clients", params={"connected": "true"})).json()["items"]
    times = [
        s["ackedAt"]
        for c in clients
        for s in c["subscriptions"]
        if s["kind"] == RATE_KIND and s["app"] == "fanout-app" and s["ackedVersion"] == version
    ]
    return times if len(times) == SUBSCRIBERS else None


async def test_100_subscribers_converge(control_plane: ControlPlaneProcess, tmp_path: Path) -> None:
    clients = [
        OpenSergoClient(control_plane.grpc_address, app="fanout-app", snapshot=Snapshot(tmp_path / f"c{i}"))
        for i in range(SUBSCRIBERS)
    ]
    for c in clients:
        c.subscribe(RATE_KIND)
    await asyncio.gather(*(c.astart() for c in clients))
    latencies = []
    try:
        async with httpx.AsyncClient(base_url=control_plane.http_url) as http:
            for n in range(1, ROUNDS + 1):
                started = time.time()
                response = await http.put(PATH, json=rule(n))
                assert response.status_code in (200, 201), response.text
                version = int(response.json()["metadata"]["resourceVersion"])
                deadline = time.monotonic() + 30
                acked = None
                while acked is None:
                    assert time.monotonic() < deadline, (
                        f"round {n}: not every subscriber ACKed version {version}"
                    )
                    await asyncio.sleep(0.05)
                    acked = await all_acked(http, version)
                latencies.append(max(acked) - started)
                for c in clients:
                    assert [r.spec.threshold for r in c.cache.get(RATE_KIND)] == [n]
    finally:
        await asyncio.gather(*(c.astop() for c in clients))
    median_ms, max_ms = statistics.median(latencies) * 1000, max(latencies) * 1000
    print(f"\napply -> {SUBSCRIBERS} ACKs, {ROUNDS} rounds: median {median_ms:.1f} ms, max {max_ms:.1f} ms")
