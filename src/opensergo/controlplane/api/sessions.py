"""The dashboard's session: ``whoami``, ``login`` (a token for an HttpOnly, SameSite=Strict
cookie and the session's CSRF token) and ``logout``. The rules they follow are in :mod:`.auth`."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from opensergo.controlplane.api.auth import SESSION_COOKIE, AuthMiddleware, csrf_token, session_value
from opensergo.controlplane.api.context import Caller, Context
from opensergo.controlplane.api.errors import ApiError

router = APIRouter(tags=["dashboard"])

_AUTH_OFF = {"authEnabled": False, "authenticated": True}


def _cookie_expiry(request: Request) -> int | None:
    value = request.cookies.get(SESSION_COOKIE)
    if not value:
        return None
    try:
        return AuthMiddleware.session_expiry(value)
    except (IndexError, ValueError):
        return None


@router.get("/api/v1/whoami")
async def whoami(request: Request, ctx: Context, caller: Caller) -> dict[str, Any]:
    """The caller: auth on or off, user name and roles, and the CSRF token of the session."""
    if ctx.auth is None or not ctx.auth.enabled:
        return {**_AUTH_OFF, "user": {"name": "anonymous", "roles": {"*": "admin"}}}
    if caller.via not in ("bearer", "cookie"):
        return {"authEnabled": True, "authenticated": False}
    out: dict[str, Any] = {"authEnabled": True, "authenticated": True, "user": caller.to_dict()}
    expiry = _cookie_expiry(request)
    if caller.via == "cookie" and expiry is not None:
        out["csrfToken"] = csrf_token(caller, expiry)
        out["expires"] = expiry
    return out


async def _token_of(request: Request) -> str | None:
    try:
        data = await request.json()
    except ValueError:
        data = None
    token = data.get("token") if isinstance(data, dict) else None
    return str(token).strip() if token else None


@router.post("/api/v1/login")
async def login(request: Request, ctx: Context) -> JSONResponse:
    """Exchange a token for a session cookie (HttpOnly, SameSite=Strict) and a CSRF token."""
    auth = ctx.auth
    if auth is None or not auth.enabled:
        return JSONResponse(_AUTH_OFF)
    token = await _token_of(request)
    principal = auth.tokens.authenticate(token) if token else None
    if principal is None:
        raise ApiError(401, "Unauthorized", "invalid token")
    expires = int(time.time() + auth.session_ttl)
    response = JSONResponse(
        {
            "authEnabled": True,
            "authenticated": True,
            "user": principal.to_dict(),
            "csrfToken": csrf_token(principal, expires),
            "expires": expires,
        }
    )
    secure = request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"
    response.set_cookie(
        SESSION_COOKIE,
        session_value(principal, expires),
        max_age=int(auth.session_ttl),
        httponly=True,
        samesite="strict",
        secure=secure,
        path="/",
    )
    return response


@router.post("/api/v1/logout")
async def logout() -> JSONResponse:
    response = JSONResponse({"authenticated": False})
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
    return response
