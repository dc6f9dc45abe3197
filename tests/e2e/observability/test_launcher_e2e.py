"""The launcher end to end: an unmodified FastAPI service calling an unmodified Flask service over
httpx by service name, every process under ``opensergo-run``, next to a real control plane.

* backend-app v1 runs under gunicorn with two workers (each worker is one instance, both at the
  arbiter's address), v2 under Flask's own server (werkzeug); frontend under uvicorn;
* a header route applied with ``opensergo apply`` changes which backend version answers;
* the lane of a request to the frontend reaches the backend (header and W3C baggage);
* one trace spans both services (the backend's server span is a child of the frontend's client
  span);
* both apps are listed, with their listening addresses and their contracts as endpoints.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import ROOT, ControlPlaneProcess, free_port, wait_until

from .conftest import Launched, api

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

TRACE_ID = "5b8efff798038103d269b633813fc60c"
ROUTER = """\
apiVersion: traffic.opensergo.io/v1alpha1
kind: TrafficRouter
metadata: {name: backend-app, namespace: default, labels: {app: backend-app}}
spec:
  hosts: [backend-app]
  http:
  - match: [{headers: {x-user-tier: {exact: beta}}}]
    route: [{destination: {host: backend-app, subset: v2}}]
  - route: [{destination: {host: backend-app, subset: v1}}]
"""


def test_two_unmodified_services_under_the_launcher(
    tmp_path: Path, cp: ControlPlaneProcess, launched: Launched
) -> None:
    v1_port, v2_port, front_port = free_port(), free_port(), free_port()
    gunicorn = [sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{v1_port}", "backend:app"]
    launched.run("backend-v1", "backend-app", {"version": "v1"}, gunicorn, APP_VERSION="v1")
    launched.run(
        "backend-v2",
        "backend-app",
        {"version": "v2"},
        ["python", "backend.py", str(v2_port)],
        APP_VERSION="v2",
    )
    uvicorn = ["python", "-m", "uvicorn", "frontend:app", "--host", "127.0.0.1", "--port", str(front_port)]
    launched.run("frontend", "frontend", {}, uvicorn)

    # Registration: the addresses the servers listen on, found without configuration; gunicorn's
    # two workers are two instances at the arbiter's address.
    def backend_instances() -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = api(cp, "/api/v1/instances", app="backend-app")["items"]
        return items if len(items) == 3 and all(i["addresses"] for i in items) else []

    instances = wait_until(backend_instances, timeout=90, interval=0.3, what="3 backend instances")
    by_address: dict[str, list[dict[str, Any]]] = {}
    for item in instances:
        by_address.setdefault(item["addresses"][0], []).append(item)
    assert sorted(len(v) for v in by_address.values()) == [1, 2]
    gunicorn_workers = next(v for v in by_address.values() if len(v) == 2)
    assert gunicorn_workers[0]["addresses"] == [f"http://127.0.0.1:{v1_port}"]
    assert gunicorn_workers[0]["pid"] != gunicorn_workers[1]["pid"]
    assert {i["labels"]["version"] for i in gunicorn_workers} == {"v1"}
    wait_until(
        lambda: (
            api(cp, "/api/v1/instances", app="frontend")["items"][0]["addresses"]
            == [f"http://127.0.0.1:{front_port}"]
        ),
        timeout=60,
        interval=0.3,
        what="the frontend's address",
    )

    front = httpx.Client(base_url=f"http://127.0.0.1:{front_port}", timeout=10)

    def backend_version(**headers: str) -> str:
        response = front.get("/call/1", headers=headers)
        response.raise_for_status()
        return str(response.json()["backend"]["version"])

    wait_until(
        lambda: backend_version() in ("v1", "v2"), timeout=60, interval=0.3, what="the frontend answering"
    )

    # A header route applied by CLI: beta users get v2, everyone else v1.
    (tmp_path / "router.yaml").write_text(ROUTER)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "opensergo.cli",
            "apply",
            "-f",
            str(tmp_path / "router.yaml"),
            "--server",
            cp.http_url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    assert done.returncode == 0, done.stderr
    wait_until(
        lambda: backend_version(**{"x-user-tier": "beta"}) == "v2" and backend_version() == "v1",
        timeout=30,
        interval=0.2,
        what="the route applied",
    )
    assert {backend_version() for _ in range(6)} == {"v1"}
    assert {backend_version(**{"x-user-tier": "beta"}) for _ in range(6)} == {"v2"}

    # The lane of the inbound request travels to the backend.
    backend = front.get("/call/2", headers={"x-opensergo-traffic": "gray"}).json()["backend"]
    assert backend["lane"] == "gray"
    assert "x-opensergo-traffic=gray" in backend["baggage"]

    # One trace across both services.
    traceparent = f"00-{TRACE_ID}-1111111111111111-01"
    assert (
        front.get("/call/3", headers={"traceparent": traceparent, "x-user-tier": "beta"}).status_code == 200
    )

    def both_services() -> dict[str, Any] | None:
        try:
            trace: dict[str, Any] = api(cp, f"/api/v1/traces/{TRACE_ID}")
        except httpx.HTTPStatusError:
            return None
        apps = {s["app"] for s in trace["spans"] if s["kind"] == "server"}
        return trace if {"frontend", "backend-app"} <= apps else None

    trace = wait_until(both_services, timeout=30, interval=0.3, what="a trace across both services")
    spans = trace["spans"]
    [front_server] = [s for s in spans if s["app"] == "frontend" and s["kind"] == "server"]
    [back_server] = [s for s in spans if s["app"] == "backend-app" and s["kind"] == "server"]
    [client] = [s for s in spans if s["app"] == "frontend" and s["kind"] == "client"]
    assert front_server["parentSpanId"] == "1111111111111111"
    assert back_server["parentSpanId"] == client["spanId"]
    assert client["attributes"]["opensergo.route.subset"] == "v2"
    assert client["attributes"]["opensergo.route.host"] == "backend-app"
    assert back_server["attributes"]["opensergo.resource"] == "GET:/hello/<user_id>"
    assert front_server["attributes"]["opensergo.resource"] == "GET:/call/{user_id}"
    assert trace["summary"]["apps"] == ["default/backend-app", "default/frontend"]

    # Both apps listed, with their contracts as endpoints.
    names = {item["app"] for item in api(cp, "/api/v1/apps")["items"]}
    assert {"frontend", "backend-app"} <= names

    def endpoints(app: str) -> set[str]:
        return {e["resource"] for e in api(cp, f"/api/v1/apps/default/{app}/endpoints")["items"]}

    wait_until(
        lambda: {"GET:/call/{user_id}"} <= endpoints("frontend"), timeout=30, what="frontend endpoints"
    )
    wait_until(
        lambda: {"GET:/hello/<user_id>", "POST:/orders"} <= endpoints("backend-app"),
        timeout=30,
        what="backend endpoints",
    )
    contracts = api(cp, "/api/v1/apps/default/backend-app/contracts")
    assert contracts["versions"] and all(
        v["instances"] >= 1 for v in contracts["versions"] if v["hash"] in contracts["current"]
    )
    front_contract = api(cp, "/api/v1/apps/default/frontend/endpoints")["items"]
    call = next(e for e in front_contract if e["resource"] == "GET:/call/{user_id}")
    assert call["outputTypes"] == ["Greeting"] and call["inputTypes"]
