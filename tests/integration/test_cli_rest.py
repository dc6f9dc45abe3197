"""The CLI and the REST API against a real control plane process."""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.helpers import ControlPlaneProcess, run_cli, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

FT = "fault-tolerance.opensergo.io/v1alpha1"
RULES = f"""\
apiVersion: {FT}
kind: RateLimitStrategy
metadata:
  name: rl
  labels: {{app: foo-app}}
spec:
  metricType: RequestAmount
  limitMode: Local
  threshold: 10
  statDuration: "1s"
---
apiVersion: {FT}
kind: FaultToleranceRule
metadata:
  name: rule
  labels: {{app: foo-app}}
spec:
  targets: [{{targetResourceName: "GET:/foo"}}]
  strategies: [{{name: rl, kind: RateLimitStrategy}}]
"""


def run(*args: str, server: str | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    extra = ["--server", server] if server else []
    return run_cli(*args, *extra, stdin=stdin)


def test_validate_is_offline_and_names_file_document_and_field(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(RULES)
    result = run("validate", "-f", str(good))
    assert result.returncode == 0, result.stderr
    assert "ratelimitstrategy.fault-tolerance.opensergo.io/rl valid" in result.stdout

    bad = tmp_path / "bad.yaml"
    bad.write_text(RULES.replace("threshold: 10", "threshold: -1"))
    result = run("validate", "-f", str(bad))
    assert result.returncode != 0
    assert "bad.yaml" in result.stderr
    assert "document 0" in result.stderr
    assert "spec.threshold" in result.stderr


def test_apply_get_delete_round_trip(control_plane: ControlPlaneProcess, tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    server = control_plane.http_url

    result = run("apply", "-f", str(path), "--dry-run", server=server)
    assert result.returncode == 0, result.stderr
    assert "(dry run)" in result.stdout
    assert httpx.get(f"{server}/apis/{FT}/namespaces/default/ratelimitstrategies").json()["items"] == []

    result = run("apply", "-f", str(tmp_path), server=server)  # a directory
    assert result.returncode == 0, result.stderr
    assert "ratelimitstrategy.fault-tolerance.opensergo.io/rl created" in result.stdout
    assert "faulttolerancerule.fault-tolerance.opensergo.io/rule created" in result.stdout

    result = run("get", "ratelimitstrategies", server=server)
    assert result.returncode == 0 and "rl" in result.stdout and "foo-app" in result.stdout
    result = run("get", "RateLimitStrategy", "rl", "-o", "yaml", server=server)
    obj = yaml.safe_load(result.stdout)
    assert obj["spec"]["threshold"] == 10 and obj["spec"]["statDuration"] == "1s"
    result = run("get", "faulttolerancerule", "-o", "json", server=server)
    assert json.loads(result.stdout)["items"][0]["metadata"]["name"] == "rule"

    result = run("delete", "-f", str(path), server=server)
    assert result.returncode == 0, result.stderr
    result = run("get", "ratelimitstrategy", "rl", server=server)
    assert result.returncode != 0 and "not found" in result.stderr

    result = run("delete", "ratelimitstrategy", "rl", server=server)
    assert result.returncode != 0 and "not found" in result.stderr


def test_cli_errors_are_clear(control_plane: ControlPlaneProcess) -> None:
    result = run("get", "nosuchkind", server=control_plane.http_url)
    assert result.returncode != 0 and "nosuchkind" in result.stderr
    result = run("get", "ratelimitstrategies", server="http://127.0.0.1:1")
    assert result.returncode != 0 and "cannot reach the control plane" in result.stderr
    result = run("apply", "-f", "-", server=control_plane.http_url, stdin="kind: [unclosed")
    assert result.returncode != 0 and "<stdin>" in result.stderr


def test_rest_status_codes_and_openapi(control_plane: ControlPlaneProcess) -> None:
    base = f"{control_plane.http_url}/apis/{FT}/namespaces/default/ratelimitstrategies"
    obj: dict[str, Any] = yaml.safe_load(RULES.split("---")[0])

    assert httpx.post(base, json=obj).status_code == 201
    conflict = httpx.post(base, json=obj)
    assert conflict.status_code == 409 and conflict.json()["reason"] == "AlreadyExists"

    invalid = dict(obj, spec={**obj["spec"], "threshold": -5})
    response = httpx.put(f"{base}/rl", json=invalid)
    assert response.status_code == 422
    assert response.json()["details"]["causes"][0]["field"] == "spec.threshold"

    # Optimistic concurrency: a PUT carrying a resourceVersion must match the stored one.
    current = httpx.get(f"{base}/rl").json()
    revision = int(current["metadata"]["resourceVersion"])
    update = dict(current, spec={**current["spec"], "threshold": 11})
    stale = dict(update, metadata={**current["metadata"], "resourceVersion": str(revision + 100)})
    assert httpx.put(f"{base}/rl", json=stale).status_code == 409
    ok = httpx.put(f"{base}/rl", json=update)
    assert ok.status_code == 200 and int(ok.json()["metadata"]["resourceVersion"]) > revision

    assert httpx.get(f"{base}/missing").status_code == 404
    assert httpx.get(f"{control_plane.http_url}/apis/nope/v1/namespaces/default/things").status_code == 404
    wrong_ns = httpx.put(f"{base}/rl", json=dict(obj, metadata={**obj["metadata"], "namespace": "other"}))
    assert wrong_ns.status_code == 400

    spec = httpx.get(f"{control_plane.http_url}/openapi.json").json()
    assert "/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}" in spec["paths"]
    assert "/api/v1/clients" in spec["paths"]


def test_rest_watch_streams_events(control_plane: ControlPlaneProcess) -> None:
    base = f"{control_plane.http_url}/apis/{FT}/namespaces/default/ratelimitstrategies"
    events: list[dict[str, Any]] = []

    def consume() -> None:
        with httpx.stream("GET", base, params={"watch": "true", "resourceVersion": "0"}, timeout=30) as r:
            for line in r.iter_lines():
                if line:
                    events.append(json.loads(line))
                if len(events) == 3:
                    return

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    obj: dict[str, Any] = yaml.safe_load(RULES.split("---")[0])
    httpx.put(f"{base}/rl", json=obj)
    httpx.put(f"{base}/rl", json=dict(obj, spec={**obj["spec"], "threshold": 3}))
    httpx.delete(f"{base}/rl")
    thread.join(20)
    wait_until(lambda: len(events) == 3, what="three watch events")
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED"]
    assert events[1]["object"]["spec"]["threshold"] == 3
