"""Client spans for ``grpc.aio`` channels built before tracing was turned on.

OpenTelemetry's ``GrpcAioInstrumentorClient`` adds its interceptors when a channel is created,
by wrapping ``grpc.aio.insecure_channel``; a channel an app built earlier (at import, or before
the launcher started governance and tracing) would never make a span. This interceptor, given
to every channel by ``opensergo-run``, runs OTel's client interceptor for each call while
tracing is on (one flag test otherwise), so those channels are traced the same way. Channels
made after tracing started carry OTel's own interceptors and do not get this one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import grpc.aio

from opensergo.observability import spans

__all__ = ["AioTracingClientInterceptor", "has_otel_interceptor"]

if TYPE_CHECKING:
    _Bases = tuple[Any, ...]
_BASES = (
    grpc.aio.UnaryUnaryClientInterceptor,
    grpc.aio.UnaryStreamClientInterceptor,
    grpc.aio.StreamUnaryClientInterceptor,
    grpc.aio.StreamStreamClientInterceptor,
)


def has_otel_interceptor(interceptors: Sequence[Any]) -> bool:
    """Whether OTel's instrumentation already gave a channel its client interceptors."""
    return any(type(i).__module__.startswith("opentelemetry.instrumentation.grpc") for i in interceptors)


class AioTracingClientInterceptor(*_BASES):  # type: ignore[misc]
    """OTel's aio client interceptors, applied per call while tracing is on."""

    def __init__(self, skip: Callable[[str], bool] | None = None) -> None:
        self.skip = skip
        self._for: Any = None
        self._otel: Sequence[Any] = ()

    def _delegate(self, details: Any, kind: type[Any]) -> Any:
        provider = spans.tracer_provider()
        if provider is None:
            return None
        raw = details.method
        if self.skip is not None and self.skip(raw.decode() if isinstance(raw, bytes) else str(raw)):
            return None
        if self._for is not provider:
            from opentelemetry.instrumentation.grpc import aio_client_interceptors

            self._otel = aio_client_interceptors(tracer_provider=provider)  # type: ignore[no-untyped-call]
            self._for = provider
        return next((i for i in self._otel if isinstance(i, kind)), None)

    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        otel = self._delegate(client_call_details, grpc.aio.UnaryUnaryClientInterceptor)
        if otel is None:
            return await continuation(client_call_details, request)
        return await otel.intercept_unary_unary(continuation, client_call_details, request)

    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        otel = self._delegate(client_call_details, grpc.aio.UnaryStreamClientInterceptor)
        if otel is None:
            return await continuation(client_call_details, request)
        return await otel.intercept_unary_stream(continuation, client_call_details, request)

    async def intercept_stream_unary(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        otel = self._delegate(client_call_details, grpc.aio.StreamUnaryClientInterceptor)
        if otel is None:
            return await continuation(client_call_details, request_iterator)
        return await otel.intercept_stream_unary(continuation, client_call_details, request_iterator)

    async def intercept_stream_stream(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        otel = self._delegate(client_call_details, grpc.aio.StreamStreamClientInterceptor)
        if otel is None:
            return await continuation(client_call_details, request_iterator)
        return await otel.intercept_stream_stream(continuation, client_call_details, request_iterator)
