"""The single registry of OpenSergo kinds.

Adding a kind means writing its model (a :class:`~opensergo.spec.base.Resource` subclass) and one
entry in ``_KINDS``; the loader, codec, stores, API and CLI all look kinds up here. A kind that
upstream SDKs also decode names its :class:`~opensergo.spec.upstream.form.UpstreamForm` in that
entry, so its message class, type URL and conversions come from one place.

A kind is written three ways: ``kind`` is the short ``Kind`` (``RateLimitStrategy``),
``api_version`` is ``group/version``, and ``full_kind`` is ``group/version/Kind``, the string the
wire, the stores and subscriptions use.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from google.protobuf.message import Message

from opensergo.spec import cache as cache_spec
from opensergo.spec import database, discovery, faulttolerance, traffic
from opensergo.spec.base import Resource
from opensergo.spec.secrets import UNMARKED, SecretNode, model_secrets
from opensergo.spec.upstream import faulttolerance as ft_upstream
from opensergo.spec.upstream import traffic as traffic_upstream
from opensergo.spec.upstream.form import UpstreamForm

TYPE_URL_PREFIX = "type.googleapis.com/"


@dataclass(frozen=True)
class KindInfo:
    group: str
    version: str
    kind: str
    plural: str
    model: type[Resource]
    upstream: UpstreamForm[Any, Any] | None  # None if upstream SDKs have no message for it
    short_names: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"

    @property
    def full_kind(self) -> str:
        """The wire kind string, e.g. ``fault-tolerance.opensergo.io/v1alpha1/RateLimitStrategy``."""
        return f"{self.group}/{self.version}/{self.kind}"

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def proto(self) -> type[Message] | None:
        """The upstream payload message class, None if upstream has none."""
        return None if self.upstream is None else self.upstream.message

    @property
    def type_url(self) -> str | None:
        if self.proto is None:
            return None
        return TYPE_URL_PREFIX + self.proto.DESCRIPTOR.full_name


def _info(
    model: type[Resource], upstream: UpstreamForm[Any, Any] | None = None, short_names: tuple[str, ...] = ()
) -> KindInfo:
    return KindInfo(model.GROUP, model.VERSION, model.KIND, model.PLURAL, model, upstream, short_names)


_KINDS: tuple[KindInfo, ...] = (
    _info(faulttolerance.FaultToleranceRule, ft_upstream.RULE),
    _info(faulttolerance.RateLimitStrategy, ft_upstream.RATE_LIMIT),
    _info(faulttolerance.ThrottlingStrategy, ft_upstream.THROTTLING),
    _info(faulttolerance.ConcurrencyLimitStrategy, ft_upstream.CONCURRENCY_LIMIT),
    _info(faulttolerance.CircuitBreakerStrategy, ft_upstream.CIRCUIT_BREAKER),
    _info(faulttolerance.AdaptiveOverloadProtectionStrategy),
    _info(faulttolerance.HotParamRateLimitStrategy, None, ("hotparam", "hotparams")),
    _info(faulttolerance.HttpRequestFallbackAction),
    _info(traffic.TrafficRouter, traffic_upstream.TRAFFIC_ROUTER, ("tr",)),
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
    _info(cache_spec.CachePolicy),
    _info(discovery.ServiceInstance, None, ("si", "instance", "instances")),
    _info(discovery.ServiceContract, None, ("contract", "contracts")),
)


def all_kinds() -> tuple[KindInfo, ...]:
    return _KINDS


@cache
def _by_full_kind() -> dict[str, KindInfo]:
    return {k.full_kind: k for k in _KINDS}


@cache
def _by_resource() -> dict[tuple[str, str, str], KindInfo]:
    return {(k.group, k.version, k.plural): k for k in _KINDS}


@cache
def _names() -> dict[str, KindInfo]:
    """Every accepted spelling, lower-cased: Kind, plural, singular, short names, full kind,
    and kubectl's ``<plural>.<group>`` / ``<kind>.<group>`` forms."""
    out: dict[str, KindInfo] = {}
    for k in _KINDS:
        for name in (k.kind, k.plural, k.singular, *k.short_names, k.full_kind):
            out[name.lower()] = k
        out[f"{k.plural}.{k.group}"] = k
        out[f"{k.singular}.{k.group}"] = k
    return out


def by_full_kind(full_kind: str) -> KindInfo:
    try:
        return _by_full_kind()[full_kind]
    except KeyError:
        raise KeyError(_unknown(full_kind)) from None


def by_resource(group: str, version: str, plural: str) -> KindInfo:
    try:
        return _by_resource()[(group, version, plural)]
    except KeyError:
        raise KeyError(_unknown(f"{group}/{version}/{plural}")) from None


def by_api_version_kind(api_version: str, kind: str) -> KindInfo:
    return by_full_kind(f"{api_version}/{kind}")


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
    """Every full kind, comma-separated, for error messages."""
    return ", ".join(k.full_kind for k in _KINDS)


def secrets_of(body: Any) -> SecretNode:
    """Which fields of an object body are secret, as its kind's schema marks them (found by the
    body's apiVersion and kind; UNMARKED for an unknown kind). See :mod:`opensergo.spec.secrets`."""
    if not isinstance(body, Mapping):
        return UNMARKED
    api_version, kind = body.get("apiVersion"), body.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str):
        return UNMARKED
    info = _by_full_kind().get(f"{api_version}/{kind}")
    return UNMARKED if info is None else model_secrets(info.model)
