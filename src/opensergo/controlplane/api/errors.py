"""Errors of the HTTP API as Kubernetes ``Status`` objects; ``details.causes`` name the field path.

Every malformed request gets a 4xx naming what is wrong: bodies beyond the parser limits
(:class:`~opensergo.spec.limits.LimitError`: 413 for size, else 400 with the field path), and
query or path parameters FastAPI cannot convert (422, ``query.start`` and the like).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from http import HTTPStatus
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from opensergo.controlplane.store.base import InvalidObjectError, NotFoundError
from opensergo.spec.errors import format_path
from opensergo.spec.limits import LimitError


class ApiError(Exception):
    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        causes: list[dict[str, str]] | None = None,
        *,
        retry_after: float = 0.0,
    ):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.causes = causes or []
        self.retry_after = retry_after

    def response(self) -> JSONResponse:
        headers = {"Retry-After": str(max(1, round(self.retry_after)))} if self.retry_after > 0 else None
        return JSONResponse(self.status(), status_code=self.code, headers=headers)

    def status(self) -> dict[str, Any]:
        """The Kubernetes Status object."""
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
        return body


def bad_request(message: str, field: str | None = None) -> ApiError:
    """400; naming ``field`` (a query or path parameter, a body field) when one is at fault."""
    if field is None:
        return ApiError(400, "BadRequest", message)
    return ApiError(400, "BadRequest", f"{field}: {message}", [{"field": field, "message": message}])


def beyond_limit(err: LimitError, what: str = "request body") -> ApiError:
    """A body beyond the parser limits: 413 for its size, else 400 naming the field."""
    if err.too_large:
        return ApiError(413, "RequestEntityTooLarge", f"{what}: {err.message}")
    field = err.field
    where = f"{field}: " if field else ""
    return ApiError(
        400, "BadRequest", f"{what}: {where}{err.message}", [{"field": field, "message": err.message}]
    )


def not_found(message: str) -> ApiError:
    return ApiError(404, "NotFound", message)


def forbidden_namespace(who: str, namespace: str) -> ApiError:
    return ApiError(403, "Forbidden", f"{who} may not view namespace {namespace!r}")


async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
    return exc.response()


async def _invalid(_: Request, exc: InvalidObjectError) -> JSONResponse:
    return ApiError(422, "Invalid", str(exc)).response()


async def _limit(_: Request, exc: LimitError) -> JSONResponse:
    return beyond_limit(exc).response()


async def _request_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
    """A query or path parameter of the wrong type or out of range, e.g. ``start=2**70``."""
    causes = [
        {
            "field": format_path([p for p in e.get("loc", ()) if isinstance(p, str | int)]),
            "message": str(e.get("msg", "")),
        }
        for e in exc.errors()
    ]
    first = causes[0] if causes else {"field": "", "message": "invalid request"}
    return ApiError(422, "Invalid", f"{first['field']}: {first['message']}", causes).response()


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    """Routing's own refusals (no such path, method not allowed) as Status objects too."""
    reason = HTTPStatus(exc.status_code).phrase.replace(" ", "")
    message = f"{exc.detail}: {request.method} {request.url.path}"
    response = ApiError(exc.status_code, reason, message).response()
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def _store_not_found(_: Request, exc: NotFoundError) -> JSONResponse:
    # A store refusing a write for a missing parent, e.g. a Kubernetes namespace.
    return not_found(str(exc.args[0] if exc.args else exc)).response()


# FastAPI calls each with the request and an exception of its key's type.
EXCEPTION_HANDLERS: dict[int | type[Exception], Callable[[Request, Any], Coroutine[Any, Any, Response]]] = {
    ApiError: _api_error,
    LimitError: _limit,
    RequestValidationError: _request_invalid,
    InvalidObjectError: _invalid,
    NotFoundError: _store_not_found,
    StarletteHTTPException: _http_error,
}
