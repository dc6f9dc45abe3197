"""The dashboard's session cookies: signed with a server secret, bounded by the server, revocable.

A cookie reads ``<session id>.<name>.<issued>.<expires>.<MAC>`` (name in URL-safe base64). The MAC
is an HMAC-SHA256 keyed by the *session key*, a random secret that is generated into the data
directory (``<data-dir>/session-key``, mode 0600) and shared by the replicas through the store
(the first replica's key wins). It is never derived from tokens, so a tokens file holding
``sha256:`` digests gives nobody the means to forge a cookie. The MAC also covers a fingerprint
of the token the session was opened with: changing or removing that token ends its sessions.

The server bounds a session: it ends at ``expires``, and a cookie whose lifetime is longer than
the server's session TTL is refused whatever it says. Logout revokes the session id (a store
value that expires with the session), on every replica. The CSRF token of a session is the MAC
of its id.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from opensergo.controlplane.store.base import Store

log = logging.getLogger(__name__)

SESSION_KEY_FILE = "session-key"
_SESSION_KEY_VALUE = "auth/session-key"
_REVOKED_VALUE = "auth/revoked-session/"
_CLOCK_SKEW = 60  # seconds a cookie's issue time may lie ahead of this replica's clock


@dataclass(frozen=True)
class Session:
    id: str
    name: str  # the token entry's name
    issued: int
    expires: int


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _unb64(text: str) -> str:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()


def fingerprint(token_digest: bytes) -> str:
    """What a session remembers of its token (a MAC input, never a key)."""
    return hashlib.sha256(b"opensergo-session-token|" + token_digest).hexdigest()[:32]


@dataclass
class SessionSigner:
    """Issues and verifies session cookies and CSRF tokens; remembers revoked sessions."""

    key: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    ttl: float = 12 * 3600.0
    store: Store | None = None  # where revocations are shared (None: this process only)
    _revoked: dict[str, int] = field(default_factory=dict)  # session id -> its expiry

    def _mac(self, message: str) -> str:
        return hmac.new(self.key, message.encode(), hashlib.sha256).hexdigest()

    def issue(self, name: str, token_digest: bytes, now: float | None = None) -> tuple[str, Session]:
        """A new session of the token entry ``name``: (cookie value, session)."""
        issued = int(time.time() if now is None else now)
        session = Session(secrets.token_urlsafe(18), name, issued, issued + int(self.ttl))
        return self._cookie(session, token_digest), session

    def _cookie(self, session: Session, token_digest: bytes) -> str:
        body = f"{session.id}.{_b64(session.name)}.{session.issued}.{session.expires}"
        return f"{body}.{self._mac(f'session|{body}|{fingerprint(token_digest)}')}"

    @staticmethod
    def parse(value: str) -> tuple[Session, str] | None:
        """(session, MAC) of a cookie value, unverified; None when it is not one."""
        try:
            sid, name_b64, issued, expires, mac = value.split(".")
            return Session(sid, _unb64(name_b64), int(issued), int(expires)), mac
        except (ValueError, UnicodeDecodeError):
            return None

    def verify(self, value: str, token_digest: bytes | None) -> tuple[Session | None, str]:
        """(session, "") for a genuine, current cookie; else (None, why). ``token_digest``: the
        digest of the token now named as the cookie's user (None: no such token)."""
        parsed = self.parse(value)
        if parsed is None:
            return None, "invalid session"
        session, mac = parsed
        now = time.time()
        if session.expires <= now:
            return None, "session expired: log in again"
        if session.expires - session.issued > self.ttl or session.issued > now + _CLOCK_SKEW:
            return None, "invalid session"
        if token_digest is None:
            return None, "invalid session"
        if not hmac.compare_digest(self._cookie(session, token_digest).rsplit(".", 1)[1], mac):
            return None, "invalid session"
        return session, ""

    def csrf_token(self, session: Session) -> str:
        return self._mac(f"csrf|{session.id}")

    async def revoke(self, session: Session) -> None:
        """End ``session`` on every replica that shares the store."""
        self._revoked[session.id] = session.expires
        ttl = max(1.0, session.expires - time.time())
        if self.store is not None:
            await self.store.get_or_create_value(_REVOKED_VALUE + session.id, "revoked", ttl=ttl)
        self._forget_expired()

    async def is_revoked(self, session: Session) -> bool:
        if session.id in self._revoked:
            return True
        if self.store is None or await self.store.get_value(_REVOKED_VALUE + session.id) is None:
            return False
        self._revoked[session.id] = session.expires
        return True

    def _forget_expired(self) -> None:
        now = time.time()
        for sid in [s for s, expires in self._revoked.items() if expires <= now]:
            del self._revoked[sid]


async def load_session_key(data_dir: Path, store: Store) -> bytes:
    """The session key: ``<data-dir>/session-key`` (generated once), unless the store already
    holds one (another replica's, or an earlier run's): that one wins and is cached in the file."""
    path = data_dir / SESSION_KEY_FILE
    local = _read_key_file(path)
    if local is None:
        local = secrets.token_hex(32)
        _write_key_file(path, local)
    shared = await store.get_or_create_value(_SESSION_KEY_VALUE, local)
    if shared != local:
        _write_key_file(path, shared)
    try:
        return bytes.fromhex(shared)
    except ValueError:
        raise ValueError(f"the session key in the store is not hex; delete {_SESSION_KEY_VALUE!r}") from None


def _read_key_file(path: Path) -> str | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    return text or None


def _write_key_file(path: Path, key: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    os.replace(tmp, path)
