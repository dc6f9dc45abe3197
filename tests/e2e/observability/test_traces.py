"""Traces end to end: a governed FastAPI app (examples/fastapi_app.py, tracing on by default)
exports spans and logs over OTLP to a real control plane, which lists them per app, serves the
waterfall, finds the blocked requests, and forwards everything to a second control plane acting
as the tracing backend (``--otlp-forward``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import (
    ROOT,
    ControlPlaneProcess,
    free_port,
    put_object,
    spawn_python,
    stop_processes,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

APP = "traced-api"
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
TRACEPARENT = f"00-{TRACE_ID}-b7ad6b7169203331-01"
FAST_EXPORT = {"OTEL_BSP_SCHEDULE_DELAY": "100", "OTEL_BLRP_SCHEDULE_DELAY": "100"}


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[ControlPlaneProcess]:
    cp = ControlPlaneProcess(
        tmp_path / "backend", tmp_path, extra_args=("--allow-loopback", "--metrics-history-retention", "0")
    )
    cp.start()
    yield cp
    cp.stop()


@pytest.fixture
def control(tmp_path: Path, backend: ControlPlaneProcess) -> Iterator[ControlPlaneProcess]:
    cp = ControlPlaneProcess(
        tmp_path / "cp", tmp_path, extra_args=("--allow-loopback", "--otlp-forward", backend.grpc_address)
    )
    cp.start()
    yield cp
    cp.stop()


def traces(cp: ControlPlaneProcess, **params: Any) -> list[dict[str, Any]]:
    response = httpx.get(f"{cp.http_url}/api/v1/traces", params={"namespace": "default", **params}, timeout=5)
    response.raise_for_status()
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def rate_limit_zero(resource: str) -> list[dict[str, Any]]:
    meta = {"namespace": "default", "labels": {"app": APP}}
    return [
        {
            "apiVersion": "fault-tolerance.opensergo.io/v1alpha1",
            "kind": "RateLimitStrategy",
            "metadata": {"name": "none-allowed", **meta},
            "spec": {
                "metricType": "RequestAmount",
                "limitMode": "Local",
                "threshold": 0,
                "statDuration": "1s",
            },
        },
        {
            "apiVersion": "fault-tolerance.opensergo.io/v1alpha1",
            "kind": "FaultToleranceRule",
            "metadata": {"name": "protect-users", **meta},
            "spec": {
                "targets": [{"targetResourceName": resource}],
                "strategies": [{"name": "none-allowed", "kind": "RateLimitStrategy"}],
            },
        },
    ]


def test_traces_reach_the_control_plane_and_the_forward_target(
    tmp_path: Path, control: ControlPlaneProcess, backend: ControlPlaneProcess
) -> None:
    port = free_port()
    env = {
        "OPENSERGO_BOOTSTRAP_CONFIG": json.dumps(
            {"endpoint": control.grpc_address, "snapshotDir": str(tmp_path / "snap")}
        ),
        "OPENSERGO_APP": APP,
        **FAST_EXPORT,
    }
    app = spawn_python(
        ROOT / "examples" / "fastapi_app.py", "--port", str(port), log=tmp_path / "app.log", env=env
    )
    try:
        url = f"http://127.0.0.1:{port}"
        status = url + "/opensergo/status"
        wait_until(lambda: httpx.get(status, timeout=1).json().get("connected"), timeout=30, what="connected")
        assert httpx.get(url + "/users/7", headers={"traceparent": TRACEPARENT}, timeout=5).status_code == 200

        # Listed under the app, with the server span's resource; the waterfall has the span.
        found = wait_until(
            # Spans are exported as they end, the server span last: wait until it is in.
            lambda: [t for t in traces(control, app=APP) if t["traceId"] == TRACE_ID and t["resources"]],
            timeout=20,
            what="listed",
        )
        assert found[0]["name"] == "GET /users/{user_id}"
        assert found[0]["resources"] == ["GET:/users/{user_id}"] and not found[0]["blocked"]
        waterfall = httpx.get(f"{control.http_url}/api/v1/traces/{TRACE_ID}", timeout=5).json()
        [server] = [s for s in waterfall["spans"] if s["kind"] == "server"]
        assert server["parentSpanId"] == "b7ad6b7169203331" and server["app"] == APP
        assert server["attributes"]["http.route"] == "/users/{user_id}"
        assert server["attributes"]["opensergo.resource"] == "GET:/users/{user_id}"

        # A blocked request: its trace is found by blocked=true and names the rule.
        for body in rate_limit_zero("GET:/users/{user_id}"):
            assert put_object(control, body).status_code in (200, 201)

        def blocked_now() -> bool:
            return httpx.get(url + "/users/8", timeout=5).status_code == 429

        wait_until(blocked_now, timeout=20, interval=0.1, what="the rate limit applied")
        blocked = wait_until(
            lambda: traces(control, app=APP, blocked="true"), timeout=20, what="a blocked trace"
        )
        assert blocked[0]["blocked"] and blocked[0]["blockedBy"] == ["protect-users"]
        assert all(t["blocked"] for t in blocked)
        assert TRACE_ID not in {t["traceId"] for t in blocked}
        resource_filtered = traces(control, app=APP, resource="GET:/users/{user_id}", blocked="true")
        assert {t["traceId"] for t in resource_filtered} == {t["traceId"] for t in blocked}

        # --otlp-forward: the backend received the same trace.
        wait_until(lambda: any(t["traceId"] == TRACE_ID for t in traces(backend, app=APP)), timeout=20,
                   what="the trace forwarded")  # fmt: skip
    finally:
        stop_processes([app])
