"""Auth against a real control plane: tokens and roles, 401/403, the CLI's OPENSERGO_TOKEN, the
dashboard's cookie session with CSRF, auth on by default beyond loopback, and secrets that are
never shown or logged but still reach the data planes."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from opensergo.client import Heartbeat, OpenSergoClient, Snapshot
from tests.helpers import ControlPlaneProcess, run_cli, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

FT = "fault-tolerance.opensergo.io/v1alpha1"
DB = "database.opensergo.io/v1alpha1"
TOKENS = {
    "tokens": [
        {"name": "ops", "token": "ops-token-123", "roles": {"*": "admin"}},
        {"name": "reader", "token": "reader-token-123", "roles": {"*": "viewer"}},
        {"name": "team-a", "token": "team-a-token-123", "roles": {"team-a": "editor"}},
    ]
}
RULE = f"""\
apiVersion: {FT}
kind: RateLimitStrategy
metadata:
  name: rl
  labels: {{app: foo-app}}
spec:
  threshold: 10
  statDuration: "1s"
"""
SECRET = "Sup3r-S3cret-pw"


@pytest.fixture
def secured(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[ControlPlaneProcess]:
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(yaml.safe_dump(TOKENS))
    logs = tmp_path / "logs"
    logs.mkdir()
    cp = ControlPlaneProcess(
        tmp_path / "data", logs, ["--allow-loopback", "--auth", "on", "--auth-tokens", str(tokens)]
    )
    cp.start()
    yield cp
    cp.stop()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(cp.logs())


def cli(*args: str, token: str | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, env={"OPENSERGO_TOKEN": token} if token else None, stdin=stdin)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_roles_and_status_codes(secured: ControlPlaneProcess) -> None:
    base = f"{secured.http_url}/apis/{FT}/namespaces/default/ratelimitstrategies"
    body: dict[str, Any] = yaml.safe_load(RULE)
    assert httpx.get(f"{secured.http_url}/healthz").status_code == 200
    assert httpx.get(base).status_code == 401
    assert httpx.put(f"{base}/rl", json=body).status_code == 401
    assert httpx.put(f"{base}/rl", json=body, headers=auth("reader-token-123")).status_code == 403
    assert httpx.put(f"{base}/rl", json=body, headers=auth("team-a-token-123")).status_code == 403
    assert httpx.put(f"{base}/rl", json=body, headers=auth("ops-token-123")).status_code == 201
    assert httpx.get(f"{base}/rl", headers=auth("reader-token-123")).status_code == 200
    assert httpx.delete(f"{base}/rl", headers=auth("reader-token-123")).status_code == 403
    team = base.replace("/default/", "/team-a/")
    assert httpx.put(f"{team}/rl", json=body, headers=auth("team-a-token-123")).status_code == 201
    assert httpx.get(f"{secured.http_url}/metrics").status_code == 401
    metrics = httpx.get(f"{secured.http_url}/metrics", headers=auth("reader-token-123"))
    assert metrics.status_code == 200 and "opensergo_connected_clients" in metrics.text


def test_cli_sends_opensergo_token(secured: ControlPlaneProcess, tmp_path: Path) -> None:
    path = tmp_path / "rule.yaml"
    path.write_text(RULE)
    server = ["--server", secured.http_url]
    result = cli("apply", "-f", str(path), *server)
    assert result.returncode != 0 and "OPENSERGO_TOKEN" in result.stderr
    result = cli("apply", "-f", str(path), *server, token="reader-token-123")
    assert result.returncode != 0 and "viewer" in result.stderr
    result = cli("apply", "-f", str(path), *server, token="ops-token-123")
    assert result.returncode == 0, result.stderr
    result = cli("get", "ratelimitstrategies", *server, token="reader-token-123")
    assert result.returncode == 0 and "rl" in result.stdout


def test_dashboard_session_needs_csrf_for_writes(secured: ControlPlaneProcess) -> None:
    base = f"{secured.http_url}/apis/{FT}/namespaces/default/ratelimitstrategies"
    with httpx.Client(base_url=secured.http_url) as browser:
        assert browser.post("/api/v1/login", json={"token": "wrong"}).status_code == 401
        login = browser.post("/api/v1/login", json={"token": "ops-token-123"})
        assert login.status_code == 200
        csrf = login.json()["csrfToken"]
        assert browser.get(base).status_code == 200
        yaml_headers = {"content-type": "application/yaml"}
        assert browser.put(f"{base}/rl", content=RULE, headers=yaml_headers).status_code == 403
        saved = browser.put(f"{base}/rl", content=RULE, headers={**yaml_headers, "X-CSRF-Token": csrf})
        assert saved.status_code == 201
        cross = browser.put(
            f"{base}/rl",
            content=RULE,
            headers={**yaml_headers, "X-CSRF-Token": csrf, "Origin": "https://evil.test"},
        )
        assert cross.status_code == 403
        browser.post("/api/v1/logout")
        assert browser.get(base).status_code == 401


def test_removing_a_token_ends_its_sessions(secured: ControlPlaneProcess, tmp_path: Path) -> None:
    base = f"{secured.http_url}/apis/{FT}/namespaces/default/ratelimitstrategies"
    with httpx.Client(base_url=secured.http_url) as reader, httpx.Client(base_url=secured.http_url) as ops:
        assert reader.post("/api/v1/login", json={"token": "reader-token-123"}).status_code == 200
        assert ops.post("/api/v1/login", json={"token": "ops-token-123"}).status_code == 200
        assert reader.get(base).status_code == 200 and ops.get(base).status_code == 200
        assert reader.get("/api/v1/whoami").json()["user"]["name"] == "reader"
        # The operator removes the reader's token from the file (reloaded when it changes).
        tokens = tmp_path / "tokens.yaml"
        kept = {"tokens": [t for t in TOKENS["tokens"] if t["name"] != "reader"]}
        tokens.write_text(yaml.safe_dump(kept))
        stat = tokens.stat()
        os.utime(tokens, ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))  # surely a change
        # The file is looked at again at most once a second: the session signed with it ends then.
        wait_until(lambda: reader.get(base).status_code == 401, timeout=5, what="the reader's session ended")
        assert reader.get("/api/v1/whoami").json() == {"authEnabled": True, "authenticated": False}
        assert ops.get(base).status_code == 200  # other tokens' sessions go on
        assert httpx.get(base, headers=auth("reader-token-123")).status_code == 401


def test_auth_is_on_by_default_beyond_loopback(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    cp = ControlPlaneProcess(tmp_path / "data", logs, ["--allow-loopback", "--host", "0.0.0.0"])
    cp.start()
    try:
        url = f"{cp.http_url}/apis/{FT}/namespaces/default/ratelimitstrategies"
        assert httpx.get(url).status_code == 401
        token = (tmp_path / "data" / "admin-token").read_text().strip()
        assert httpx.get(url, headers=auth(token)).status_code == 200
        assert token not in cp.logs()
    finally:
        cp.stop()


def test_secrets_are_never_shown_or_logged(secured: ControlPlaneProcess, tmp_path: Path) -> None:
    endpoint = {
        "apiVersion": DB,
        "kind": "DatabaseEndpoint",
        "metadata": {"name": "orders-db", "labels": {"app": "shop"}},
        "spec": {
            "database": {
                "MySQL": {"url": "jdbc:mysql://db:3306/orders", "username": "app", "password": SECRET}
            }
        },
    }
    base = f"{secured.http_url}/apis/{DB}/namespaces/default/databaseendpoints"
    ops = auth("ops-token-123")
    created = httpx.post(base, json=endpoint, headers=ops)
    assert created.status_code == 201 and SECRET not in created.text
    shown = httpx.get(f"{base}/orders-db", headers=ops).json()
    assert shown["spec"]["database"]["MySQL"]["password"] == "******"
    shown["spec"]["database"]["MySQL"]["username"] = "app2"
    assert httpx.put(f"{base}/orders-db", json=shown, headers=ops).status_code == 200
    for path in ("", "/orders-db", "/orders-db/history"):
        assert SECRET not in httpx.get(base + path, headers=ops).text
    result = cli(
        "get",
        "databaseendpoint",
        "orders-db",
        "-o",
        "yaml",
        "--server",
        secured.http_url,
        token="ops-token-123",
    )
    assert result.returncode == 0 and SECRET not in result.stdout and "******" in result.stdout

    # The data plane still receives the real password (the redacted edit kept it).
    client = OpenSergoClient(
        secured.grpc_address,
        app="shop",
        snapshot=Snapshot(tmp_path / "snap"),
        heartbeat=Heartbeat(interval=None),
        token="ops-token-123",  # the gRPC port has auth too
    )
    received: list[Any] = []
    client.subscribe(f"{DB}/DatabaseEndpoint", callback=lambda rules, version: received.extend(rules))
    client.start()
    try:
        wait_until(lambda: received, timeout=15, what="the DatabaseEndpoint push")
        mysql = received[-1].spec.database.MySQL
        assert mysql.password == SECRET and mysql.username == "app2"
    finally:
        client.stop()
    assert SECRET not in secured.logs()
