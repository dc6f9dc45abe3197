"""Finding 4 on the OTLP receiver of a real control plane: series are bounded per app, drops are
counted in /metrics, and a non-finite value cannot break the dashboard's metric views."""

from __future__ import annotations

import math
import re
import time
from pathlib import Path

import grpc
import httpx
import pytest
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as ms_grpc

from opensergo.observability import names
from tests.helpers import ControlPlaneProcess, wait_until
from tests.unit.dashboard.otlp_builders import DELTA, counter, gauge, request

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def dropped(cp: ControlPlaneProcess, reason: str) -> float:
    text = httpx.get(f"{cp.http_url}/metrics").text
    match = re.search(rf'^opensergo_otlp_dropped_points_total\{{reason="{reason}"\}} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


def series_count(cp: ControlPlaneProcess) -> int:
    return int(httpx.get(f"{cp.http_url}/api/v1/overview").json()["metricSeries"])


def test_one_export_cannot_create_unbounded_series(control_plane: ControlPlaneProcess) -> None:
    """One 60 KB export with 1,000 label values added 198 MiB (1,000 series of an hour each).
    Now an app holds at most 200 series (--otlp-max-series-per-app); the rest are dropped and
    counted, and the exporter is told (partial_success)."""
    cp = control_plane
    assert cp.proc is not None
    now = time.time()
    points = [({names.RESOURCE: f"GET:/r/{i}"}, 1.0) for i in range(1000)]
    export = request([counter(names.PASSED, points, now - 1, now, DELTA)], app="greedy")
    assert export.ByteSize() < 70_000
    before = rss_kib(cp.proc.pid)
    with grpc.insecure_channel(cp.grpc_address) as channel:
        answer = ms_grpc.MetricsServiceStub(channel).Export(export, timeout=30)
    grown_mib = (rss_kib(cp.proc.pid) - before) / 1024
    assert grown_mib < 100, grown_mib
    assert series_count(cp) == 200
    assert answer.partial_success.rejected_data_points == 800
    assert dropped(cp, "app_series") == 800


def test_non_finite_values_are_rejected(control_plane: ControlPlaneProcess) -> None:
    """A NaN gauge made /api/v1/metrics/apps return 500 for everyone (int(NaN) of a breaker
    state; an infinite concurrency cannot be written as JSON either)."""
    cp = control_plane
    now = time.time()
    resource = {names.RESOURCE: "GET:/x"}
    with grpc.insecure_channel(cp.grpc_address) as channel:
        stub = ms_grpc.MetricsServiceStub(channel)
        stub.Export(request([counter(names.PASSED, [(resource, 5)], now - 1, now, DELTA)], app="nan-app"))
        answer = stub.Export(
            request(
                [
                    gauge(names.BREAKER_STATE, [({**resource, names.STRATEGY: "cb"}, math.nan)], now),
                    gauge(names.CONCURRENCY, [(resource, math.inf)], now),
                ],
                app="nan-app",
            )
        )
    apps = httpx.get(f"{cp.http_url}/api/v1/metrics/apps")
    assert apps.status_code == 200, apps.text
    assert answer.partial_success.rejected_data_points == 2
    wait_until(lambda: dropped(cp, "non_finite") == 2, timeout=5, what="two non-finite points counted")
    series = httpx.get(
        f"{cp.http_url}/api/v1/metrics/series", params={"namespace": "default", "app": "nan-app"}
    )
    assert series.status_code == 200 and [r["resource"] for r in series.json()["resources"]] == ["GET:/x"]
