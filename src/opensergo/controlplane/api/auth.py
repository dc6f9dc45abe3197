"""Authentication and authorization of the HTTP API and the dashboard.

Auth is on when the control plane listens beyond loopback (``--auth auto``, the default), or
when forced with ``--auth on``; ``--auth off`` turns it off. With auth on every request needs a
token, except the dashboard's static files, ``/healthz``, the OpenAPI document and the login
endpoint:

* ``Authorization: Bearer <token>`` (the CLI sends ``$OPENSERGO_TOKEN``), or
* the dashboard's session cookie, set by ``POST /api/v1/login`` after the user typed a token.
  Writes made with the cookie must also carry the CSRF token of the session in the
  ``X-CSRF-Token`` header (synchronizer-token pattern; the cookie is also ``SameSite=Strict`` and
  ``HttpOnly``).

Tokens come from a YAML file (``--auth-tokens FILE``, reloaded when it changes)::

    tokens:
      - name: ops                 # shown in the dashboard and logs (never the token)
        token: "s3cr3t..."        # or sha256: "<hex digest of the token>"
        roles: {"*": admin}
      - name: team-a
        sha256: "9f86d0..."
        roles: {team-a: editor, "*": viewer}

or the short form ``{<token>: {<namespace or "*">: <role>}}``. A namespace's own entry wins over
``"*"``. Roles:

* ``viewer``: read rules, apps, instances, clients, metrics in the namespace;
* ``agent``: a data plane's role on the gRPC port (see :mod:`opensergo.controlplane.grpcauth`);
  on this API it reads like a viewer;
* ``editor``: a viewer that also creates, changes, rolls back and deletes rules in the namespace;
* ``admin``: everything: an editor and an agent, who also writes ``ServiceInstance`` objects
  (normally written by the registry only).

An entry may also list ``certificates:``: names (the subject common name, or a subject alternative
name: DNS name, URI such as a SPIFFE ID, e-mail or IP address) of verified mTLS client
certificates that act as that identity on the gRPC port; such an entry needs no token.

Without a tokens file, an admin token is generated once into ``<data-dir>/admin-token`` (mode
0600). A request without a valid token gets 401, a token without the role 403. Views that span
namespaces (apps, instances, clients, rule lists across namespaces, metrics) show only the
namespaces the token may view. State-changing requests that a browser sends cross-origin (an
``Origin`` header naming another host) are refused whether auth is on or off, and so is every
request whose ``Host`` is not a name of the control plane (:mod:`.guards`, DNS rebinding).

Session cookies (:mod:`.cookies`) are signed with a server secret shared by the replicas through
the store, never with anything derived from a token; the server bounds their lifetime, logout
revokes them, and changing or removing a token ends its sessions. Failed logins and invalid
bearer tokens are throttled per source (:mod:`.throttle`): beyond the limit, 429.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import os
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from enum import IntEnum
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from opensergo.controlplane.api.cookies import Session, SessionSigner
from opensergo.controlplane.api.throttle import FailureThrottle
from opensergo.spec.limits import LimitError
from opensergo.spec.loader import YamlSyntaxError, load_yaml

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SESSION_COOKIE = "osg_session"
CSRF_HEADER = "x-csrf-token"
SESSION_TTL = 12 * 3600.0
ADMIN_TOKEN_FILE = "admin-token"
_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_ADMIN_PLURALS = frozenset({"serviceinstances"})
_NAMESPACED = re.compile(r"^/apis/[^/]+/[^/]+/namespaces/([^/]+)/([^/]+)(/.*)?$")


class Role(IntEnum):
    """Ordered by what they may do on the HTTP API (``can`` compares): an agent reads like a
    viewer there. The gRPC port's data-plane calls name their roles explicitly (grpcauth)."""

    VIEWER = 1
    AGENT = 2
    EDITOR = 3
    ADMIN = 4

    @classmethod
    def parse(cls, text: Any) -> Role:
        try:
            return cls[str(text).strip().upper()]
        except KeyError:
            raise ValueError(f"unknown role {text!r} (viewer, agent, editor or admin)") from None


@dataclass(frozen=True)
class Principal:
    """Who made a request, and their role per namespace ("*": every other namespace)."""

    name: str
    roles: Mapping[str, Role]
    via: str = "bearer"  # bearer | cookie | anonymous (auth off)
    key: bytes = b""  # sha256 of the token (its sessions' fingerprint; never a signing key)
    session: Session | None = None  # the dashboard session a cookie request belongs to

    def role_in(self, namespace: str) -> Role | None:
        role = self.roles.get(namespace)
        return role if role is not None else self.roles.get("*")

    def can(self, namespace: str, role: Role) -> bool:
        have = self.role_in(namespace)
        return have is not None and have >= role

    def can_view(self, namespace: str) -> bool:
        return self.can(namespace, Role.VIEWER)

    @property
    def views_every_namespace(self) -> bool:
        """One role, for "*", that lets it view: no namespace's view needs filtering."""
        return len(self.roles) == 1 and self.can_view("*")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "roles": {ns: r.name.lower() for ns, r in sorted(self.roles.items())}}


ANONYMOUS = Principal("anonymous", {"*": Role.ADMIN}, via="anonymous")


@dataclass
class _Entry:
    name: str
    digest: bytes  # b"": no token (an identity for client certificates only)
    roles: dict[str, Role]
    certificates: tuple[str, ...] = ()


class TokenFileError(ValueError):
    pass


def parse_tokens(text: str, source: str = "<tokens>") -> list[_Entry]:
    """Entries of a tokens file (either form); raises TokenFileError naming the problem."""
    try:
        data = load_yaml(text)
    except (YamlSyntaxError, LimitError) as err:
        raise TokenFileError(f"{source}: {err}") from None
    out: list[_Entry] = []
    names: set[str] = set()
    for where, item in _token_items(data, source):
        try:
            entry = _token_entry(item)
        except ValueError as err:
            raise TokenFileError(f"{source}: {where}: {err}") from None
        if entry.name in names:
            raise TokenFileError(f"{source}: {where}: name {entry.name!r} is repeated or contains '.'")
        names.add(entry.name)
        for cert in entry.certificates:
            other = next((e.name for e in out if cert in e.certificates), None)
            if other is not None:
                raise TokenFileError(
                    f"{source}: {where}: certificate name {cert!r} is also listed by {other}"
                )
        out.append(entry)
    return out


def _token_items(data: Any, source: str) -> list[tuple[str, dict[str, Any]]]:
    """(where, item) for each entry of either form, the short form's items in the long form's shape."""
    if data is None:
        return []
    if isinstance(data, dict) and isinstance(data.get("tokens"), list):
        items = []
        for i, item in enumerate(data["tokens"]):
            if not isinstance(item, dict):
                raise TokenFileError(f"{source}: tokens[{i}] must be a map")
            items.append((f"tokens[{i}]", item))
        return items
    if isinstance(data, dict):
        return [
            (f"entry {i}", {"token": str(token), "roles": roles, "name": f"token-{i + 1}"})
            for i, (token, roles) in enumerate(data.items())
        ]
    raise TokenFileError(f"{source}: expected a map (tokens: [...] or token: roles)")


def _token_entry(item: dict[str, Any]) -> _Entry:
    """One entry; ValueError says what is wrong with it."""
    token, digest_hex = item.get("token"), item.get("sha256")
    certificates = _certificate_names(item.get("certificates"))
    if token:
        digest = hashlib.sha256(str(token).encode()).digest()
    elif digest_hex:
        try:
            digest = bytes.fromhex(str(digest_hex))
        except ValueError:
            raise ValueError("sha256 is not hex") from None
        if len(digest) != 32:
            raise ValueError("sha256 must be 64 hex digits")
    elif certificates:
        digest = b""
    else:
        raise ValueError("needs token or sha256 (or certificates: for a certificate-only identity)")
    roles_raw = item.get("roles")
    if not isinstance(roles_raw, dict) or not roles_raw:
        raise ValueError("roles must map namespaces (or '*') to roles")
    roles = {str(ns): Role.parse(r) for ns, r in roles_raw.items()}
    name = str(item.get("name") or (f"token-{digest.hex()[:8]}" if digest else f"cert-{certificates[0]}"))
    if "." in name:
        raise ValueError(f"name {name!r} is repeated or contains '.'")
    return _Entry(name, digest, roles, certificates)


def _certificate_names(value: Any) -> tuple[str, ...]:
    """The ``certificates:`` list of an entry: non-empty strings."""
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError("certificates must be a list of certificate names (subject CN or SAN)")
    return tuple(v.strip() for v in value)


class TokenRegistry:
    """Tokens by digest, reloaded from their file when it changes."""

    def __init__(self, path: Path | None = None, entries: list[_Entry] | None = None) -> None:
        self.path = path
        self._by_digest: dict[bytes, _Entry] = {}
        self._by_name: dict[str, _Entry] = {}
        self._by_certificate: dict[str, _Entry] = {}
        self._mtime: float | None = None
        self._checked = 0.0
        if entries is not None:
            self._set(entries)
        if path is not None:
            self._load()

    def _set(self, entries: list[_Entry]) -> None:
        self._by_digest = {e.digest: e for e in entries if e.digest}
        self._by_name = {e.name: e for e in entries}
        self._by_certificate = {name: e for e in entries for name in e.certificates}

    def _load(self) -> None:
        assert self.path is not None
        stat = self.path.stat()
        self._set(parse_tokens(self.path.read_text(encoding="utf-8"), str(self.path)))
        self._mtime = stat.st_mtime
        log.info("auth: %d token(s) loaded from %s", len(self._by_digest), self.path)

    def _maybe_reload(self) -> None:
        if self.path is None:
            return
        now = time.monotonic()
        if now - self._checked < 1.0:
            return
        self._checked = now
        try:
            if self.path.stat().st_mtime != self._mtime:
                self._load()
        except (OSError, TokenFileError) as err:
            log.error("auth: keeping the previous tokens; cannot reload %s: %s", self.path, err)

    def __len__(self) -> int:
        return len(self._by_digest)

    def authenticate(self, token: str) -> Principal | None:
        self._maybe_reload()
        digest = hashlib.sha256(token.encode()).digest()
        entry = self._by_digest.get(digest)
        if entry is None:
            return None
        return Principal(entry.name, dict(entry.roles), "bearer", entry.digest)

    def by_certificate(self, names: list[str]) -> Principal | None:
        """The identity of a verified client certificate, given its subject CN and SANs: the
        entry that lists one of them (a name listed twice is refused when the file loads)."""
        self._maybe_reload()
        for name in names:
            entry = self._by_certificate.get(name)
            if entry is not None:
                return Principal(entry.name, dict(entry.roles), "certificate", entry.digest)
        return None

    def by_name(self, name: str) -> Principal | None:
        self._maybe_reload()
        entry = self._by_name.get(name)
        if entry is None or not entry.digest:
            return None  # a certificate-only identity has no token to log in with
        return Principal(entry.name, dict(entry.roles), "cookie", entry.digest)


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class AuthConfig:
    enabled: bool
    tokens: TokenRegistry = field(default_factory=TokenRegistry)
    sessions: SessionSigner = field(default_factory=SessionSigner)
    throttle: FailureThrottle = field(default_factory=FailureThrottle)

    @property
    def session_ttl(self) -> float:
        return self.sessions.ttl

    @classmethod
    def from_settings(
        cls,
        mode: str,
        host: str,
        tokens_file: Path | None,
        data_dir: Path,
        *,
        session_ttl: float = SESSION_TTL,
        login_failures: int = 10,
        login_failure_window: float = 60.0,
    ) -> AuthConfig:
        """The session key is random until :func:`.cookies.load_session_key` sets the shared one."""
        mode = (mode or "auto").lower()
        if mode not in ("on", "off", "auto"):
            raise ValueError(f"--auth must be on, off or auto, not {mode!r}")
        enabled = mode == "on" or (mode == "auto" and not is_loopback(host))
        sessions = SessionSigner(ttl=session_ttl)
        throttle = FailureThrottle(login_failures, login_failure_window)
        if not enabled:
            if tokens_file is not None:
                log.warning("auth is off: --auth-tokens %s is not used", tokens_file)
            return cls(False, sessions=sessions, throttle=throttle)
        if tokens_file is not None:
            try:
                tokens = TokenRegistry(tokens_file)
            except OSError as err:
                raise ValueError(f"cannot read --auth-tokens {tokens_file}: {err.strerror}") from None
            except TokenFileError as err:
                raise ValueError(str(err)) from None
        else:
            tokens = TokenRegistry(entries=[_bootstrap_admin(data_dir)])
        return cls(True, tokens, sessions, throttle)


def _bootstrap_admin(data_dir: Path) -> _Entry:
    """The generated admin token (created once, mode 0600), for a control plane without a file."""
    path = data_dir / ADMIN_TOKEN_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        token = secrets.token_urlsafe(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        log.warning("auth is on and no --auth-tokens file was given: admin token written to %s", path)
    else:
        log.warning("auth is on and no --auth-tokens file was given: admin token is in %s", path)
    token = path.read_text().strip()
    return _Entry("admin", hashlib.sha256(token.encode()).digest(), {"*": Role.ADMIN})


@dataclass(frozen=True)
class Requirement:
    """What a request needs: a role in a namespace; namespace None = any valid token."""

    role: Role
    namespace: str | None = None
    public: bool = False


_PUBLIC_EXACT = frozenset(
    {
        "/",
        "/healthz",
        "/openapi.json",
        "/docs",
        "/docs/oauth2-redirect",
        "/redoc",
        "/favicon.ico",
        "/api/v1/login",
        "/api/v1/logout",
        "/api/v1/whoami",
    }
)


def requirement(method: str, path: str) -> Requirement:
    if path in _PUBLIC_EXACT or path.startswith("/ui/"):
        return Requirement(Role.VIEWER, public=True)
    unsafe = method in _UNSAFE
    m = _NAMESPACED.match(path)
    if m is not None:
        namespace, plural, rest = m.group(1), m.group(2), m.group(3) or ""
        if not unsafe:
            return Requirement(Role.VIEWER, namespace)
        if plural in _ADMIN_PLURALS:
            return Requirement(Role.ADMIN, namespace)
        if rest.endswith("/validate"):
            return Requirement(Role.VIEWER, namespace)
        return Requirement(Role.EDITOR, namespace)
    # Cross-namespace views filter by namespace in their handlers.
    return Requirement(Role.VIEWER)


def _status(code: int, reason: str, message: str) -> bytes:
    return json.dumps(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code,
        }
    ).encode()


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


def _same_origin(origin: str, headers: Mapping[str, str]) -> bool:
    if origin in ("", "null"):
        return origin == ""
    host = headers.get("x-forwarded-host") or headers.get("host", "")
    return urlsplit(origin).netloc.lower() == host.lower()


class AuthMiddleware:
    """Pure ASGI middleware: authenticates, authorizes by path, puts the Principal in the scope."""

    def __init__(self, app: ASGIApp, config: AuthConfig) -> None:
        self.app = app
        self.config = config

    async def principal_from(
        self, headers: Mapping[str, str], source: str = ""
    ) -> tuple[Principal | None, str | None]:
        """(principal, error): error explains a present but invalid credential. A wrong bearer
        token counts against ``source`` in the throttle (the caller checks it first)."""
        auth = headers.get("authorization", "")
        if auth:
            scheme, _, token = auth.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                return None, "the Authorization header must be 'Bearer <token>'"
            principal = self.config.tokens.authenticate(token.strip())
            if principal is None:
                self.config.throttle.failed(source)
                return None, "invalid token"
            return principal, None
        value = session_cookie(headers)
        if value:
            return await self.verify_session(value)
        return None, None

    async def verify_session(self, value: str) -> tuple[Principal | None, str | None]:
        parsed = SessionSigner.parse(value)
        if parsed is None:
            return None, "invalid session"
        principal = self.config.tokens.by_name(parsed[0].name)
        session, error = self.config.sessions.verify(value, principal.key if principal else None)
        if session is None or principal is None:
            return None, error or "invalid session"
        if await self.config.sessions.is_revoked(session):
            return None, "session ended (logged out): log in again"
        return Principal(principal.name, principal.roles, "cookie", principal.key, session), None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        path = scope["path"]
        headers = _headers(scope)
        if method in _UNSAFE:
            origin = headers.get("origin")
            fetch_site = headers.get("sec-fetch-site", "")
            if (origin is not None and not _same_origin(origin, headers)) or fetch_site == "cross-site":
                await self._deny(send, 403, "Forbidden", "cross-origin request refused")
                return
        state = scope.setdefault("state", {})
        if not self.config.enabled:
            state["principal"] = ANONYMOUS
            await self.app(scope, receive, send)
            return
        need = requirement(method, path)
        source = client_source(scope)
        if "authorization" in headers:
            wait = self.config.throttle.retry_after(source)
            if wait > 0:
                await self._deny(send, 429, "TooManyRequests", "too many failed logins: retry later", wait)
                return
        principal, error = await self.principal_from(headers, source)
        state["principal"] = principal
        if need.public:
            await self.app(scope, receive, send)
            return
        if principal is None:
            message = error or "authentication required: send 'Authorization: Bearer <token>' or log in"
            await self._deny(send, 401, "Unauthorized", message)
            return
        if principal.via == "cookie" and method in _UNSAFE:
            session = principal.session
            expected = self.config.sessions.csrf_token(session) if session is not None else ""
            if not expected or not hmac.compare_digest(headers.get(CSRF_HEADER, ""), expected):
                await self._deny(send, 403, "Forbidden", "missing or invalid CSRF token (X-CSRF-Token)")
                return
        if need.namespace is not None and not principal.can(need.namespace, need.role):
            have = principal.role_in(need.namespace)
            detail = f"has role {have.name.lower()}" if have else "has no role"
            await self._deny(
                send,
                403,
                "Forbidden",
                f"{principal.name} {detail} in namespace {need.namespace!r};"
                f" this needs {need.role.name.lower()}",
            )
            return
        await self.app(scope, receive, send)

    @staticmethod
    async def _deny(send: Send, code: int, reason: str, message: str, retry_after: float = 0.0) -> None:
        body = _status(code, reason, message)
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if code == 401:
            headers.append((b"www-authenticate", b'Bearer realm="opensergo"'))
        if retry_after > 0:
            headers.append((b"retry-after", str(max(1, round(retry_after))).encode()))
        await send({"type": "http.response.start", "status": code, "headers": headers})
        await send({"type": "http.response.body", "body": body})


NOBODY = Principal("nobody", {}, via="none")


def session_cookie(headers: Mapping[str, str]) -> str:
    """The session cookie's value in a request's headers ("" when absent or unreadable)."""
    cookie_header = headers.get("cookie", "")
    if not cookie_header:
        return ""
    cookies: SimpleCookie = SimpleCookie()
    try:
        cookies.load(cookie_header)
    except Exception:
        return ""
    morsel = cookies.get(SESSION_COOKIE)
    return morsel.value if morsel is not None else ""


def client_source(scope: Mapping[str, Any]) -> str:
    """Where a request came from, as failed logins are throttled: the IPv4 address, or the /64
    network of an IPv6 address (one host usually holds a whole /64)."""
    client = scope.get("client")
    host = str(client[0]) if client else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if address.version == 6 and address.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address.ipv4_mapped or address) if address.version == 6 else host


def principal_of(state: Any) -> Principal:
    """The request's principal: ANONYMOUS (every role) when auth is off or no middleware runs,
    NOBODY (no role) for an unauthenticated request to a public path."""
    try:
        principal = state.principal
    except AttributeError:
        return ANONYMOUS
    return principal if isinstance(principal, Principal) else NOBODY
