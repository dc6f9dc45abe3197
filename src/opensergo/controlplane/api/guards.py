"""Checks on every HTTP request before anything else runs: its Host, and its body's size.

**Host** (DNS rebinding): a page on ``evil.example`` whose name the attacker re-points at
127.0.0.1 makes the browser send same-origin requests to the control plane with
``Host: evil.example``. So a request must name the control plane: an IP address, ``localhost``
(or ``*.localhost``), this machine's host name, or a configured external name (``--external-name``;
``*.example.com`` allows the subdomains of example.com). An ``X-Forwarded-Host`` header, when
present, must pass the same check. Anything else gets 400 whether auth is on or off.

**Body size**: a ``Content-Length`` beyond the limit gets 413 at once; a chunked body is read up
to the limit (413 beyond it) before the application sees it.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _host_only(value: str) -> str:
    """``Example.COM:8080`` -> ``example.com``; ``[::1]:80`` -> ``::1``."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    if value.count(":") == 1:
        value = value.split(":", 1)[0]
    return value.rstrip(".")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def machine_names() -> set[str]:
    names = set()
    for lookup in (socket.gethostname, socket.getfqdn):
        try:
            name = lookup()
        except OSError:
            continue
        if name:
            names.add(name.lower().rstrip("."))
    return names


@dataclass(frozen=True)
class HostPolicy:
    """Which ``Host`` names requests may carry (IP addresses are always fine)."""

    names: frozenset[str]
    suffixes: tuple[str, ...] = ()
    any_name: bool = False

    @classmethod
    def anything(cls) -> HostPolicy:
        """No Host check (only for an app that no browser can reach, e.g. in-process tests)."""
        return cls(frozenset(), any_name=True)

    @classmethod
    def of(cls, external_names: Iterable[str], listen_host: str = "") -> HostPolicy:
        names = {"localhost"} | machine_names()
        suffixes = [".localhost"]
        for raw in [*external_names, listen_host]:
            for name in raw.split(","):
                name = _host_only(name)
                if not name:
                    continue
                if name.startswith("*."):
                    suffixes.append(name[1:])
                else:
                    names.add(name)
        return cls(frozenset(names), tuple(suffixes))

    def allows(self, header: str) -> bool:
        host = _host_only(header)
        if self.any_name or not host or _is_ip(host) or host in self.names:
            return True
        return any(host.endswith(suffix) for suffix in self.suffixes)


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}


async def _deny(send: Send, code: int, reason: str, message: str) -> None:
    body = json.dumps(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code,
        }
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    """Pure ASGI middleware: refuses foreign Host names and oversized bodies."""

    def __init__(self, app: ASGIApp, hosts: HostPolicy, max_body_bytes: int) -> None:
        self.app = app
        self.hosts = hosts
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # noqa: C901 (complexity debt, see pyproject [tool.ruff.lint.mccabe])
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        for name in ("host", "x-forwarded-host"):
            value = headers.get(name)
            if value is not None and not self.hosts.allows(value):
                await _deny(
                    send,
                    400,
                    "BadRequest",
                    f"{name} {_host_only(value)!r} is not a name of this control plane"
                    " (add it with --external-name)",
                )
                return
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit() or int(length) > self.max_body_bytes:
                await self._too_large(send)
                return
            await self.app(scope, receive, send)
            return
        if "chunked" not in headers.get("transfer-encoding", ""):
            await self.app(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            body += message.get("body", b"")
            if len(body) > self.max_body_bytes:
                await self._too_large(send)
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send) -> None:
        await _deny(
            send, 413, "RequestEntityTooLarge", f"request body larger than {self.max_body_bytes} bytes"
        )
