"""The dashboard's session: ``whoami``, ``login`` (a token for an HttpOnly, SameSite=Strict
cookie and the session's CSRF token) and ``logout`` (which revokes the session on every
replica). The rules they follow are in :mod:`.auth` and :mod:`.cookies`."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRouter

from opensergo.controlplane.api.auth import SESSION_COOKIE, client_source, session_cookie
from opensergo.controlplane.api.context import Caller, Context
from opensergo.controlplane.api.errors import ApiError
from opensergo.controlplane.api.validation import read_json

router = APIRouter(tags=["dashboard"])

_AUTH_OFF = {"authEnabled": False, "authenticated": True}


@router.get("/api/v1/whoami")
async def whoami(ctx: Context, caller: Caller) -> dict[str, Any]:
    """The caller: auth on or off, user name and roles, and the CSRF token of the session."""
    if ctx.auth is None or not ctx.auth.enabled:
        return {**_AUTH_OFF, "user": {"name": "anonymous", "roles": {"*": "admin"}}}
    if caller.via not in ("bearer", "cookie"):
        return {"authEnabled": True, "authenticated": False}
    out: dict[str, Any] = {"authEnabled": True, "authenticated": True, "user": caller.to_dict()}
    if caller.via == "cookie" and caller.session is not None:
        out["csrfToken"] = ctx.auth.sessions.csrf_token(caller.session)
        out["expires"] = caller.session.expires
    return out


@router.post("/api/v1/login")
async def login(request: Request, ctx: Context) -> JSONResponse:
    """Exchange a token for a session cookie (HttpOnly, SameSite=Strict) and a CSRF token.
    Failed attempts are throttled per source (429 with Retry-After)."""
    auth = ctx.auth
    if auth is None or not auth.enabled:
        return JSONResponse(_AUTH_OFF)
    source = client_source(request.scope)
    wait = auth.throttle.retry_after(source)
    if wait > 0:
        raise ApiError(429, "TooManyRequests", "too many failed logins: retry later", retry_after=wait)
    data = await read_json(request, ctx.limits.parser)
    token = data.get("token") if isinstance(data, dict) else None
    principal = auth.tokens.authenticate(token.strip()) if isinstance(token, str) and token.strip() else None
    if principal is None:
        auth.throttle.failed(source)
        raise ApiError(401, "Unauthorized", "invalid token")
    cookie, session = auth.sessions.issue(principal.name, principal.key)
    response = JSONResponse(
        {
            "authEnabled": True,
            "authenticated": True,
            "user": principal.to_dict(),
            "csrfToken": auth.sessions.csrf_token(session),
            "expires": session.expires,
        }
    )
    secure = request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"
    response.set_cookie(
        SESSION_COOKIE,
        cookie,
        max_age=int(auth.session_ttl),
        httponly=True,
        samesite="strict",
        secure=secure,
        path="/",
    )
    return response


@router.post("/api/v1/logout")
async def logout(request: Request, ctx: Context) -> JSONResponse:
    """End the session: the cookie is cleared and the session revoked, so a copy of the cookie
    no longer works either."""
    auth = ctx.auth
    value = session_cookie(request.headers)
    if auth is not None and auth.enabled and value:
        parsed = auth.sessions.parse(value)
        principal = auth.tokens.by_name(parsed[0].name) if parsed is not None else None
        session, _ = auth.sessions.verify(value, principal.key if principal is not None else None)
        if session is not None:
            await auth.sessions.revoke(session)
    response = JSONResponse({"authenticated": False})
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response
