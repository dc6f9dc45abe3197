"""In-memory per-second metrics folded from OTLP exports, per (namespace, app, resource).

Data planes export cumulative (or delta) OpenTelemetry instruments named in
:mod:`opensergo.common.metric_names`. For every (instance, instrument, attributes) the store keeps
the last cumulative value, turns each new value into a delta, and spreads the delta over the
seconds the export interval covered, measured on the control plane's clock (the receive time is
the interval's end, so data-plane clock skew does not move points). Gauges (concurrency, breaker
state) keep the latest value per instance; a series' value is the sum (or count of open breakers)
over instances that reported recently.

Each series is a ring of ``retention`` one-second slots in compact arrays, allocated when the
series first gets data; response-time histograms are kept per second only where requests
completed. Instances and series that stop reporting are dropped after ``retention``.

Exporters choose the names (app, instance, resource), so what they can make the store hold is
bounded (:class:`~opensergo.controlplane.limits.Limits`): series per app and in total, exporting
instances per app, data points used per export, and remembered cumulative points per instance.
Values must be finite and at most :data:`MAX_VALUE` in magnitude. Whatever is beyond is dropped
and counted per reason in :attr:`IngestStats.dropped` (``/metrics``:
``opensergo_otlp_dropped_points_total``).
"""

from __future__ import annotations

import bisect
import math
import time
from array import array
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as ms_pb
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2

from opensergo.common import metric_names as names
from opensergo.controlplane.limits import Limits
from opensergo.controlplane.metrics.hotkeys import HotKeyBoard, HotKeyReport

BOUNDS: tuple[float, ...] = names.RT_BOUNDARIES_MS
NBUCKETS = len(BOUNDS) + 1  # the last bucket is (BOUNDS[-1], +inf)
# Counter instrument -> the Series field it adds to.
_COUNTER_FIELDS = {names.PASSED: "passed", names.BLOCKED: "blocked", names.ERRORS: "errors"}

DELTA = metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
# A first cumulative value counts as new traffic only if its series started this recently
# (a process that just started); otherwise it is a baseline (the control plane restarted).
_FRESH_START_S = 15.0
# Deltas spanning longer than this are spread over the last _MAX_SPREAD_S seconds.
_MAX_SPREAD_S = 60
# Gauges older than this no longer count towards a series' current value.
GAUGE_FRESH_S = 15.0

# Larger magnitudes are no count, duration or gauge a data plane measures; summing them could
# overflow to infinity, which JSON cannot carry.
MAX_VALUE = 1e15

_FIELDS = ("passed", "blocked", "errors", "count", "rt_sum", "conc", "open", "half_open")


def _attrs(kvs: Iterable[common_pb2.KeyValue]) -> dict[str, str]:
    out: dict[str, str] = {}
    for kv in kvs:
        v = kv.value
        which = v.WhichOneof("value")
        if which == "string_value":
            out[kv.key] = v.string_value
        elif which == "int_value":
            out[kv.key] = str(v.int_value)
        elif which == "double_value":
            out[kv.key] = repr(v.double_value)
        elif which == "bool_value":
            out[kv.key] = "true" if v.bool_value else "false"
    return out


def percentile(buckets: list[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) of counts on BOUNDS, interpolated within its bucket."""
    total = sum(buckets)
    if total <= 0:
        return None
    rank = q * total
    seen = 0.0
    for i, c in enumerate(buckets):
        if c <= 0:
            continue
        if seen + c >= rank:
            lower = BOUNDS[i - 1] if i > 0 else 0.0
            upper = BOUNDS[i] if i < len(BOUNDS) else BOUNDS[-1]
            if i >= len(BOUNDS):
                return upper  # beyond the last finite bound: report that bound
            return lower + (upper - lower) * ((rank - seen) / c)
        seen += c
    return BOUNDS[-1]


def rebucket(counts: Iterable[int | float], bounds: Iterable[float]) -> list[float]:
    """Counts on arbitrary explicit bounds mapped onto BOUNDS (each bucket by its upper bound)."""
    out = [0.0] * NBUCKETS
    upper = [*bounds, math.inf]
    for c, ub in zip(counts, upper, strict=False):
        if c:
            out[min(bisect.bisect_left(BOUNDS, ub), NBUCKETS - 1)] += c
    return out


class Series:
    """One (namespace, app, resource): a ring of per-second slots."""

    __slots__ = ("hist", "key", "last", "n", "secs", *_FIELDS)

    def __init__(self, key: tuple[str, str, str], retention: int) -> None:
        self.key = key
        self.n = retention
        self.secs = array("q", [-1]) * retention
        zeros = array("d", [0.0]) * retention
        self.passed = array("d", zeros)
        self.blocked = array("d", zeros)
        self.errors = array("d", zeros)
        self.count = array("d", zeros)
        self.rt_sum = array("d", zeros)
        self.conc = array("d", zeros)
        self.open = array("d", zeros)
        self.half_open = array("d", zeros)
        self.hist: dict[int, list[float]] = {}
        self.last = 0  # last second with data

    def _slot(self, sec: int) -> int:
        i = sec % self.n
        if self.secs[i] != sec:
            self.secs[i] = sec
            for name in _FIELDS:
                getattr(self, name)[i] = 0.0
            self.hist.pop(i, None)
        if sec > self.last:
            self.last = sec
        return i

    def add(self, name: str, t0: float, t1: float, delta: float) -> None:
        """Spread ``delta`` uniformly over [t0, t1] (seconds on the control plane's clock)."""
        if delta == 0:
            return
        t0 = max(t0, t1 - _MAX_SPREAD_S)
        arr: array[float] = getattr(self, name)
        span = t1 - t0
        if span <= 0:
            sec = int(t1)
            arr[self._slot(sec)] += delta
            return
        s = int(t0)
        while s < t1:
            part = (min(t1, s + 1) - max(t0, s)) / span
            if part > 0:
                arr[self._slot(s)] += delta * part
            s += 1

    def set(self, name: str, sec: int, value: float) -> None:
        getattr(self, name)[self._slot(sec)] = value

    def add_hist(self, sec: int, counts: list[float]) -> None:
        i = self._slot(sec)
        current = self.hist.get(i)
        if current is None:
            self.hist[i] = list(counts)
        else:
            for j, c in enumerate(counts):
                current[j] += c

    def point(self, sec: int) -> dict[str, Any] | None:
        i = sec % self.n
        if self.secs[i] != sec:
            return None
        count = self.count[i]
        hist = self.hist.get(i)
        return {
            "t": sec,
            "pass": round(self.passed[i], 3),
            "block": round(self.blocked[i], 3),
            "error": round(self.errors[i], 3),
            "completed": round(count, 3),
            "avgRt": round(self.rt_sum[i] / count, 3) if count > 0 else None,
            "p99Rt": _round(percentile(hist, 0.99)) if hist else None,
            "concurrency": self.conc[i],
            "breakerOpen": self.open[i],
            "breakerHalfOpen": self.half_open[i],
        }

    def totals(self, start: int, end: int) -> dict[str, Any]:
        """Sums over seconds [start, end): QPS figures are averages per second of the span."""
        passed = blocked = errors = count = rt_sum = 0.0
        conc_max = open_max = 0.0
        hist = [0.0] * NBUCKETS
        seen = False
        for sec in range(max(start, end - self.n), end):
            i = sec % self.n
            if self.secs[i] != sec:
                continue
            seen = True
            passed += self.passed[i]
            blocked += self.blocked[i]
            errors += self.errors[i]
            count += self.count[i]
            rt_sum += self.rt_sum[i]
            conc_max = max(conc_max, self.conc[i])
            open_max = max(open_max, self.open[i])
            h = self.hist.get(i)
            if h:
                for j, c in enumerate(h):
                    hist[j] += c
        span = max(1, end - start)
        return {
            "seen": seen,
            "passed": passed,
            "blocked": blocked,
            "errors": errors,
            "completed": count,
            "rtSum": rt_sum,
            "passQps": round(passed / span, 3),
            "blockQps": round(blocked / span, 3),
            "errorQps": round(errors / span, 3),
            "avgRt": round(rt_sum / count, 3) if count > 0 else None,
            "p99Rt": _round(percentile(hist, 0.99)),
            "concurrencyMax": conc_max,
            "breakerOpenMax": open_max,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


@dataclass
class _Cumulative:
    start: int  # start_time_unix_nano
    value: Any  # float, or (count, sum, bucket counts) for histograms
    received: float


@dataclass
class InstanceInfo:
    namespace: str
    app: str
    instance: str
    attributes: dict[str, str]
    first_seen: float
    last_seen: float
    exports: int = 0
    points: dict[tuple[str, tuple[tuple[str, str], ...]], _Cumulative] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "app": self.app,
            "instance": self.instance,
            "language": self.attributes.get(names.SDK_LANGUAGE, ""),
            "framework": self.attributes.get(names.FRAMEWORK, ""),
            "sdk": " ".join(
                v
                for v in (
                    self.attributes.get("telemetry.sdk.name", ""),
                    self.attributes.get("telemetry.sdk.version", ""),
                )
                if v
            ),
            "firstSeen": self.first_seen,
            "lastSeen": self.last_seen,
            "exports": self.exports,
        }


# Why data points were dropped (the label of opensergo_otlp_dropped_points_total).
DROP_REASONS = (
    "non_finite",  # NaN, an infinity or a magnitude beyond MAX_VALUE
    "export_points",  # beyond otlp_points_per_export in one export
    "app_series",  # a new resource beyond otlp_series_per_app
    "total_series",  # a new series beyond otlp_series_total
    "app_instances",  # a new exporting instance beyond otlp_instances_per_app
    "instance_points",  # a new cumulative point beyond what one instance may have
    "hot_keys",  # a cache key beyond the hot keys remembered per app
)


@dataclass
class IngestStats:
    requests: int = 0
    points: int = 0
    ignored: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))


def _usable(value: float) -> bool:
    return math.isfinite(value) and abs(value) <= MAX_VALUE


def _points_in(rm: metrics_pb2.ResourceMetrics) -> int:
    count = 0
    for sm in rm.scope_metrics:
        for metric in sm.metrics:
            which = metric.WhichOneof("data")
            if which is not None:
                count += len(getattr(metric, which).data_points)
    return count


class _Budget:
    """Data points one export may still use."""

    __slots__ = ("left",)

    def __init__(self, points: int) -> None:
        self.left = points


class MetricStore:
    """Series per (namespace, app, resource) for the last ``retention`` seconds."""

    def __init__(self, retention: int = 3600, clock: Any = time.time, limits: Limits | None = None) -> None:
        if retention < 10:
            raise ValueError("metrics retention must be at least 10 seconds")
        self.retention = int(retention)
        self._clock = clock
        self.limits = limits or Limits()
        self.series: dict[tuple[str, str, str], Series] = {}
        self.instances: dict[tuple[str, str, str], InstanceInfo] = {}
        self._series_per_app: dict[tuple[str, str], int] = {}
        self._instances_per_app: dict[tuple[str, str], int] = {}
        # (ns, app, resource) -> {(instance, strategy or ""): (value, received)}
        self._gauges: dict[tuple[str, tuple[str, str, str]], dict[tuple[str, str], tuple[float, float]]] = {}
        self.stats = IngestStats()
        self.hot_keys = HotKeyBoard()

    # -- ingest -----------------------------------------------------------------------------

    def ingest(self, request: ms_pb.ExportMetricsServiceRequest, now: float | None = None) -> int:
        """Fold one OTLP export; returns the number of data points used."""
        now = self._clock() if now is None else now
        used = 0
        self.stats.requests += 1
        budget = _Budget(self.limits.otlp_points_per_export)
        for rm in request.resource_metrics:
            rattrs = _attrs(rm.resource.attributes)
            app = rattrs.get(names.SERVICE_NAME, "")
            if not app or app.startswith("unknown_service"):
                self.stats.ignored += sum(len(sm.metrics) for sm in rm.scope_metrics)
                continue
            namespace = rattrs.get(names.SERVICE_NAMESPACE) or "default"
            instance_id = rattrs.get(names.SERVICE_INSTANCE_ID) or rattrs.get("host.name", "") or "unknown"
            info = self._instance(namespace, app, instance_id, rattrs, now)
            if info is None:
                self._drop("app_instances", _points_in(rm))
                continue
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    used += self._metric(info, metric, now, budget)
        self.stats.points += used
        return used

    def _drop(self, reason: str, points: int = 1) -> None:
        self.stats.dropped[reason] += points

    def _instance(
        self, namespace: str, app: str, instance_id: str, rattrs: dict[str, str], now: float
    ) -> InstanceInfo | None:
        """The exporting instance, registered on its first export; None beyond the app's limit."""
        ikey = (namespace, app, instance_id)
        info = self.instances.get(ikey)
        if info is None:
            count = self._instances_per_app.get((namespace, app), 0)
            if count >= self.limits.otlp_instances_per_app:
                return None
            self._instances_per_app[(namespace, app)] = count + 1
            info = self.instances[ikey] = InstanceInfo(namespace, app, instance_id, rattrs, now, now)
        info.attributes = rattrs
        info.last_seen = now
        info.exports += 1
        return info

    def _take(self, budget: _Budget, points: int) -> int:
        """How many of ``points`` data points this export may still use (the rest are dropped)."""
        usable = min(points, max(0, budget.left))
        budget.left -= usable
        if usable < points:
            self._drop("export_points", points - usable)
        return usable

    def _admit(self, namespace: str, app: str, resource: str) -> bool:
        """Whether the series exists, or was created within the limits (a refusal is counted)."""
        if (namespace, app, resource) in self.series:
            return True
        if len(self.series) >= self.limits.otlp_series_total:
            self._drop("total_series")
            return False
        if self._series_per_app.get((namespace, app), 0) >= self.limits.otlp_series_per_app:
            self._drop("app_series")
            return False
        self._series(namespace, app, resource)
        return True

    def _remember(self, info: InstanceInfo, key: tuple[str, tuple[tuple[str, str], ...]]) -> bool:
        """Whether a cumulative point of ``key`` may be kept for ``info``."""
        if key in info.points or len(info.points) < self.limits.otlp_points_per_export:
            return True
        self._drop("instance_points")
        return False

    def _series(self, namespace: str, app: str, resource: str) -> Series:
        """The series; created here only through :meth:`_admit` (which checks the limits)."""
        key = (namespace, app, resource)
        s = self.series.get(key)
        if s is None:
            s = self.series[key] = Series(key, self.retention)
            self._series_per_app[(namespace, app)] = self._series_per_app.get((namespace, app), 0) + 1
        return s

    def _metric(self, info: InstanceInfo, metric: metrics_pb2.Metric, now: float, budget: _Budget) -> int:
        """Fold one exported metric; the number of data points used (unknown metrics: none)."""
        name = metric.name
        which = metric.WhichOneof("data")
        if name in _COUNTER_FIELDS and which == "sum":
            points = metric.sum.data_points
            return self._counter(info, metric, points[: self._take(budget, len(points))], now)
        if name == names.DURATION and which == "histogram":
            hpoints = metric.histogram.data_points
            return self._histogram(info, metric, hpoints[: self._take(budget, len(hpoints))], now)
        if name in (names.CONCURRENCY, names.BREAKER_STATE) and which in ("gauge", "sum"):
            gpoints = metric.gauge.data_points if which == "gauge" else metric.sum.data_points
            return self._gauge(info, metric, gpoints[: self._take(budget, len(gpoints))], now)
        if name == names.HOT_KEYS and which == "gauge":
            kpoints = metric.gauge.data_points
            return self._hot_keys(info, kpoints[: self._take(budget, len(kpoints))], now)
        return 0

    def _hot_keys(self, info: InstanceInfo, points: Sequence[metrics_pb2.NumberDataPoint], now: float) -> int:
        """An instance's current hot-key list (opensergo.cache), which replaces its previous one."""
        reports = []
        for dp in points:
            attrs = _attrs(dp.attributes)
            value = dp.as_double if dp.WhichOneof("value") == "as_double" else float(dp.as_int)
            cache, key = attrs.get(names.CACHE), attrs.get(names.CACHE_KEY)
            if not _usable(value) or value < 0:
                self._drop("non_finite")
                continue
            if cache and key is not None:
                reports.append(HotKeyReport(cache, key, value, attrs.get(names.CACHE_HOT) == "true"))
        used, dropped = self.hot_keys.replace(info.namespace, info.app, info.instance, reports, now)
        if dropped:
            self._drop("hot_keys", dropped)
        return used

    def _counter(
        self,
        info: InstanceInfo,
        metric: metrics_pb2.Metric,
        points: Sequence[metrics_pb2.NumberDataPoint],
        now: float,
    ) -> int:
        name = metric.name
        field_name = _COUNTER_FIELDS[name]
        delta_mode = metric.sum.aggregation_temporality == DELTA
        used = 0
        for dp in points:
            attrs = _attrs(dp.attributes)
            resource = attrs.get(names.RESOURCE)
            if not resource:
                continue
            value = dp.as_double if dp.WhichOneof("value") == "as_double" else float(dp.as_int)
            if not _usable(value):
                self._drop("non_finite")
                continue
            if not self._admit(info.namespace, info.app, resource):
                continue
            found = self._delta(
                info, name, attrs, dp.start_time_unix_nano, dp.time_unix_nano, value, now, delta_mode
            )
            if found is not None:
                delta, t0 = found
                self._series(info.namespace, info.app, resource).add(field_name, t0, now, delta)
            used += 1
        return used

    def _histogram(
        self,
        info: InstanceInfo,
        metric: metrics_pb2.Metric,
        points: Sequence[metrics_pb2.HistogramDataPoint],
        now: float,
    ) -> int:
        delta_mode = metric.histogram.aggregation_temporality == DELTA
        used = 0
        for hp in points:
            attrs = _attrs(hp.attributes)
            resource = attrs.get(names.RESOURCE)
            if not resource:
                continue
            if not (_usable(hp.sum) and _usable(float(hp.count)) and all(map(_usable, hp.explicit_bounds))):
                self._drop("non_finite")
                continue
            if not self._admit(info.namespace, info.app, resource):
                continue
            buckets = rebucket(hp.bucket_counts, hp.explicit_bounds)
            found = self._delta(
                info,
                metric.name,
                attrs,
                hp.start_time_unix_nano,
                hp.time_unix_nano,
                (float(hp.count), hp.sum, buckets),
                now,
                delta_mode,
            )
            if found is not None:
                (count, total, hist), t0 = found
                series = self._series(info.namespace, info.app, resource)
                series.add("count", t0, now, count)
                series.add("rt_sum", t0, now, total)
                if count > 0:
                    series.add_hist(int(now), hist)
            used += 1
        return used

    def _gauge(
        self,
        info: InstanceInfo,
        metric: metrics_pb2.Metric,
        points: Sequence[metrics_pb2.NumberDataPoint],
        now: float,
    ) -> int:
        name = metric.name
        touched: set[str] = set()
        used = 0
        for dp in points:
            attrs = _attrs(dp.attributes)
            resource = attrs.get(names.RESOURCE)
            if not resource:
                continue
            value = dp.as_double if dp.WhichOneof("value") == "as_double" else float(dp.as_int)
            if not _usable(value):
                self._drop("non_finite")
                continue
            if not self._admit(info.namespace, info.app, resource):
                continue
            gkey = (info.namespace, info.app, resource)
            member = (info.instance, attrs.get(names.STRATEGY, ""))
            self._gauges.setdefault((name, gkey), {})[member] = (value, now)
            touched.add(resource)
            used += 1
        for resource in touched:
            self._refresh_gauge(name, (info.namespace, info.app, resource), now)
        return used

    def _delta(
        self,
        info: InstanceInfo,
        name: str,
        attrs: Mapping[str, str],
        start_ns: int,
        time_ns: int,
        value: Any,
        now: float,
        delta_mode: bool,
    ) -> tuple[Any, float] | None:
        """(delta, interval start on our clock), or None when this point only sets a baseline."""
        key = (name, tuple(sorted(attrs.items())))
        if not self._remember(info, key):
            return None
        # None: no start time, so the age of a first cumulative value is unknown.
        interval = max(0.0, (time_ns - start_ns) / 1e9) if start_ns and time_ns else None
        if delta_mode:
            info.points[key] = _Cumulative(start_ns, value, now)
            return value, now - min(interval or 0.0, _MAX_SPREAD_S)
        prev = info.points.get(key)
        info.points[key] = _Cumulative(start_ns, value, now)
        if prev is not None and prev.start == start_ns:
            delta = _minus(value, prev.value)
            if delta is None:  # went down: a reset without a new start time
                return value, prev.received
            return delta, prev.received
        if interval is not None and interval <= _FRESH_START_S:  # just started: all of it is new
            return value, now - interval
        return None

    def _refresh_gauge(self, name: str, gkey: tuple[str, str, str], now: float) -> None:
        members = self._gauges.get((name, gkey), {})
        fresh = {m: v for m, (v, at) in members.items() if now - at <= GAUGE_FRESH_S}
        series = self._series(*gkey)
        sec = int(now)
        if name == names.CONCURRENCY:
            series.set("conc", sec, sum(fresh.values()))
        else:
            series.set("open", sec, sum(1 for v in fresh.values() if int(v) == 1))
            series.set("half_open", sec, sum(1 for v in fresh.values() if int(v) == 2))

    # -- queries ----------------------------------------------------------------------------

    def now(self) -> float:
        return float(self._clock())

    def keys(self, namespace: str | None = None, app: str | None = None) -> list[tuple[str, str, str]]:
        return sorted(
            k
            for k in self.series
            if (namespace is None or k[0] == namespace) and (app is None or k[1] == app)
        )

    def points(self, key: tuple[str, str, str], start: int, end: int) -> list[dict[str, Any]]:
        """One entry per second in [start, end), zeros where nothing was recorded."""
        series = self.series.get(key)
        out = []
        for sec in range(max(start, end - self.retention), end):
            p = series.point(sec) if series is not None else None
            out.append(p or _empty(sec))
        return out

    def totals(self, key: tuple[str, str, str], start: int, end: int) -> dict[str, Any]:
        series = self.series.get(key)
        if series is None:
            return Series(key, 1).totals(start, start)
        return series.totals(start, end)

    def breakers(self, key: tuple[str, str, str], now: float | None = None) -> list[dict[str, Any]]:
        """Current breaker states of one resource, per strategy: instances in each state."""
        now = self.now() if now is None else now
        members = self._gauges.get((names.BREAKER_STATE, key), {})
        by_strategy: dict[str, dict[str, int]] = {}
        for (_, strategy), (value, at) in members.items():
            if now - at > GAUGE_FRESH_S:
                continue
            state = names.BREAKER_STATES[int(value)] if 0 <= int(value) <= 2 else "closed"
            counts = by_strategy.setdefault(strategy, {s: 0 for s in names.BREAKER_STATES})
            counts[state] += 1
        return [{"strategy": s, "instances": c} for s, c in sorted(by_strategy.items())]

    def concurrency(self, key: tuple[str, str, str], now: float | None = None) -> float:
        now = self.now() if now is None else now
        members = self._gauges.get((names.CONCURRENCY, key), {})
        return sum(v for v, at in members.values() if now - at <= GAUGE_FRESH_S)

    def app_info(self) -> dict[tuple[str, str], dict[str, str]]:
        """Per (namespace, app): language, framework and SDK as the exporters describe themselves."""
        out: dict[tuple[str, str], dict[str, str]] = {}
        for info in self.instances.values():
            d = info.to_dict()
            entry = out.setdefault((info.namespace, info.app), {"language": "", "framework": "", "sdk": ""})
            for k in ("language", "framework", "sdk"):
                if d[k] and not entry[k]:
                    entry[k] = d[k]
        return out

    def app_hot_keys(self, namespace: str, app: str, now: float | None = None) -> list[dict[str, Any]]:
        """The hot keys of the app's governed caches (see :mod:`.hotkeys`)."""
        return self.hot_keys.app(namespace, app, self.now() if now is None else now)

    def app_instances(self, namespace: str, app: str) -> list[dict[str, Any]]:
        return [i.to_dict() for k, i in sorted(self.instances.items()) if k[0] == namespace and k[1] == app]

    # -- housekeeping -----------------------------------------------------------------------

    def expire(self, now: float | None = None) -> None:
        """Forget series and instances silent for longer than the retention."""
        now = self.now() if now is None else now
        horizon = int(now) - self.retention
        for key in [k for k, s in self.series.items() if s.last < horizon]:
            del self.series[key]
            _decrement(self._series_per_app, (key[0], key[1]))
        for ikey in [k for k, i in self.instances.items() if i.last_seen < horizon]:
            del self.instances[ikey]
            _decrement(self._instances_per_app, (ikey[0], ikey[1]))
        self.hot_keys.expire(horizon)
        for gkey, members in list(self._gauges.items()):
            for m in [m for m, (_, at) in members.items() if at < horizon]:
                del members[m]
            if not members:
                del self._gauges[gkey]

    def iter_series(self) -> Iterator[Series]:
        return iter(list(self.series.values()))


def _decrement(counts: dict[tuple[str, str], int], key: tuple[str, str]) -> None:
    left = counts.get(key, 0) - 1
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)


def _minus(value: Any, prev: Any) -> Any:
    if isinstance(value, tuple):
        count, total, buckets = value
        pcount, ptotal, pbuckets = prev
        if count < pcount:
            return None
        return (count - pcount, total - ptotal, [a - b for a, b in zip(buckets, pbuckets, strict=True)])
    if value < prev:
        return None
    return value - prev


def _empty(sec: int) -> dict[str, Any]:
    return {
        "t": sec,
        "pass": 0,
        "block": 0,
        "error": 0,
        "completed": 0,
        "avgRt": None,
        "p99Rt": None,
        "concurrency": 0,
        "breakerOpen": 0,
        "breakerHalfOpen": 0,
    }
