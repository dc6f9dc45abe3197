"""What routing works on: instances, the request view, and the routing errors."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

from opensergo.spec.discovery import ServiceInstance

__all__ = [
    "Instance",
    "NoAvailableInstance",
    "NoRouteMatched",
    "RequestView",
    "RoutingError",
    "SimpleRequest",
]


class RoutingError(Exception):
    """Routing could not produce an instance. ``service`` is the logical target."""

    def __init__(self, service: str, message: str) -> None:
        super().__init__(message)
        self.service = service


class NoRouteMatched(RoutingError):
    """A TrafficRouter exists for the service and none of its rules matched (Envoy: 404 ``NR``)."""


class NoAvailableInstance(RoutingError):
    """The chosen subset, and its fallback, have no healthy instance (Envoy: 503 no healthy upstream)."""


class RequestView(Protocol):
    """The request attributes TrafficRouter rules look at.

    ``header`` and ``query`` return the first value or None; header names are passed lowercase
    and must be looked up case-insensitively. ``path`` excludes the query string.
    """

    method: str
    path: str
    scheme: str

    def header(self, name: str) -> str | None: ...

    def query(self, name: str) -> str | None: ...


class SimpleRequest:
    """A :class:`RequestView` from plain values (tests, custom integrations).

    ``path`` may carry a query string (``/a?x=1``); it is split off and merged under ``query``.
    """

    __slots__ = ("_headers", "_query", "method", "path", "scheme")

    def __init__(
        self,
        method: str = "GET",
        path: str = "/",
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        query: Mapping[str, str] | None = None,
        scheme: str = "http",
    ) -> None:
        self.method = method
        self.scheme = scheme
        params: dict[str, str] = {}
        if "?" in path:
            path, _, raw = path.partition("?")
            for key, value in parse_qsl(raw, keep_blank_values=True):
                params.setdefault(key, value)
        self.path = path or "/"
        if query:
            params.update(query)
        self._query = params
        items = headers.items() if isinstance(headers, Mapping) else (headers or ())
        lowered: dict[str, str] = {}
        for key, value in items:
            lowered.setdefault(key.lower(), value)
        self._headers = lowered

    @classmethod
    def from_url(
        cls, url: str, method: str = "GET", headers: Mapping[str, str] | None = None
    ) -> SimpleRequest:
        parts = urlsplit(url)
        path = parts.path or "/"
        if parts.query:
            path = f"{path}?{parts.query}"
        return cls(method, path, headers, scheme=parts.scheme or "http")

    def header(self, name: str) -> str | None:
        return self._headers.get(name)

    def query(self, name: str) -> str | None:
        return self._query.get(name)

    def __repr__(self) -> str:
        return f"<SimpleRequest {self.method} {self.path} headers={self._headers} query={self._query}>"


class Instance:
    """One routable instance of an app, built from a ServiceInstance.

    ``active`` counts requests in flight (maintained by the outbound integrations through
    :meth:`acquire` / :meth:`release`) for the least-request balancer. It is a plain int: under
    the GIL the count may drift by a request under contention, which does not matter for P2C.
    """

    __slots__ = (
        "_by_protocol", "active", "addresses", "app", "labels", "name", "node_id", "outlier", "tag", "weight",
    )  # fmt: skip

    def __init__(
        self,
        app: str,
        node_id: str,
        addresses: Iterable[tuple[str, int, str]],
        labels: Mapping[str, str] | None = None,
        weight: int = 100,
        name: str = "",
        tag_label: str = "tag",
    ) -> None:
        self.app = app
        self.node_id = node_id
        self.name = name or node_id
        self.labels: Mapping[str, str] = dict(labels or {})
        self.weight = weight
        self.addresses: tuple[tuple[str, int, str], ...] = tuple(addresses)
        tag = self.labels.get(tag_label, "")
        self.tag = tag.lower()
        self.active = 0
        self.outlier: Any = None  # outlier.OutlierState, created on the first counted error
        by_protocol: dict[str, tuple[str, int]] = {}
        for host, port, protocol in self.addresses:
            by_protocol.setdefault(protocol.lower(), (host, port))
        self._by_protocol = by_protocol

    @classmethod
    def from_resource(cls, resource: ServiceInstance, tag_label: str = "tag") -> Instance:
        spec = resource.spec
        return cls(
            spec.app,
            spec.nodeId,
            [(a.address, a.port, a.protocol) for a in spec.addresses],
            spec.labels,
            spec.weight,
            resource.metadata.name,
            tag_label,
        )

    def address(self, protocol: str = "http") -> tuple[str, int]:
        """``(host, port)`` of the listening address for ``protocol``.

        Falls back to an address without a protocol, then to the first address. ``https`` also
        accepts an ``http`` address and ``grpc`` a ``tri``/``h2`` one only through that fallback.
        """
        found = self._by_protocol.get(protocol)
        if found is not None:
            return found
        found = self._by_protocol.get("")
        if found is not None:
            return found
        if not self.addresses:
            raise NoAvailableInstance(self.app, f"instance {self.name} of {self.app} has no address")
        host, port, _ = self.addresses[0]
        return host, port

    def acquire(self) -> None:
        self.active += 1

    def release(self) -> None:
        if self.active > 0:
            self.active -= 1

    def same_as(self, other: Instance) -> bool:
        """Same routing content (identity, labels, addresses, weight)."""
        return (
            self.node_id == other.node_id
            and self.labels == other.labels
            and self.addresses == other.addresses
            and self.weight == other.weight
            and self.name == other.name
        )

    def __repr__(self) -> str:
        where = ",".join(f"{p + '://' if p else ''}{h}:{port}" for h, port, p in self.addresses)
        return f"<Instance {self.app} {self.name} {where} {dict(self.labels)}>"
