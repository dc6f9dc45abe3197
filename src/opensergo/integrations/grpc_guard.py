"""A gRPC client interceptor guarding outbound calls with the fault-tolerance engine.

::

    channel = grpc.intercept_channel(grpc.insecure_channel(target), GuardClientInterceptor())

Each call is one outbound entry (adaptive protection skips outbound entries) of resource
``/package.Service/Method`` (``resource=`` maps it). A blocked call raises the
:class:`~opensergo.governance.BlockedError` before anything is sent, as the httpx and requests
guards do. The entry ends when the call ends (for a response stream, when the stream does); a
non-OK status counts as an error for circuit breakers (every code but OK, or only
``error_codes``). ``skip(method)`` True: the call is not guarded.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

import grpc

from opensergo.governance.api import default_engine
from opensergo.governance.blocking import ErrorStatus
from opensergo.governance.faulttolerance.engine import Engine, Entry

__all__ = ["GuardClientInterceptor"]

if TYPE_CHECKING:
    _Bases = tuple[Any, ...]
_BASES = (
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
)


def status_error(
    code: grpc.StatusCode | None, name: str, error_codes: Collection[grpc.StatusCode] | None
) -> ErrorStatus | None:
    """What a call that ended with ``code`` reports to the breakers: None for OK (or no status),
    and for a code outside ``error_codes`` when those are given; else an ErrorStatus."""
    if code is None or code == grpc.StatusCode.OK:
        return None
    if error_codes is not None and code not in error_codes:
        return None
    return ErrorStatus(code, name)


class GuardClientInterceptor(*_BASES):  # type: ignore[misc]
    """Guards every call of the channel it intercepts; see the module documentation."""

    def __init__(
        self,
        *,
        engine: Engine | None = None,
        resource: Callable[[str], str] | None = None,
        error_codes: Collection[grpc.StatusCode] | None = None,
        skip: Callable[[str], bool] | None = None,
    ) -> None:
        self.engine = engine if engine is not None else default_engine()
        self.skip = skip
        self.resource = resource
        self.error_codes = frozenset(error_codes) if error_codes is not None else None

    def _enter(self, details: grpc.ClientCallDetails) -> tuple[Entry, str]:
        method = details.method
        name = self.resource(method) if self.resource is not None else method
        return self.engine.entry(name, inbound=False), name

    def _call(self, continuation: Callable[..., Any], details: grpc.ClientCallDetails, request: Any) -> Any:
        if self.skip is not None and self.skip(details.method):
            return continuation(details, request)
        entry, name = self._enter(details)
        try:
            call = continuation(details, request)
        except BaseException as exc:
            entry.exit(exc)
            raise
        call.add_done_callback(lambda done: entry.exit(self._error(done, name)))
        return call

    def _error(self, call: Any, name: str) -> ErrorStatus | None:
        try:
            code = call.code()
        except Exception:  # pragma: no cover - a call without a status
            return None
        return status_error(code, name, self.error_codes)

    def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return self._call(continuation, client_call_details, request)

    def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return self._call(continuation, client_call_details, request)

    def intercept_stream_unary(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        return self._call(continuation, client_call_details, request_iterator)

    def intercept_stream_stream(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        return self._call(continuation, client_call_details, request_iterator)
