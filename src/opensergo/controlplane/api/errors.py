"""Errors of the HTTP API as Kubernetes ``Status`` objects; ``details.causes`` name the field path."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from opensergo.controlplane.store.base import InvalidObjectError, NotFoundError


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, causes: list[dict[str, str]] | None = None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.causes = causes or []

    def response(self) -> JSONResponse:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.causes:
            body["details"] = {"causes": self.causes}
        return JSONResponse(body, status_code=self.code)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def not_found(message: str) -> ApiError:
    return ApiError(404, "NotFound", message)


def forbidden_namespace(who: str, namespace: str) -> ApiError:
    return ApiError(403, "Forbidden", f"{who} may not view namespace {namespace!r}")


async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
    return exc.response()


async def _invalid(_: Request, exc: InvalidObjectError) -> JSONResponse:
    return ApiError(422, "Invalid", str(exc)).response()


async def _store_not_found(_: Request, exc: NotFoundError) -> JSONResponse:
    # A store refusing a write for a missing parent, e.g. a Kubernetes namespace.
    return not_found(str(exc.args[0] if exc.args else exc)).response()


# FastAPI calls each with the request and an exception of its key's type.
EXCEPTION_HANDLERS: dict[int | type[Exception], Callable[[Request, Any], Coroutine[Any, Any, Response]]] = {
    ApiError: _api_error,
    InvalidObjectError: _invalid,
    NotFoundError: _store_not_found,
}
