"""Tracing on, into memory: the spans and log records every integration produced."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from opentelemetry import trace
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from opensergo.governance import Engine, ManualClock
from opensergo.governance.routing import lanes
from opensergo.observability.tracing import TracingHandle, enable_tracing


@dataclass
class Traced:
    handle: TracingHandle
    exporter: InMemorySpanExporter
    logs: InMemoryLogRecordExporter

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> ReadableSpan:
        found = [s for s in self.spans() if s.name == name]
        assert len(found) == 1, [s.name for s in self.spans()]
        return found[0]


_exporter = InMemorySpanExporter()


@pytest.fixture(scope="session")
def global_provider() -> TracerProvider:
    """The process's global TracerProvider, exporting into memory too. Global because some
    instrumentations (the sync gRPC client's) create spans with the global provider only, and
    OpenTelemetry lets a process set it once."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider(resource=Resource.create({"service.name": "demo"}))
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(_exporter))
    return provider


@pytest.fixture
def traced(global_provider: TracerProvider) -> Iterator[Traced]:
    exporter = _exporter
    exporter.clear()
    provider = global_provider
    logs = InMemoryLogRecordExporter()
    handle = enable_tracing(
        app="demo", tracer_provider=provider, log_exporter=logs, log_level=logging.INFO, environ={}
    )
    try:
        yield Traced(handle, exporter, logs)
    finally:
        handle.shutdown()
        exporter.clear()
        lanes.configure([])


@pytest.fixture
def engine() -> Engine:
    return Engine(clock=ManualClock())
