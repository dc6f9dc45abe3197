"""Auth building blocks: token files, roles per namespace, path requirements, sessions, CSRF."""

from __future__ import annotations

import hashlib
import stat
import time
from pathlib import Path

import pytest

from opensergo.controlplane.api.auth import (
    ADMIN_TOKEN_FILE,
    AuthConfig,
    AuthMiddleware,
    Role,
    TokenFileError,
    TokenRegistry,
    is_loopback,
    parse_tokens,
    requirement,
)
from opensergo.controlplane.api.cookies import SessionSigner

pytestmark = pytest.mark.unit

TEAM_A_SHA = hashlib.sha256(b"team-a-secret").hexdigest()
TOKENS = f"""
tokens:
  - name: ops
    token: ops-secret
    roles: {{"*": admin}}
  - name: team-a
    sha256: {TEAM_A_SHA}
    roles: {{team-a: editor, "*": viewer}}
  - name: locked
    token: locked-secret
    roles: {{"*": editor, prod: viewer}}
"""


def registry(tmp_path: Path, text: str = TOKENS) -> TokenRegistry:
    path = tmp_path / "tokens.yaml"
    path.write_text(text)
    return TokenRegistry(path)


def test_tokens_file_both_forms(tmp_path: Path) -> None:
    tokens = registry(tmp_path)
    ops = tokens.authenticate("ops-secret")
    assert ops is not None and ops.name == "ops" and ops.can("anything", Role.ADMIN)
    team = tokens.authenticate("team-a-secret")
    assert team is not None and team.can("team-a", Role.EDITOR) and not team.can("team-b", Role.EDITOR)
    assert team.can_view("team-b")
    assert tokens.authenticate("nope") is None
    short = registry(tmp_path, "abc123: {default: viewer}\n")
    p = short.authenticate("abc123")
    assert p is not None and p.role_in("default") is Role.VIEWER and p.role_in("other") is None


def test_a_namespace_entry_wins_over_star(tmp_path: Path) -> None:
    locked = registry(tmp_path).authenticate("locked-secret")
    assert locked is not None
    assert locked.can("dev", Role.EDITOR)
    assert not locked.can("prod", Role.EDITOR) and locked.can_view("prod")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tokens: [{token: x}]", "roles"),
        ("tokens: [{roles: {'*': admin}}]", "token or sha256"),
        ("tokens: [{token: x, roles: {'*': boss}}]", "unknown role"),
        ("tokens: [{sha256: zz, roles: {'*': admin}}]", "not hex"),
        (
            "tokens: [{name: a, token: x, roles: {'*': admin}}, {name: a, token: y, roles: {'*': admin}}]",
            "repeated",
        ),
        ("[1, 2]", "expected a map"),
        ("tokens: [unclosed", "invalid YAML"),
    ],
)
def test_bad_token_files_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(TokenFileError, match=message):
        parse_tokens(text)


def test_tokens_file_is_reloaded_when_it_changes(tmp_path: Path) -> None:
    tokens = registry(tmp_path)
    path = tmp_path / "tokens.yaml"
    path.write_text("new-token: {'*': viewer}\n")
    import os

    os.utime(path, (time.time() + 5, time.time() + 5))
    tokens._checked = 0.0
    assert tokens.authenticate("new-token") is not None
    assert tokens.authenticate("ops-secret") is None
    # A broken file keeps the previous tokens.
    path.write_text("tokens: [unclosed")
    os.utime(path, (time.time() + 10, time.time() + 10))
    tokens._checked = 0.0
    assert tokens.authenticate("new-token") is not None


def test_requirements_by_path() -> None:
    ft = "/apis/fault-tolerance.opensergo.io/v1alpha1/namespaces/team-a/ratelimitstrategies"
    assert requirement("GET", ft) == requirement("GET", f"{ft}/rl")
    assert requirement("GET", ft).role is Role.VIEWER and requirement("GET", ft).namespace == "team-a"
    assert requirement("PUT", f"{ft}/rl").role is Role.EDITOR
    assert requirement("POST", f"{ft}/rl/rollback").role is Role.EDITOR
    assert requirement("DELETE", f"{ft}/rl").role is Role.EDITOR
    si = "/apis/discovery.opensergo.io/v1alpha1/namespaces/default/serviceinstances/x"
    assert requirement("PUT", si).role is Role.ADMIN
    for public in ("/", "/healthz", "/ui/js/main.js", "/api/v1/login", "/openapi.json"):
        assert requirement("GET", public).public
    assert not requirement("GET", "/api/v1/apps").public
    assert requirement("GET", "/metrics").namespace is None


def test_loopback_detection() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3") and not is_loopback("example.org")


def test_auth_modes_and_the_generated_admin_token(tmp_path: Path) -> None:
    assert not AuthConfig.from_settings("auto", "127.0.0.1", None, tmp_path).enabled
    assert not AuthConfig.from_settings("off", "0.0.0.0", None, tmp_path).enabled
    with pytest.raises(ValueError, match="on, off or auto"):
        AuthConfig.from_settings("maybe", "127.0.0.1", None, tmp_path)
    config = AuthConfig.from_settings("auto", "0.0.0.0", None, tmp_path / "data")
    assert config.enabled
    path = tmp_path / "data" / ADMIN_TOKEN_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    admin = config.tokens.authenticate(path.read_text().strip())
    assert admin is not None and admin.can("x", Role.ADMIN)
    # The same token on the next start.
    again = AuthConfig.from_settings("on", "127.0.0.1", None, tmp_path / "data")
    assert again.tokens.authenticate(path.read_text().strip()) is not None
    with pytest.raises(ValueError, match="cannot read"):
        AuthConfig.from_settings("on", "127.0.0.1", tmp_path / "missing.yaml", tmp_path)


async def test_sessions_are_signed_and_expire(tmp_path: Path) -> None:
    # Rewritten for the server-keyed cookie format (sid.name.issued.expires.mac); the intent of
    # the earlier test stays: signed, tamper-proof, expiring, and CSRF tokens per session.
    config = AuthConfig(True, registry(tmp_path))
    middleware = AuthMiddleware(lambda *a: None, config)  # type: ignore[arg-type, return-value]
    ops = config.tokens.authenticate("ops-secret")
    assert ops is not None
    value, session = config.sessions.issue(ops.name, ops.key)
    principal, error = await middleware.verify_session(value)
    assert principal is not None and principal.via == "cookie" and error is None
    assert principal.session == session
    sid, name, issued, expires, mac = value.split(".")
    assert (await middleware.verify_session(f"{sid}.{name}.{issued}.{expires}.{'0' * len(mac)}"))[0] is None
    assert (await middleware.verify_session(f"{sid}.{name}.{issued}.{int(expires) + 1}.{mac}"))[0] is None
    old, _ = config.sessions.issue(ops.name, ops.key, now=time.time() - config.session_ttl - 1)
    assert (await middleware.verify_session(old))[1] == "session expired: log in again"
    assert (await middleware.verify_session("garbage"))[0] is None
    # The CSRF token depends on the session and on the server's key.
    _, other = config.sessions.issue(ops.name, ops.key)
    assert config.sessions.csrf_token(session) != config.sessions.csrf_token(other)
    assert SessionSigner().csrf_token(session) != config.sessions.csrf_token(session)


async def test_a_cookie_needs_the_server_key_and_a_bounded_lifetime(tmp_path: Path) -> None:
    """Finding 6: the MAC was keyed by sha256(token) (what a tokens file stores) and the forger
    chose the expiry. Now a cookie made with the token digest as key is refused, and so is one
    whose lifetime exceeds the server's TTL even when correctly signed."""
    config = AuthConfig(True, registry(tmp_path))
    middleware = AuthMiddleware(lambda *a: None, config)  # type: ignore[arg-type, return-value]
    team_a = config.tokens.by_name("team-a")
    assert team_a is not None
    forger = SessionSigner(key=team_a.key, ttl=10 * 365 * 86400)  # knows only the tokens file
    forged, _ = forger.issue("team-a", team_a.key)
    assert (await middleware.verify_session(forged))[0] is None
    long_lived = SessionSigner(key=config.sessions.key, ttl=10 * 365 * 86400)
    value, _ = long_lived.issue("team-a", team_a.key)
    assert (await middleware.verify_session(value))[0] is None
    value, session = config.sessions.issue("team-a", team_a.key)
    assert (await middleware.verify_session(value))[0] is not None
    await config.sessions.revoke(session)
    assert "logged out" in str((await middleware.verify_session(value))[1])
