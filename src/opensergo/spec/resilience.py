"""Typed views of a TrafficRouter HTTP route's resilience fields (Istio VirtualService shapes).

``TrafficRouter`` keeps ``timeout``, ``retries``, ``fault``, ``mirror``, ``rewrite``, ``redirect``
and ``directResponse`` as written, so that any real VirtualService body parses. The data planes
(the SDK's outbound routing and the control plane's Envoy translation) read them through
:func:`route_policy`, so both apply one meaning:

* ``timeout``: the whole call, retries included (Envoy's route timeout). Unset: no timeout.
* ``retries``: ``attempts`` retries after the first try (Istio), each try bounded by
  ``perTryTimeout``; ``retryOn`` is Envoy's comma list (``5xx``, ``gateway-error``, ``reset``,
  ``connect-failure``, ``retriable-4xx``, ``refused-stream``) plus bare status codes. Istio's
  default when ``retryOn`` is absent: ``connect-failure,refused-stream,503``.
* ``fault``: ``delay.fixedDelay`` for ``percentage`` % of requests, then ``abort.httpStatus``
  (or ``grpcStatus``) for ``percentage`` % of requests (100 % when no percentage is given).
* ``mirror``: a copy of ``mirrorPercentage`` % of requests (default 100) to another host/subset;
  its response is ignored.
* ``rewrite``: ``uri`` replaces the matched path prefix (the whole path for an exact match);
  ``authority`` replaces the Host header.
* ``redirect`` / ``directResponse``: answered without calling any instance.

Durations are Istio's (protobuf) form: ``"1.5s"``, ``"250ms"``, ``"2m"``, ``"1h"``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from opensergo.spec.errors import FieldError
from opensergo.spec.traffic import HTTPRoute

__all__ = [
    "DEFAULT_RETRY_ON",
    "Abort",
    "Delay",
    "DirectResponse",
    "Mirror",
    "Redirect",
    "Retries",
    "Rewrite",
    "RoutePolicy",
    "parse_duration_seconds",
    "route_policy",
]

DEFAULT_RETRY_ON = "connect-failure,refused-stream,503"
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
# Envoy's HTTP retry conditions the SDK understands (gRPC ones are matched on the status name).
HTTP_RETRY_CONDITIONS = frozenset(
    {
        "5xx",
        "gateway-error",
        "reset",
        "connect-failure",
        "retriable-4xx",
        "refused-stream",
        "retriable-status-codes",
        "cancelled",
        "deadline-exceeded",
        "internal",
        "resource-exhausted",
        "unavailable",
    }
)


def parse_duration_seconds(value: Any, path: tuple[str | int, ...]) -> float:
    """``"1.5s"`` -> 1.5 (also a bare number of seconds); FieldError naming ``path`` otherwise."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    match = _DURATION.match(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise FieldError(path, f"invalid duration {value!r}: expected e.g. '250ms', '1.5s', '2m'")
    return float(match.group(1)) * _UNIT[match.group(2)]


def _percent(block: dict[str, Any], path: tuple[str | int, ...]) -> float:
    """Istio's ``percentage: {value: 12.5}`` or the deprecated integer ``percent``; default 100."""
    if "percentage" in block and block["percentage"] is not None:
        value = block["percentage"].get("value", 0) if isinstance(block["percentage"], dict) else None
    else:
        value = block.get("percent", 100)
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 100:
        raise FieldError((*path, "percentage"), f"must be a percentage between 0 and 100, got {value!r}")
    return float(value)


def _mapping(value: Any, path: tuple[str | int, ...]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FieldError(path, f"expected a map, got {type(value).__name__}")
    return value


@dataclass(frozen=True, slots=True)
class Retries:
    attempts: int
    per_try_timeout: float | None
    retry_on: tuple[str, ...]  # conditions (Envoy names)
    status_codes: frozenset[int]  # bare codes listed in retryOn


@dataclass(frozen=True, slots=True)
class Delay:
    seconds: float
    percent: float


@dataclass(frozen=True, slots=True)
class Abort:
    http_status: int | None
    grpc_status: str | None
    percent: float


@dataclass(frozen=True, slots=True)
class Mirror:
    host: str
    subset: str | None
    port: int | None
    percent: float


@dataclass(frozen=True, slots=True)
class Rewrite:
    uri: str | None
    authority: str | None


@dataclass(frozen=True, slots=True)
class Redirect:
    uri: str | None
    authority: str | None
    scheme: str | None
    port: int | None
    code: int


@dataclass(frozen=True, slots=True)
class DirectResponse:
    status: int
    body: str


@dataclass(frozen=True, slots=True)
class RoutePolicy:
    """Everything an HTTP route asks beyond picking a destination; None = not set."""

    timeout: float | None = None
    retries: Retries | None = None
    delay: Delay | None = None
    abort: Abort | None = None
    mirror: Mirror | None = None
    rewrite: Rewrite | None = None
    redirect: Redirect | None = None
    direct_response: DirectResponse | None = None

    @property
    def empty(self) -> bool:
        return self == _EMPTY


_EMPTY = RoutePolicy()


def _retries(value: dict[str, Any]) -> Retries | None:
    path: tuple[str | int, ...] = ("retries",)
    attempts = value.get("attempts", 0)
    if not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 0:
        raise FieldError((*path, "attempts"), f"must be a non-negative integer, got {attempts!r}")
    if attempts == 0:
        return None
    per_try = value.get("perTryTimeout")
    retry_on = value.get("retryOn") or DEFAULT_RETRY_ON
    if not isinstance(retry_on, str):
        raise FieldError((*path, "retryOn"), "must be a comma-separated string")
    conditions: list[str] = []
    codes: set[int] = set()
    for item in (part.strip() for part in retry_on.split(",")):
        if not item:
            continue
        if item.isdigit():
            codes.add(int(item))
        elif item in HTTP_RETRY_CONDITIONS:
            conditions.append(item)
        else:
            raise FieldError((*path, "retryOn"), f"unknown retry condition {item!r}")
    return Retries(
        attempts=attempts,
        per_try_timeout=parse_duration_seconds(per_try, (*path, "perTryTimeout")) if per_try else None,
        retry_on=tuple(conditions),
        status_codes=frozenset(codes),
    )


def _fault(value: dict[str, Any]) -> tuple[Delay | None, Abort | None]:
    delay = abort = None
    if value.get("delay") is not None:
        block = _mapping(value["delay"], ("fault", "delay"))
        fixed = block.get("fixedDelay")
        if fixed is None:
            raise FieldError(("fault", "delay", "fixedDelay"), "is required")
        seconds = parse_duration_seconds(fixed, ("fault", "delay", "fixedDelay"))
        delay = Delay(seconds, _percent(block, ("fault", "delay")))
    if value.get("abort") is not None:
        block = _mapping(value["abort"], ("fault", "abort"))
        status = block.get("httpStatus")
        grpc = block.get("grpcStatus")
        if status is None and grpc is None:
            raise FieldError(("fault", "abort"), "set httpStatus or grpcStatus")
        if status is not None and (not isinstance(status, int) or not 200 <= status <= 599):
            raise FieldError(("fault", "abort", "httpStatus"), f"must be an HTTP status, got {status!r}")
        abort = Abort(status, str(grpc) if grpc is not None else None, _percent(block, ("fault", "abort")))
    return delay, abort


def _mirror(http: HTTPRoute) -> Mirror | None:
    if not http.mirror:
        return None
    host = http.mirror.get("host")
    if not isinstance(host, str) or not host:
        raise FieldError(("mirror", "host"), "is required")
    port = (http.mirror.get("port") or {}).get("number")
    percent = 100.0
    if http.mirrorPercentage is not None:
        percent = _percent({"percentage": http.mirrorPercentage}, ())
    elif http.mirrorPercent is not None or http.mirror_percent is not None:
        percent = _percent({"percent": http.mirrorPercent or http.mirror_percent}, ())
    return Mirror(host, http.mirror.get("subset"), port, percent)


def route_policy(http: HTTPRoute) -> RoutePolicy:
    """The typed resilience fields of ``http``; FieldError on a malformed one."""
    timeout = parse_duration_seconds(http.timeout, ("timeout",)) if http.timeout else None
    retries = _retries(_mapping(http.retries, ("retries",))) if http.retries else None
    delay, abort = _fault(_mapping(http.fault, ("fault",))) if http.fault else (None, None)
    rewrite = None
    if http.rewrite:
        uri = http.rewrite.get("uri")
        authority = http.rewrite.get("authority")
        rewrite = Rewrite(
            uri if isinstance(uri, str) else None, authority if isinstance(authority, str) else None
        )
    redirect = None
    if http.redirect:
        value = http.redirect
        code = value.get("redirectCode", 301)
        if code not in (301, 302, 303, 307, 308):
            raise FieldError(("redirect", "redirectCode"), f"must be 301, 302, 303, 307 or 308, got {code!r}")
        port = value.get("port")
        redirect = Redirect(value.get("uri"), value.get("authority"), value.get("scheme"), port, code)
    direct = None
    if http.directResponse:
        status = http.directResponse.get("status")
        if not isinstance(status, int) or not 200 <= status <= 599:
            raise FieldError(("directResponse", "status"), f"must be an HTTP status, got {status!r}")
        body = http.directResponse.get("body") or {}
        direct = DirectResponse(status, str(body.get("string", "")) if isinstance(body, dict) else "")
    return RoutePolicy(timeout, retries, delay, abort, _mirror(http), rewrite, redirect, direct)
