"""OpenTelemetry metrics and span events for the fault-tolerance engine.

:class:`GovernanceMetrics` turns an :class:`~opensergo.governance.Engine` into the instruments of
:mod:`opensergo.observability.names` on any OTel ``MeterProvider``, so any exporter works (the
control plane's OTLP receiver, an OTel Collector, Prometheus, ...):

* read from the engine when the reader collects: blocks per (resource, rule, strategy)
  (observable counter over ``Engine.block_counts()``), requests in flight (``in_flight``), and
  breaker states (``breaker_states()``);
* read when the reader collects, from :mod:`opensergo.cache.report`: the top keys of every
  governed cache and their rates (``opensergo.cache.hot_keys``);
* recorded per request, through the engine's observer hook (``Engine.set_observer``, when the
  engine has it): passes, errors, and the response-time histogram. Each block also adds an event
  (``opensergo.block``) to the current span.

The request path stays cheap: a pass or an error adds one to a plain per-resource cell (exported
as an observable counter) and a response time is appended to a queue, about 0.2 µs in all. A
background thread moves the queued response times into the OTel histogram every 0.2 s (and on
``flush()``); that costs the OTel SDK's ~6 µs per value there instead of on the request.

Code that catches a :class:`~opensergo.governance.BlockedError` from an engine without the
observer hook can call :func:`record_block` to add the span event itself.
"""

from __future__ import annotations

import importlib.metadata
import logging
import threading
from collections import deque
from collections.abc import Iterable

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation

from opensergo.governance.api import default_engine
from opensergo.governance.errors import BlockedError
from opensergo.governance.faulttolerance.engine import Engine
from opensergo.observability import names

log = logging.getLogger(__name__)


def _package_version() -> str:
    # Not `from opensergo import __version__`: the package's lazy exports import the governance
    # runtime, which turns these metrics on (an import cycle).
    try:
        return importlib.metadata.version("opensergo")
    except importlib.metadata.PackageNotFoundError:
        return ""


_NS_PER_MS = 1_000_000
_FLUSH_PERIOD_S = 0.2
_QUEUE_LIMIT = 500_000  # response times waiting for the flusher; beyond it they are dropped


def block_event_attributes(error: BlockedError) -> dict[str, str]:
    return {
        names.RESOURCE: error.resource,
        names.RULE: error.rule,
        names.STRATEGY: error.strategy,
        names.STRATEGY_KIND: error.kind,
        "opensergo.block.detail": error.detail,
    }


def record_block(error: BlockedError) -> None:
    """Add an ``opensergo.block`` event to the current span (a no-op when nothing records it)."""
    span = trace.get_current_span()
    if span.is_recording():
        span.add_event(names.BLOCK_EVENT, block_event_attributes(error))


def _observe_hot_keys(options: CallbackOptions) -> Iterable[Observation]:
    # The governed caches' detectors, on the engine metrics' channel (the control plane's
    # dashboard shows them per app); no cache governed: no points.
    from opensergo.cache.report import hot_key_points

    return [
        Observation(
            p.rate, {names.CACHE: p.cache, names.CACHE_KEY: p.key, names.CACHE_HOT: str(p.hot).lower()}
        )
        for p in hot_key_points()
    ]


class GovernanceMetrics:
    """OTel instruments fed by one engine. ``close()`` detaches the observer hook."""

    def __init__(
        self,
        engine: Engine | None = None,
        meter_provider: MeterProvider | None = None,
        *,
        hook: bool = True,
    ) -> None:
        self.engine = engine if engine is not None else default_engine()
        provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
        meter: Meter = provider.get_meter("opensergo", _package_version())
        self._attrs: dict[str, dict[str, str]] = {}
        # Per resource: [passes, errors], incremented with single `+=` (atomic under the GIL).
        self._cells: dict[str, list[int]] = {}
        self._cells_lock = threading.Lock()
        self._rts: deque[tuple[str, float]] = deque()
        self.dropped = 0
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        meter.create_observable_counter(
            names.PASSED,
            callbacks=[self._observe_passes],
            unit="{request}",
            description="Requests admitted by the fault-tolerance checks.",
        )
        meter.create_observable_counter(
            names.ERRORS,
            callbacks=[self._observe_errors],
            unit="{request}",
            description="Admitted requests that ended with an error.",
        )
        self._duration = meter.create_histogram(
            names.DURATION,
            unit="ms",
            description="Response time of admitted requests.",
            explicit_bucket_boundaries_advisory=list(names.RT_BOUNDARIES_MS),
        )
        meter.create_observable_counter(
            names.BLOCKED,
            callbacks=[self._observe_blocks],
            unit="{request}",
            description="Requests refused, per resource, rule and strategy.",
        )
        meter.create_observable_gauge(
            names.CONCURRENCY,
            callbacks=[self._observe_concurrency],
            unit="{request}",
            description="Requests in flight (while a concurrency or BBR rule applies).",
        )
        meter.create_observable_gauge(
            names.BREAKER_STATE,
            callbacks=[self._observe_breakers],
            description="Circuit breaker state: 0 closed, 1 open, 2 half-open.",
        )
        meter.create_observable_gauge(
            names.HOT_KEYS,
            callbacks=[_observe_hot_keys],
            unit="{request}/s",
            description="The heaviest keys of each governed cache (opensergo.cache) and their rates.",
        )
        self.hooked = False
        if hook:
            setter = getattr(self.engine, "set_observer", None)
            if callable(setter):
                setter(self)
                self.hooked = True
                self._flusher = threading.Thread(
                    target=self._flush_loop, name="opensergo-metrics-flush", daemon=True
                )
                self._flusher.start()
            else:
                log.info(
                    "this engine has no observer hook: exporting blocks, concurrency and breaker"
                    " states only (no pass/error counts or response times)"
                )

    def close(self) -> None:
        if self.hooked:
            setter = getattr(self.engine, "set_observer", None)
            if callable(setter):
                setter(None)
            self.hooked = False
        self._stop.set()
        if self._flusher is not None:
            self._flusher.join(2)
            self._flusher = None
        self.flush()

    def flush(self) -> None:
        """Record the queued response times into the histogram now."""
        rts = self._rts
        record = self._duration.record
        attrs = self._resource_attrs
        while rts:
            try:
                resource, ms = rts.popleft()
            except IndexError:
                break
            record(ms, attrs(resource))

    def _flush_loop(self) -> None:
        while not self._stop.wait(_FLUSH_PERIOD_S):
            try:
                self.flush()
            except Exception:  # pragma: no cover - never let the thread die
                log.exception("recording response times failed")

    def _cell(self, resource: str) -> list[int]:
        cell = self._cells.get(resource)
        if cell is None:
            with self._cells_lock:
                cell = self._cells.setdefault(resource, [0, 0])
        return cell

    def _resource_attrs(self, resource: str) -> dict[str, str]:
        attrs = self._attrs.get(resource)
        if attrs is None:
            if len(self._attrs) > 10_000:  # unbounded resource names must not leak memory
                self._attrs.clear()
            attrs = self._attrs[resource] = {names.RESOURCE: resource}
        return attrs

    # -- the engine's observer hook -----------------------------------------------------------

    def on_pass(self, resource: str) -> None:
        cell = self._cells.get(resource) or self._cell(resource)
        cell[0] += 1

    def on_block(self, error: BlockedError) -> None:
        record_block(error)

    def on_complete(self, resource: str, rt_ns: int, error: bool) -> None:
        if error:
            cell = self._cells.get(resource) or self._cell(resource)
            cell[1] += 1
        if len(self._rts) < _QUEUE_LIMIT:
            self._rts.append((resource, rt_ns / _NS_PER_MS))
        else:
            self.dropped += 1

    # -- observable instruments ---------------------------------------------------------------

    def _observe_passes(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(c[0], self._resource_attrs(r)) for r, c in list(self._cells.items()) if c[0]]

    def _observe_errors(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(c[1], self._resource_attrs(r)) for r, c in list(self._cells.items()) if c[1]]

    def _observe_blocks(self, options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(count, {names.RESOURCE: resource, names.RULE: rule, names.STRATEGY: strategy})
            for (resource, rule, strategy), count in self.engine.block_counts().items()
        ]

    def _observe_concurrency(self, options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(self.engine.in_flight(resource), self._resource_attrs(resource))
            for resource in self.engine.resources
        ]

    def _observe_breakers(self, options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(int(state), {names.RESOURCE: resource, names.STRATEGY: strategy})
            for (resource, strategy), state in self.engine.breaker_states().items()
        ]

    def __repr__(self) -> str:
        return f"<GovernanceMetrics hooked={self.hooked}>"
