"""TrafficLane: colour requests, carry the colour across hops, route coloured traffic.

The lane of the current request lives in a :class:`contextvars.ContextVar`, so asyncio tasks and
``contextvars.copy_context()`` threads inherit it. Inbound integrations call::

    token = lanes.enter_from_headers(headers, method=..., path=..., query=...)
    try:
        ...  # handle the request; outbound integrations read lanes.current()
    finally:
        lanes.reset(token)

Colouring, first one wins (an incoming lane is never overwritten):

1. the ``x-opensergo-traffic`` header (it beats baggage when both are present);
2. W3C ``baggage`` member ``x-opensergo-traffic=<lane>`` (or a TrafficLane's ``traceIdBaggage``
   key), or the same key in the OpenTelemetry baggage of the current context;
3. colour-by-rule: a TrafficLane of this app whose ``rules.traffic.http`` match block matches
   the request;
4. colour-by-node: a TrafficLane whose ``rules.workload.selector`` matches this instance's labels
   colours every request passing through (and outbound calls made outside any request).

A TrafficLane's traffic and workload rules are alternatives (OR). Outbound integrations write the
lane both as the ``x-opensergo-traffic`` header and as a ``baggage`` member, merged with the
members already present. When ``opentelemetry-api`` is installed, entering a lane also puts it in
the OpenTelemetry baggage, so OTel propagators carry it too.

Routing (done by :class:`~opensergo.governance.routing.registry.ServiceDirectory`): lane traffic
goes to the instances whose ``tag`` label equals the lane name (case-insensitive) and falls back
to untagged instances; unlaned traffic prefers untagged instances.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping, MutableMapping, Sequence
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from opensergo.governance.routing.model import RequestView, SimpleRequest
from opensergo.governance.routing.router import Condition, compile_match
from opensergo.spec.traffic import LANE_HEADER, TrafficLane

try:  # optional: carry the lane in OpenTelemetry baggage too
    from opentelemetry import baggage as _otel_baggage
    from opentelemetry import context as _otel_context
except ImportError:  # pragma: no cover - depends on the environment
    _otel_baggage = None  # type: ignore[assignment]
    _otel_context = None  # type: ignore[assignment]

__all__ = [
    "BAGGAGE_HEADER",
    "LANE_HEADER",
    "LaneManager",
    "LaneMark",
    "LaneRules",
    "LaneToken",
    "configure",
    "current",
    "current_name",
    "default_manager",
    "enter",
    "enter_from_headers",
    "extract",
    "inject",
    "merge_baggage",
    "outbound_metadata",
    "parse_baggage",
    "reset",
    "use",
]

BAGGAGE_HEADER = "baggage"

HeadersLike = Mapping[str, str] | Iterable[tuple[str | bytes, str | bytes]]


@dataclass(frozen=True, slots=True)
class LaneMark:
    """A lane: ``name`` as written (e.g. ``Gray``) and the baggage key that carries it."""

    name: str
    key: str = LANE_HEADER

    @property
    def tag(self) -> str:
        """The instance ``tag`` value of this lane (compared case-insensitively)."""
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class LaneToken:
    """What :func:`enter` returns; give it back to :func:`reset`."""

    token: Token[LaneMark | None]
    otel_token: object | None = None


# --- W3C baggage --------------------------------------------------------------------------------


def parse_baggage(value: str | None) -> dict[str, str]:
    """``k1=v1;prop, k2=v2`` -> ``{k1: v1, k2: v2}`` (values percent-decoded, properties dropped)."""
    members: dict[str, str] = {}
    if not value:
        return members
    for member in value.split(","):
        pair = member.split(";", 1)[0]
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if sep and key:
            members.setdefault(key, unquote(raw.strip()))
    return members


def merge_baggage(existing: str | None, key: str, value: str) -> str:
    """Set member ``key`` in a baggage header value, keeping the other members in order."""
    entry = f"{key}={quote(value, safe='')}"
    if not existing:
        return entry
    kept = [
        member.strip()
        for member in existing.split(",")
        if member.strip() and member.split(";", 1)[0].partition("=")[0].strip() != key
    ]
    kept.append(entry)
    return ",".join(kept)


def _lower_headers(headers: HeadersLike) -> dict[str, str]:
    """Lowercased names -> first value; accepts a mapping or ASGI-style (bytes, bytes) pairs.

    Several ``baggage`` headers are joined with commas, as HTTP allows for list headers.
    """
    items: Iterable[tuple[Any, Any]] = headers.items() if isinstance(headers, Mapping) else headers
    out: dict[str, str] = {}
    for raw_key, raw_value in items:
        key = raw_key.decode("latin-1") if isinstance(raw_key, bytes) else raw_key
        value = raw_value.decode("latin-1") if isinstance(raw_value, bytes) else raw_value
        key = key.lower()
        if key in out:
            if key == BAGGAGE_HEADER:
                out[key] = f"{out[key]},{value}"
            continue
        out[key] = value
    return out


# --- compiled rules -----------------------------------------------------------------------------


class LaneRules:
    """The TrafficLanes that apply to this instance, compiled."""

    __slots__ = ("baggage_keys", "node_lane", "traffic")

    def __init__(
        self,
        lanes: Sequence[TrafficLane] = (),
        local_labels: Mapping[str, str] | None = None,
    ) -> None:
        labels = dict(local_labels or {})
        traffic: list[tuple[tuple[Condition, ...], LaneMark]] = []
        node_lane: LaneMark | None = None
        keys = [LANE_HEADER]
        for lane in sorted(lanes, key=lambda item: item.metadata.name):
            spec = lane.spec
            if any(labels.get(k) != v for k, v in spec.selector.items()):
                continue
            mark = LaneMark(spec.lane.name, spec.traceIdBaggage)
            if spec.traceIdBaggage not in keys:
                keys.append(spec.traceIdBaggage)
            rules = spec.rules
            if rules.traffic is not None and rules.traffic.http is not None:
                conditions = compile_match(rules.traffic.http, labels)
                if conditions is not None:
                    traffic.append((conditions, mark))
            if (
                node_lane is None
                and rules.workload is not None
                and all(labels.get(k) == v for k, v in rules.workload.selector.items())
            ):
                node_lane = mark
        self.traffic = tuple(traffic)
        self.node_lane = node_lane
        self.baggage_keys = tuple(keys)

    def colour(self, request: RequestView) -> LaneMark | None:
        """Colour-by-rule, then colour-by-node; None when nothing applies."""
        for conditions, mark in self.traffic:
            for condition in conditions:
                if not condition(request):
                    break
            else:
                return mark
        return self.node_lane


# --- the manager --------------------------------------------------------------------------------


class LaneManager:
    """Holds the compiled TrafficLanes of this process and the lane context variable."""

    def __init__(self, *, use_otel: bool = True) -> None:
        self._var: ContextVar[LaneMark | None] = ContextVar("opensergo_lane", default=None)
        self._rules = LaneRules()
        self._otel = use_otel and _otel_baggage is not None
        self._marks: dict[str, LaneMark] = {}

    # -- configuration
    def configure(self, lanes: Sequence[TrafficLane], local_labels: Mapping[str, str] | None = None) -> None:
        """Replace the TrafficLanes (those of the local app) and the local instance labels."""
        self._rules = LaneRules(lanes, local_labels)

    @property
    def rules(self) -> LaneRules:
        return self._rules

    # -- reading
    def current(self) -> LaneMark | None:
        """The lane of the current context, else the OTel baggage lane, else the node lane."""
        mark = self._var.get()
        if mark is not None:
            return mark
        if self._otel:
            value = _otel_baggage.get_baggage(LANE_HEADER)
            if value:
                return self._mark(str(value), LANE_HEADER)
        return self._rules.node_lane

    def current_name(self) -> str | None:
        mark = self.current()
        return mark.name if mark is not None else None

    def _mark(self, name: str, key: str) -> LaneMark:
        cached = self._marks.get(name)
        if cached is None or cached.key != key:
            cached = LaneMark(name, key)
            if len(self._marks) < 256:
                self._marks[name] = cached
        return cached

    def extract(self, headers: HeadersLike) -> LaneMark | None:
        """The lane carried by inbound headers (header first, then baggage); None if unmarked."""
        lowered = _lower_headers(headers)
        return self._extract_lowered(lowered)

    def _extract_lowered(self, lowered: Mapping[str, str]) -> LaneMark | None:
        value = lowered.get(LANE_HEADER, "").strip()
        if value:
            return self._mark(value, LANE_HEADER)
        members = parse_baggage(lowered.get(BAGGAGE_HEADER))
        for key in self._rules.baggage_keys:
            value = members.get(key, "").strip()
            if value:
                return self._mark(value, key)
        return None

    # -- entering / leaving
    def enter(self, lane: str | LaneMark | None) -> LaneToken:
        """Make ``lane`` the current lane (None: unlaned) until :meth:`reset`."""
        mark = self._mark(lane, LANE_HEADER) if isinstance(lane, str) else lane
        token = self._var.set(mark)
        otel_token: object | None = None
        if self._otel and mark is not None:
            otel_token = _otel_context.attach(_otel_baggage.set_baggage(mark.key, mark.name))
        return LaneToken(token, otel_token)

    def enter_from_headers(
        self,
        headers: HeadersLike,
        *,
        method: str = "GET",
        path: str = "/",
        query: Mapping[str, str] | None = None,
        scheme: str = "http",
    ) -> LaneToken:
        """Colour an inbound request (see the module doc for the order) and enter its lane.

        ``path`` may include the query string. The lane rules are evaluated only when the
        request carries no lane.
        """
        lowered = _lower_headers(headers)
        mark = self._extract_lowered(lowered)
        if mark is None and self._otel:
            value = _otel_baggage.get_baggage(LANE_HEADER)
            if value:
                mark = self._mark(str(value), LANE_HEADER)
        if mark is None:
            rules = self._rules
            if rules.traffic:
                mark = rules.colour(SimpleRequest(method, path, lowered, query, scheme))
            else:
                mark = rules.node_lane
        return self.enter(mark)

    def reset(self, token: LaneToken) -> None:
        if token.otel_token is not None and _otel_context is not None:
            _otel_context.detach(token.otel_token)  # type: ignore[arg-type]
        self._var.reset(token.token)

    @contextlib.contextmanager
    def use(self, lane: str | LaneMark | None) -> Iterator[LaneMark | None]:
        """``with lanes.use("Gray"): ...`` — a lane for a block of code."""
        token = self.enter(lane)
        try:
            yield self._var.get()
        finally:
            self.reset(token)

    # -- outbound
    def inject(self, headers: MutableMapping[str, str], lane: LaneMark | None = None) -> LaneMark | None:
        """Write the lane (default: the current one) into outbound ``headers``.

        A lane header already present on the outbound request is kept (first colouring wins) and
        only mirrored into baggage. Returns the lane written, or None.
        """
        present = headers.get(LANE_HEADER)
        mark: LaneMark | None
        if present:
            mark = self._mark(present, lane.key if lane is not None else LANE_HEADER)
        else:
            mark = lane if lane is not None else self.current()
            if mark is None:
                return None
            headers[LANE_HEADER] = mark.name
        headers[BAGGAGE_HEADER] = merge_baggage(headers.get(BAGGAGE_HEADER), mark.key, mark.name)
        return mark

    def outbound_metadata(
        self, metadata: Sequence[tuple[str, str | bytes]] | None, lane: LaneMark | None = None
    ) -> tuple[list[tuple[str, str | bytes]], LaneMark | None]:
        """gRPC form of :meth:`inject`: a new metadata list carrying the lane, and the lane."""
        items = list(metadata or ())
        present = next((v for k, v in items if k.lower() == LANE_HEADER), None)
        if present:
            name = present.decode() if isinstance(present, bytes) else present
            mark: LaneMark | None = self._mark(name, LANE_HEADER)
        else:
            mark = lane if lane is not None else self.current()
            if mark is None:
                return items, None
            items.append((LANE_HEADER, mark.name))
        assert mark is not None
        existing = [v for k, v in items if k.lower() == BAGGAGE_HEADER]
        joined = ",".join(v.decode() if isinstance(v, bytes) else v for v in existing) or None
        items = [(k, v) for k, v in items if k.lower() != BAGGAGE_HEADER]
        items.append((BAGGAGE_HEADER, merge_baggage(joined, mark.key, mark.name)))
        return items, mark


_default = LaneManager()


def default_manager() -> LaneManager:
    """The process-wide manager used by the module-level functions and the integrations."""
    return _default


def configure(lanes: Sequence[TrafficLane], local_labels: Mapping[str, str] | None = None) -> None:
    _default.configure(lanes, local_labels)


def current() -> LaneMark | None:
    return _default.current()


def current_name() -> str | None:
    return _default.current_name()


def extract(headers: HeadersLike) -> LaneMark | None:
    return _default.extract(headers)


def enter(lane: str | LaneMark | None) -> LaneToken:
    return _default.enter(lane)


def enter_from_headers(
    headers: HeadersLike,
    *,
    method: str = "GET",
    path: str = "/",
    query: Mapping[str, str] | None = None,
    scheme: str = "http",
) -> LaneToken:
    return _default.enter_from_headers(headers, method=method, path=path, query=query, scheme=scheme)


def reset(token: LaneToken) -> None:
    _default.reset(token)


def use(lane: str | LaneMark | None) -> contextlib.AbstractContextManager[LaneMark | None]:
    return _default.use(lane)


def inject(headers: MutableMapping[str, str], lane: LaneMark | None = None) -> LaneMark | None:
    return _default.inject(headers, lane)


def outbound_metadata(
    metadata: Sequence[tuple[str, str | bytes]] | None, lane: LaneMark | None = None
) -> tuple[list[tuple[str, str | bytes]], LaneMark | None]:
    return _default.outbound_metadata(metadata, lane)
