"""Findings 6 and 7 against a real control plane: dashboard sessions cannot be forged from what a
tokens file holds, the server bounds and ends them, failed logins are throttled, and requests
naming a foreign Host (DNS rebinding) are refused even with auth off."""

from __future__ import annotations

import base64
import hashlib
import hmac
import stat
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.integration.hardening.conftest import StartControlPlane

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

FT = "fault-tolerance.opensergo.io/v1alpha1"
RL = f"/apis/{FT}/namespaces/default/ratelimitstrategies"
EDITOR_TOKEN = "team-editor-token-42"
EDITOR_SHA = hashlib.sha256(EDITOR_TOKEN.encode()).hexdigest()
TOKENS = {
    "tokens": [
        {"name": "ops", "token": "ops-token-123", "roles": {"*": "admin"}},
        # What a tokens file is meant to hold: only the digest of the token.
        {"name": "editor", "sha256": EDITOR_SHA, "roles": {"*": "editor"}},
    ]
}
RULE = {
    "apiVersion": FT,
    "kind": "RateLimitStrategy",
    "metadata": {"name": "rl", "labels": {"app": "foo-app"}},
    "spec": {"threshold": 10, "statDuration": "1s"},
}


def secured(start_cp: StartControlPlane, tmp_path: Path, *args: str, data: Path | None = None) -> Any:
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(yaml.safe_dump(TOKENS))
    return start_cp("--auth", "on", "--auth-tokens", str(tokens), *args, data=data)


def login(url: str, token: str) -> tuple[str, str]:
    """(cookie value, CSRF token) of a new session."""
    answer = httpx.post(f"{url}/api/v1/login", json={"token": token})
    assert answer.status_code == 200, answer.text
    return answer.cookies["osg_session"], answer.json()["csrfToken"]


def test_a_session_cannot_be_forged_from_the_tokens_file(start_cp: StartControlPlane, tmp_path: Path) -> None:
    """Finding 6: the session MAC was keyed by sha256(token), exactly what the tokens file stores,
    and the forger chose the expiry. A cookie forged that way wrote a rule."""
    cp = secured(start_cp, tmp_path)
    key = bytes.fromhex(EDITOR_SHA)
    expires = int(time.time()) + 10 * 365 * 86400
    name = base64.urlsafe_b64encode(b"editor").decode().rstrip("=")
    mac = hmac.new(key, f"session.editor.{expires}".encode(), hashlib.sha256).hexdigest()
    csrf = hmac.new(key, f"csrf.editor.{expires}".encode(), hashlib.sha256).hexdigest()
    forged = httpx.put(
        f"{cp.http_url}{RL}/rl",
        json=RULE,
        headers={"Cookie": f"osg_session={name}.{expires}.{mac}", "X-CSRF-Token": csrf},
    )
    assert forged.status_code == 401, forged.text
    assert (
        httpx.get(f"{cp.http_url}{RL}/rl", headers={"Authorization": "Bearer ops-token-123"}).status_code
        == 404
    )
    # The key is a random server secret in the data directory, private to the control plane.
    key_file = cp.data_dir / "session-key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text().strip() not in (EDITOR_SHA, hashlib.sha256(b"ops-token-123").hexdigest())


def test_logout_revokes_the_session_and_sessions_survive_a_restart(
    start_cp: StartControlPlane, tmp_path: Path
) -> None:
    """Finding 6: logout only cleared the browser's cookie; a copy of it kept working."""
    data = tmp_path / "data"
    cp = secured(start_cp, tmp_path, data=data)
    cookie, csrf = login(cp.http_url, EDITOR_TOKEN)
    headers = {"Cookie": f"osg_session={cookie}", "X-CSRF-Token": csrf}
    assert httpx.put(f"{cp.http_url}{RL}/rl", json=RULE, headers=headers).status_code == 201
    # The session key is kept in the data directory and the store: a restart keeps sessions.
    cp.stop()
    cp = secured(start_cp, tmp_path, data=data)
    assert httpx.get(f"{cp.http_url}{RL}", headers=headers).status_code == 200
    assert httpx.post(f"{cp.http_url}/api/v1/logout", headers=headers).status_code == 200
    after = httpx.get(f"{cp.http_url}{RL}", headers=headers)
    assert after.status_code == 401 and "logged out" in after.json()["message"]


def test_the_server_bounds_a_session(start_cp: StartControlPlane, tmp_path: Path) -> None:
    """Finding 6: the expiry in the cookie was the only bound. Now --session-ttl bounds it."""
    cp = secured(start_cp, tmp_path, "--session-ttl", "2")
    cookie, _ = login(cp.http_url, EDITOR_TOKEN)
    headers = {"Cookie": f"osg_session={cookie}"}
    assert httpx.get(f"{cp.http_url}{RL}", headers=headers).status_code == 200
    time.sleep(2.5)
    expired = httpx.get(f"{cp.http_url}{RL}", headers=headers)
    assert expired.status_code == 401 and "expired" in expired.json()["message"]


def test_failed_logins_are_throttled_per_source(start_cp: StartControlPlane, tmp_path: Path) -> None:
    """Finding 6: logins were not throttled. After 10 failures from one source, its attempts
    (logins and bearer tokens alike, right or wrong) get 429 with Retry-After."""
    cp = secured(start_cp, tmp_path)
    url = cp.http_url
    for i in range(10):
        guess = httpx.post(f"{url}/api/v1/login", json={"token": f"guess-{i}"})
        assert guess.status_code == 401
    blocked = httpx.post(f"{url}/api/v1/login", json={"token": EDITOR_TOKEN})
    assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) >= 1
    bearer = httpx.get(f"{url}{RL}", headers={"Authorization": "Bearer ops-token-123"})
    assert bearer.status_code == 429
    assert httpx.get(f"{url}/healthz").status_code == 200  # what needs no credential still works


def test_dns_rebinding_is_refused_with_auth_off(start_cp: StartControlPlane) -> None:
    """Finding 7: with auth off on loopback, the Origin check compared against the request's own
    Host header, so a page on evil.example (re-pointed at 127.0.0.1) deleted a rule."""
    cp = start_cp()
    url = cp.http_url
    assert httpx.put(f"{url}{RL}/rl", json=RULE).status_code == 201
    rebinding = {"Host": "evil.example", "Origin": "http://evil.example"}
    deleted = httpx.delete(f"{url}{RL}/rl", headers=rebinding)
    assert deleted.status_code == 400 and "evil.example" in deleted.json()["message"]
    assert httpx.get(f"{url}{RL}/rl", headers={"Host": "evil.example"}).status_code == 400
    assert httpx.get(f"{url}{RL}/rl", headers={"X-Forwarded-Host": "evil.example"}).status_code == 400
    assert httpx.get(f"{url}{RL}/rl").status_code == 200  # still there
    for host in ("localhost", "127.0.0.1", "[::1]"):
        assert httpx.get(f"{url}{RL}/rl", headers={"Host": f"{host}:{cp.http_port}"}).status_code == 200


def test_configured_external_names_are_accepted(start_cp: StartControlPlane) -> None:
    cp = start_cp("--external-name", "cp.example.org,*.cp.example.org")
    url = cp.http_url
    assert httpx.get(f"{url}{RL}", headers={"Host": "evil.example"}).status_code == 400
    for host in ("cp.example.org", "ui.cp.example.org", "localhost"):
        assert httpx.get(f"{url}{RL}", headers={"Host": f"{host}:{cp.http_port}"}).status_code == 200, host
