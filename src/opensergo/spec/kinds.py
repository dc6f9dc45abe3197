"""The single registry of OpenSergo kinds.

Adding a kind means writing its model (a :class:`~opensergo.spec.base.Resource` subclass) and one
entry in ``_KINDS``; the loader, codec, stores, API and CLI all look kinds up here.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from envoy.config.route.v3 import route_pb2
from google.protobuf.message import Message

from opensergo.proto.fault_tolerance.v1 import fault_tolerance_pb2 as ft_pb2
from opensergo.spec import database, discovery, faulttolerance, traffic
from opensergo.spec.base import Resource
from opensergo.spec.secrets import UNMARKED, SecretNode, model_secrets

TYPE_URL_PREFIX = "type.googleapis.com/"


@dataclass(frozen=True)
class KindInfo:
    group: str
    version: str
    kind: str
    plural: str
    model: type[Resource]
    proto: type[Message] | None  # upstream payload message class, None if upstream has none
    short_names: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"

    @property
    def full_name(self) -> str:
        """The wire kind string, e.g. ``fault-tolerance.opensergo.io/v1alpha1/RateLimitStrategy``."""
        return f"{self.group}/{self.version}/{self.kind}"

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def type_url(self) -> str | None:
        if self.proto is None:
            return None
        return TYPE_URL_PREFIX + self.proto.DESCRIPTOR.full_name


def _info(
    model: type[Resource], proto: type[Message] | None = None, short_names: tuple[str, ...] = ()
) -> KindInfo:
    return KindInfo(model.GROUP, model.VERSION, model.KIND, model.PLURAL, model, proto, short_names)


_KINDS: tuple[KindInfo, ...] = (
    _info(faulttolerance.FaultToleranceRule, ft_pb2.FaultToleranceRule),
    _info(faulttolerance.RateLimitStrategy, ft_pb2.RateLimitStrategy),
    _info(faulttolerance.ThrottlingStrategy, ft_pb2.ThrottlingStrategy),
    _info(faulttolerance.ConcurrencyLimitStrategy, ft_pb2.ConcurrencyLimitStrategy),
    _info(faulttolerance.CircuitBreakerStrategy, ft_pb2.CircuitBreakerStrategy),
    _info(faulttolerance.AdaptiveOverloadProtectionStrategy),
    _info(faulttolerance.HttpRequestFallbackAction),
    _info(traffic.TrafficRouter, route_pb2.RouteConfiguration, ("tr",)),
    _info(traffic.VirtualWorkload),
    _info(traffic.TrafficLane),
    _info(database.VirtualDatabase),
    _info(database.DatabaseEndpoint),
    _info(database.ReadWriteSplitting),
    _info(database.Sharding),
    _info(database.Encryption),
    _info(database.Shadow),
    _info(database.DatabaseDiscovery),
    _info(database.DistributedTransaction),
    _info(discovery.ServiceInstance, None, ("si", "instance", "instances")),
)


def all_kinds() -> tuple[KindInfo, ...]:
    return _KINDS


@cache
def _by_full_name() -> dict[str, KindInfo]:
    return {k.full_name: k for k in _KINDS}


@cache
def _by_resource() -> dict[tuple[str, str, str], KindInfo]:
    return {(k.group, k.version, k.plural): k for k in _KINDS}


@cache
def _names() -> dict[str, KindInfo]:
    """Every accepted spelling, lower-cased: Kind, plural, singular, short names, full name,
    and kubectl's ``<plural>.<group>`` / ``<kind>.<group>`` forms."""
    out: dict[str, KindInfo] = {}
    for k in _KINDS:
        for name in (k.kind, k.plural, k.singular, *k.short_names, k.full_name):
            out[name.lower()] = k
        out[f"{k.plural}.{k.group}"] = k
        out[f"{k.singular}.{k.group}"] = k
    return out


def by_full_name(full_name: str) -> KindInfo:
    try:
        return _by_full_name()[full_name]
    except KeyError:
        raise KeyError(_unknown(full_name)) from None


def by_resource(group: str, version: str, plural: str) -> KindInfo:
    try:
        return _by_resource()[(group, version, plural)]
    except KeyError:
        raise KeyError(_unknown(f"{group}/{version}/{plural}")) from None


def by_api_version_kind(api_version: str, kind: str) -> KindInfo:
    return by_full_name(f"{api_version}/{kind}")


def lookup(name: str) -> KindInfo:
    """Find a kind by any of its names, ignoring case."""
    try:
        return _names()[name.strip().lower()]
    except KeyError:
        raise KeyError(_unknown(name)) from None


def _unknown(name: str) -> str:
    close = difflib.get_close_matches(name.lower(), list(_names()), n=3, cutoff=0.6)
    suggestions = list(dict.fromkeys(_names()[c].kind for c in close))  # closest first
    hint = f"; did you mean {', '.join(suggestions)}?" if suggestions else ""
    return f"unknown kind {name!r}{hint}"


def known_kinds_text() -> str:
    """All kinds as ``apiVersion kind`` lines, for error messages."""
    return ", ".join(f"{k.api_version}/{k.kind}" for k in _KINDS)


def secrets_of(body: Any) -> SecretNode:
    """Which fields of an object body are secret, as its kind's schema marks them (found by the
    body's apiVersion and kind; UNMARKED for an unknown kind). See :mod:`opensergo.spec.secrets`."""
    if not isinstance(body, Mapping):
        return UNMARKED
    api_version, kind = body.get("apiVersion"), body.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        return UNMARKED
    info = _by_full_name().get(f"{api_version}/{kind}")
    return UNMARKED if info is None else model_secrets(info.model)
