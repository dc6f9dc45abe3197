"""One call to trace every request and export traces and logs over OTLP.

::

    from opensergo.observability import enable_tracing

    handle = enable_tracing(app="foo-app")     # OTLP/gRPC to the control plane
    ...
    handle.shutdown()                          # flush and stop (also at interpreter exit)

What it does:

* builds a TracerProvider with the resource the control plane keys traces by (``service.name`` =
  app, ``service.namespace``, ``service.instance.id``, ``opensergo.framework``), a batching OTLP
  span exporter and :class:`OpenSergoSpanProcessor` (lane and route attributes on client spans),
  and makes it the global provider -- unless the application set one already, which is then used
  as it is (our processor is added to it when it is the SDK's);
* the sampler is the SDK's default, read from ``OTEL_TRACES_SAMPLER`` /
  ``OTEL_TRACES_SAMPLER_ARG`` (default: parent-based, always on); propagation is the global
  propagator, by default W3C ``traceparent`` + ``baggage`` (``OTEL_PROPAGATORS``);
* turns the integrations' server spans on (ASGI, WSGI/Flask/Django, gRPC servers) and instruments
  the httpx, requests and gRPC clients (:mod:`.instrument`);
* logs: a LoggerProvider with a batching OTLP log exporter, and a handler on the root logger
  (records at ``log_level`` and above, default INFO; each carries the trace and span id of the
  request it was logged in).

The endpoint of both exporters: ``endpoint=``, else ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` /
``OTEL_EXPORTER_OTLP_LOGS_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT``, else the control plane of
the bootstrap configuration (see :mod:`.export`), with its access token (or ``token=``).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from opensergo.observability import spans
from opensergo.observability.export import exporter_options, resource_attributes
from opensergo.observability.instrument import instrument_clients, uninstrument_clients

if TYPE_CHECKING:
    from opensergo.client.credentials import BearerToken

__all__ = ["OpenSergoSpanProcessor", "TracingHandle", "enable_tracing"]

log = logging.getLogger(__name__)


class OpenSergoSpanProcessor(SpanProcessor):
    """Lane and route attributes on client spans (see :mod:`opensergo.observability.spans`)."""

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        spans.on_client_span_start(span)

    def on_end(self, span: ReadableSpan) -> None:
        return None


@dataclass
class TracingHandle:
    tracer_provider: trace.TracerProvider
    owns_tracer_provider: bool
    logger_provider: Any = None
    log_handler: logging.Handler | None = None
    instrumented: list[str] = field(default_factory=list)
    _closed: bool = field(default=False, repr=False)

    def force_flush(self, timeout_millis: int = 10_000) -> bool:
        ok = True
        for provider in (self.tracer_provider, self.logger_provider):
            flush = getattr(provider, "force_flush", None)
            if callable(flush):
                ok = bool(flush(timeout_millis)) and ok
        return ok

    def shutdown(self) -> None:
        """Stop creating spans; flush and stop the providers this call built."""
        global _active
        if self._closed:
            return
        self._closed = True
        spans.set_provider(None)
        uninstrument_clients()
        if self.log_handler is not None:
            logging.getLogger().removeHandler(self.log_handler)
        if self.logger_provider is not None:
            self.logger_provider.shutdown()
        if self.owns_tracer_provider:
            stop = getattr(self.tracer_provider, "shutdown", None)
            if callable(stop):
                stop()
            _shut_down.add(id(self.tracer_provider))
        with _lock:
            if _active is self:
                _active = None


_active: TracingHandle | None = None
_lock = threading.Lock()


def current() -> TracingHandle | None:
    """The handle of the :func:`enable_tracing` in force, if any."""
    return _active


def enable_tracing(
    *,
    app: str | None = None,
    namespace: str = "default",
    endpoint: str | None = None,
    instance_id: str | None = None,
    framework: str | None = None,
    exporter: SpanExporter | None = None,
    log_exporter: Any = None,
    logs: bool = True,
    log_level: int = logging.INFO,
    instrument: bool = True,
    tracer_provider: trace.TracerProvider | None = None,
    environ: Mapping[str, str] | None = None,
    token: str | BearerToken | None = None,
) -> TracingHandle:
    """Trace requests and export spans and logs; see the module docstring. Process-wide and
    idempotent: a second call returns the first handle.

    ``exporter`` / ``log_exporter`` replace the OTLP exporters (any OTel SpanExporter /
    LogRecordExporter). ``logs=False`` exports no logs; ``instrument=False`` leaves the client
    libraries alone (server spans only). ``tracer_provider``: create spans with this provider
    (nothing exported by us, the global provider untouched).
    """
    global _active
    with _lock:
        if _active is not None:
            return _active
        env = os.environ if environ is None else environ
        from opentelemetry.sdk.resources import Resource

        resource = Resource.create(resource_attributes(app, namespace, instance_id, framework, env))
        current_provider = tracer_provider or trace.get_tracer_provider()
        # Ours to build when none is set yet; the global is set once per process (OTel's rule),
        # so a provider built after a shutdown serves the integrations without being global.
        owns = isinstance(current_provider, trace.ProxyTracerProvider) or (
            tracer_provider is None and id(current_provider) in _shut_down
        )
        if owns:
            if exporter is None:
                from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

                exporter = OTLPSpanExporter(**exporter_options("traces", endpoint, env, token))
            sdk_provider = TracerProvider(resource=resource)
            sdk_provider.add_span_processor(BatchSpanProcessor(exporter))
            if isinstance(current_provider, trace.ProxyTracerProvider):
                trace.set_tracer_provider(sdk_provider)
            provider: trace.TracerProvider = sdk_provider
        else:
            provider = current_provider
            log.info("tracing: using the application's TracerProvider (%s)", type(provider).__name__)
        _add_our_processor(provider)
        handle = TracingHandle(provider, owns)
        if logs:
            handle.logger_provider, handle.log_handler = _enable_logs(
                resource, endpoint, env, log_exporter, log_level, token
            )
        spans.set_provider(provider)
        if instrument:
            handle.instrumented = instrument_clients(provider)
        _active = handle
    atexit.register(handle.shutdown)
    return handle


_processed: set[int] = set()
_shut_down: set[int] = set()  # providers we built and stopped


def _add_our_processor(provider: trace.TracerProvider) -> None:
    """Once per provider: processors cannot be removed, and a second one would do it twice."""
    if isinstance(provider, TracerProvider) and id(provider) not in _processed:
        _processed.add(id(provider))
        provider.add_span_processor(OpenSergoSpanProcessor())


def _enable_logs(
    resource: Any,
    endpoint: str | None,
    env: Mapping[str, str],
    exporter: Any,
    level: int,
    token: str | BearerToken | None,
) -> tuple[Any, logging.Handler]:
    from opentelemetry.instrumentation.logging.handler import LoggingHandler
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    if exporter is None:
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter

        exporter = OTLPLogExporter(**exporter_options("logs", endpoint, env, token))
    provider = LoggerProvider(resource=resource)
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    handler = LoggingHandler(level=level, logger_provider=provider)
    logging.getLogger().addHandler(handler)
    return provider, handler
