"""The REST and dashboard API in process: validation with lines, redaction, history, rollback,
rollout, static pages and auth (401/403/CSRF/cross-origin)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from opensergo.controlplane.api.auth import AuthConfig, Role, TokenRegistry, _Entry
from opensergo.controlplane.api.server import create_app
from opensergo.controlplane.metadata import MetadataRegistry
from opensergo.controlplane.metrics.prometheus import ControlPlaneMetrics
from opensergo.controlplane.metrics.store import MetricStore
from opensergo.controlplane.snapshots import SnapshotCache
from opensergo.controlplane.store.sqlite import SqliteStore
from opensergo.controlplane.transport import TransportService

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]

FT = "fault-tolerance.opensergo.io/v1alpha1"
DB = "database.opensergo.io/v1alpha1"
RL_PATH = f"/apis/{FT}/namespaces/default/ratelimitstrategies"
RL_YAML = """\
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: RateLimitStrategy
metadata:
  name: rl
  labels:
    app: shop
spec:
  threshold: 10
  statDuration: 1s
"""
ENDPOINT: dict[str, Any] = {
    "apiVersion": DB,
    "kind": "DatabaseEndpoint",
    "metadata": {"name": "db", "labels": {"app": "shop"}},
    "spec": {"database": {"MySQL": {"url": "jdbc:mysql://db:3306/x", "username": "u", "password": "s3cret"}}},
}


def entry(name: str, token: str, roles: dict[str, Role]) -> _Entry:
    return _Entry(name, hashlib.sha256(token.encode()).digest(), roles)


async def make_client(tmp_path: Path, auth: AuthConfig | None) -> AsyncIterator[httpx.AsyncClient]:
    store = SqliteStore(tmp_path)
    await store.open()
    snapshots = SnapshotCache()
    ready = asyncio.Event()
    follower = asyncio.create_task(snapshots.follow(store, ready))
    await ready.wait()
    transport = TransportService(snapshots, "osg-test")
    registry = MetadataRegistry(store, allow_loopback=True)
    metric_store = MetricStore(60)
    prom = ControlPlaneMetrics(transport, snapshots, store, registry, metric_store)
    app = create_app(
        store, snapshots, transport, registry, "r1", auth=auth, metric_store=metric_store, prometheus=prom
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://cp.test") as client:
        yield client
    follower.cancel()
    await store.close()


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async for c in make_client(tmp_path, None):
        yield c


@pytest.fixture
async def secured(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    tokens = TokenRegistry(
        entries=[
            entry("admin", "admin-token", {"*": Role.ADMIN}),
            entry("viewer", "viewer-token", {"*": Role.VIEWER}),
            entry("team-a", "team-a-token", {"team-a": Role.EDITOR}),
        ]
    )
    async for c in make_client(tmp_path, AuthConfig(True, tokens)):
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_validate_reports_lines_and_diffs(client: httpx.AsyncClient) -> None:
    bad = RL_YAML.replace("threshold: 10", "threshold: -1")
    result = (await client.post("/api/v1/validate", json={"yaml": bad})).json()
    assert not result["valid"]
    [error] = result["errors"]
    assert error["field"] == "spec.threshold" and error["line"] == 8 and ">= 0" in error["message"]
    assert result["object"]["spec"]["threshold"] == -1  # the form view can still show it

    syntax = (await client.post("/api/v1/validate", json={"yaml": "kind: [oops\n"})).json()
    assert syntax["errors"][0]["message"].startswith("invalid YAML") and syntax["errors"][0]["line"] == 2
    two = (await client.post("/api/v1/validate", json={"yaml": RL_YAML + "---\n" + RL_YAML})).json()
    assert "exactly one object" in two["errors"][0]["message"]
    unknown = (
        await client.post("/api/v1/validate", json={"yaml": RL_YAML.replace("RateLimit", "Rat")})
    ).json()
    assert unknown["errors"][0]["field"] == "kind" and unknown["errors"][0]["line"] == 2
    nameless = (
        await client.post(
            "/api/v1/validate", json={"yaml": "apiVersion: " + FT + "\nkind: RateLimitStrategy\n"}
        )
    ).json()
    assert nameless["errors"][0]["field"] == "metadata.name"

    good = (await client.post("/api/v1/validate", json={"yaml": RL_YAML})).json()
    assert good["valid"] and not good["exists"] and good["canWrite"]
    assert good["path"] == f"{RL_PATH}/rl" and good["diff"][0] == "--- /dev/null"
    assert (
        await client.put(f"{RL_PATH}/rl", content=RL_YAML, headers={"content-type": "application/yaml"})
    ).status_code == 201
    same = (await client.post("/api/v1/validate", json={"yaml": RL_YAML})).json()
    assert same["exists"] and same["unchanged"] and same["diff"] == []
    changed = (await client.post("/api/v1/validate", json={"yaml": RL_YAML.replace("10", "20")})).json()
    assert "-  threshold: 10" in changed["diff"] and "+  threshold: 20" in changed["diff"]
    assert not (await client.get("/api/v1/validate")).is_success


async def test_secrets_are_redacted_and_kept_on_update(client: httpx.AsyncClient) -> None:
    path = f"/apis/{DB}/namespaces/default/databaseendpoints"
    created = await client.post(path, json=ENDPOINT)
    assert created.status_code == 201
    assert created.json()["spec"]["database"]["MySQL"]["password"] == "******"
    shown = (await client.get(f"{path}/db")).json()
    assert "s3cret" not in str(shown)
    assert "s3cret" not in (await client.get(path)).text
    assert "s3cret" not in (await client.get(f"/apis/{DB}/databaseendpoints")).text
    # Writing the redacted object back (with another change) keeps the stored password.
    shown["spec"]["database"]["MySQL"]["username"] = "v"
    updated = await client.put(f"{path}/db", json=shown)
    assert updated.status_code == 200, updated.text
    history = (await client.get(f"{path}/db/history")).json()
    assert "s3cret" not in str(history) and len(history["items"]) == 2
    # ... and the data planes still get the real one: the store has it.
    validate = (await client.post("/api/v1/validate", json={"yaml": "x: 1"})).json()
    assert not validate["valid"]
    # A placeholder with nothing stored behind it is refused.
    new = {**shown, "metadata": {"name": "db2", "labels": {"app": "shop"}}}
    refused = await client.post(path, json=new)
    assert refused.status_code == 422
    assert refused.json()["details"]["causes"][0]["field"] == "spec.database.MySQL.password"


async def test_history_rollback_and_rollout(client: httpx.AsyncClient) -> None:
    yaml_headers = {"content-type": "application/yaml"}
    first = (await client.put(f"{RL_PATH}/rl", content=RL_YAML, headers=yaml_headers)).json()
    second = (
        await client.put(f"{RL_PATH}/rl", content=RL_YAML.replace("10", "30"), headers=yaml_headers)
    ).json()
    history = (await client.get(f"{RL_PATH}/rl/history")).json()
    assert [i["revision"] for i in history["items"]] == [
        int(second["metadata"]["resourceVersion"]),
        int(first["metadata"]["resourceVersion"]),
    ]
    assert history["items"][0]["current"] and not history["items"][1]["current"]
    revision = int(first["metadata"]["resourceVersion"])

    dry = (
        await client.post(f"{RL_PATH}/rl/rollback", params={"dryRun": "All"}, json={"revision": revision})
    ).json()
    assert dry["dryRun"] and "+  threshold: 10" in dry["diff"]
    assert (await client.get(f"{RL_PATH}/rl")).json()["spec"]["threshold"] == 30
    done = await client.post(f"{RL_PATH}/rl/rollback", json={"revision": revision})
    assert done.status_code == 200
    now = (await client.get(f"{RL_PATH}/rl")).json()
    assert now["spec"]["threshold"] == 10
    assert int(now["metadata"]["resourceVersion"]) > int(second["metadata"]["resourceVersion"])
    assert now["metadata"]["generation"] == 3
    stale = await client.post(
        f"{RL_PATH}/rl/rollback",
        json={"revision": revision, "resourceVersion": second["metadata"]["resourceVersion"]},
    )
    assert stale.status_code == 409
    assert (await client.post(f"{RL_PATH}/rl/rollback", json={"revision": 999})).status_code == 404
    assert (await client.post(f"{RL_PATH}/rl/rollback", json={})).status_code == 400
    assert (await client.get(f"{RL_PATH}/nope/history")).status_code == 404

    rollout = (await client.get(f"{RL_PATH}/rl/rollout")).json()
    assert (
        rollout["app"] == "shop"
        and rollout["clients"] == []
        and rollout["version"] == int(now["metadata"]["resourceVersion"])
    )
    rules = (await client.get("/api/v1/rules", params={"app": "shop"})).json()
    assert rules["total"] == 1 and rules["items"][0]["name"] == "rl"
    assert (await client.get("/api/v1/rules", params={"kind": "nosuchkind"})).status_code == 400
    assert (await client.get("/api/v1/rules", params={"q": "zzz"})).json()["total"] == 0


async def test_pages_and_metrics_endpoints(client: httpx.AsyncClient) -> None:
    index = await client.get("/")
    assert index.status_code == 200 and 'src="/ui/js/main.js"' in index.text
    assert "default-src 'self'" in index.headers["content-security-policy"]
    js = await client.get("/ui/js/main.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert js.headers["x-content-type-options"] == "nosniff"
    assert (await client.get("/ui/../app.py")).status_code == 404
    me = (await client.get("/api/v1/whoami")).json()
    assert me == {
        "authEnabled": False,
        "authenticated": True,
        "user": {"name": "anonymous", "roles": {"*": "admin"}},
    }
    assert (await client.get("/metrics")).text.startswith("# HELP")
    series = (await client.get("/api/v1/metrics/series", params={"namespace": "default", "app": "x"})).json()
    assert series["resources"] == []
    assert (await client.get("/api/v1/metrics/apps")).json()["items"] == []
    assert (await client.get("/api/v1/metrics/history", params={"namespace": "default", "app": "x"})).json()[
        "items"
    ] == []
    overview = (await client.get("/api/v1/overview")).json()
    assert overview["apps"] == 0 and overview["namespaces"] == ["default"]
    assert (await client.get("/api/v1/apps/default/nothing")).status_code == 404


async def test_auth_statuses(secured: httpx.AsyncClient) -> None:
    c = secured
    assert (await c.get("/healthz")).status_code == 200
    assert (await c.get("/")).status_code == 200
    assert (await c.get("/api/v1/whoami")).json() == {"authEnabled": True, "authenticated": False}
    denied = await c.get(RL_PATH)
    assert denied.status_code == 401 and denied.headers["www-authenticate"].startswith("Bearer")
    assert (await c.put(f"{RL_PATH}/rl", content=RL_YAML)).status_code == 401
    assert (await c.get(RL_PATH, headers=bearer("wrong"))).status_code == 401
    assert (await c.get(RL_PATH, headers={"Authorization": "Basic x"})).status_code == 401
    assert (await c.get("/metrics")).status_code == 401
    assert (await c.get("/metrics", headers=bearer("viewer-token"))).status_code == 200

    yaml_headers = {"content-type": "application/yaml"}
    viewer_write = await c.put(
        f"{RL_PATH}/rl", content=RL_YAML, headers={**yaml_headers, **bearer("viewer-token")}
    )
    assert viewer_write.status_code == 403 and "viewer" in viewer_write.json()["message"]
    other_ns = await c.put(
        f"{RL_PATH}/rl", content=RL_YAML, headers={**yaml_headers, **bearer("team-a-token")}
    )
    assert other_ns.status_code == 403 and "no role" in other_ns.json()["message"]
    ok = await c.put(f"{RL_PATH}/rl", content=RL_YAML, headers={**yaml_headers, **bearer("admin-token")})
    assert ok.status_code == 201
    team_path = RL_PATH.replace("/default/", "/team-a/")
    assert (
        await c.put(f"{team_path}/rl", content=RL_YAML, headers={**yaml_headers, **bearer("team-a-token")})
    ).status_code == 201
    # Cross-namespace views show only the caller's namespaces.
    team_list = (await c.get(f"/apis/{FT}/ratelimitstrategies", headers=bearer("team-a-token"))).json()
    assert [i["metadata"]["namespace"] for i in team_list["items"]] == ["team-a"]
    rules = (await c.get("/api/v1/rules", headers=bearer("team-a-token"))).json()
    assert [r["namespace"] for r in rules["items"]] == ["team-a"]
    assert (await c.get(RL_PATH, headers=bearer("team-a-token"))).status_code == 403
    ns = (await c.get("/api/v1/namespaces", headers=bearer("team-a-token"))).json()
    assert ns["items"] == [{"name": "team-a", "role": "editor"}]
    # ServiceInstance objects need admin.
    si = "/apis/discovery.opensergo.io/v1alpha1/namespaces/team-a/serviceinstances/x"
    assert (await c.delete(si, headers=bearer("team-a-token"))).status_code == 403
    # Browsers: a cross-origin write is refused even with a valid token.
    evil = await c.put(
        f"{RL_PATH}/rl",
        content=RL_YAML,
        headers={**yaml_headers, **bearer("admin-token"), "Origin": "http://evil.example"},
    )
    assert evil.status_code == 403 and "cross-origin" in evil.json()["message"]
    same = await c.put(
        f"{RL_PATH}/rl",
        content=RL_YAML,
        headers={**yaml_headers, **bearer("admin-token"), "Origin": "http://cp.test"},
    )
    assert same.status_code == 200


async def test_cookie_sessions_need_the_csrf_token(secured: httpx.AsyncClient) -> None:
    c = secured
    assert (await c.post("/api/v1/login", json={"token": "nope"})).status_code == 401
    login = await c.post("/api/v1/login", json={"token": "admin-token"})
    assert login.status_code == 200
    cookie = login.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "admin-token" not in cookie
    csrf = login.json()["csrfToken"]
    me = (await c.get("/api/v1/whoami")).json()
    assert me["authenticated"] and me["user"]["name"] == "admin" and me["csrfToken"] == csrf
    assert (await c.get(RL_PATH)).status_code == 200  # reads need no CSRF token
    yaml_headers = {"content-type": "application/yaml"}
    no_csrf = await c.put(f"{RL_PATH}/rl", content=RL_YAML, headers=yaml_headers)
    assert no_csrf.status_code == 403 and "CSRF" in no_csrf.json()["message"]
    bad_csrf = await c.put(
        f"{RL_PATH}/rl", content=RL_YAML, headers={**yaml_headers, "X-CSRF-Token": "0" * 64}
    )
    assert bad_csrf.status_code == 403
    good = await c.put(f"{RL_PATH}/rl", content=RL_YAML, headers={**yaml_headers, "X-CSRF-Token": csrf})
    assert good.status_code == 201
    await c.post("/api/v1/logout")
    assert (await c.get(RL_PATH)).status_code == 401
