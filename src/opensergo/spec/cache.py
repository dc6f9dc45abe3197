"""The ``cache.opensergo.io/v1alpha1`` kind: governance of a named cache (docs/cache.md).

Upstream OpenSergo names cache governance ("hot keys that break through a cache") and never wrote
its spec, so this domain is ours. One kind, :class:`CachePolicy`, governs the caches an app opens
with ``opensergo.cache.governed(client, name=...)``. Its sections are independent concerns that
act on one call path, which is why they live in one object per cache rather than in separate
strategy kinds:

* ``hotKey``: streaming top-k (Space-Saving over a sliding window, bounded memory); a key whose
  rate on this instance reaches ``threshold`` requests per second is hot;
* ``nearCache``: hot keys served from process memory, bounded, with a TTL, and invalidated by
  Redis server-assisted client-side caching (``CLIENT TRACKING ... REDIRECT``) when written;
* ``coalescing``: concurrent misses of one key make one load (single-flight);
* ``sourceProtection``: loads per key limited by a token bucket (Sentinel's hot-parameter
  bucket) and a concurrency cap;
* ``breaker``: a circuit breaker on the cache itself, with stale-while-error serving from the
  near-cache for a bounded time (RFC 5861 ``stale-if-error``);
* ``bigValue``: warn on, or refuse, values above a size.

Like the other extension kinds it travels to the SDK as the native ``opensergo.ext.v1.Resource``
payload; no upstream proto changes.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Self

from pydantic import Field, field_validator, model_validator

from opensergo.spec.base import Resource, SpecModel
from opensergo.spec.errors import FieldError
from opensergo.spec.faulttolerance import CaseInsensitiveEnum
from opensergo.spec.units import Duration, Ratio

GROUP = "cache.opensergo.io"
VERSION = "v1alpha1"

MAX_TRACKED = 1_000_000
DAY_MS = 86_400_000
_CACHE_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.:]*[A-Za-z0-9])?$")
_SIZE = re.compile(r"^(\d{1,15})\s*(B|KB|KiB|MB|MiB|GB|GiB)?$")
_SIZE_UNITS = {None: 1, "B": 1, "KB": 1000, "KiB": 1024, "MB": 10**6, "MiB": 2**20, "GB": 10**9, "GiB": 2**30}
MAX_SIZE = 2**40  # a 1 TiB value is no cache value anyone means


def parse_size(value: Any) -> int:
    """``1024`` / ``'1024'`` / ``'1KiB'`` / ``'1MB'`` -> bytes. Raises ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"invalid size {value!r}")
    if isinstance(value, int):
        number = value
    else:
        match = _SIZE.match(value.strip()) if isinstance(value, str) else None
        if match is None:
            raise ValueError(
                f"invalid size {value!r}: expected bytes as an integer or with a unit "
                "(B, KB, KiB, MB, MiB, GB, GiB), e.g. '512KiB'"
            )
        number = int(match.group(1)) * _SIZE_UNITS[match.group(2)]
    if not 1 <= number <= MAX_SIZE:
        raise ValueError(f"invalid size {value!r}: must be between 1 byte and 1 TiB")
    return number


def _within(value: Duration, low_ms: int, high_ms: int, what: str) -> Duration:
    if not low_ms <= value.millis <= high_ms:
        raise ValueError(
            f"{what} must be between {Duration.from_millis(low_ms)} and {Duration.from_millis(high_ms)},"
            f" got {value.text!r}"
        )
    return value


class InvalidationMode(CaseInsensitiveEnum):
    # Redis CLIENT TRACKING (REDIRECT, OPTIN): a write anywhere evicts the entry in milliseconds.
    TRACKING = "Tracking"
    # Entries live for ``ttl`` and are never invalidated: for servers that forbid CLIENT TRACKING.
    TTL_ONLY = "TtlOnly"


class WhenOpen(CaseInsensitiveEnum):
    # A read the near-cache cannot answer raises CacheUnavailableError (a redis ConnectionError).
    ERROR = "Error"
    # ... returns None, as a cache miss would; the caller loads from the source.
    MISS = "Miss"


class HotKeyDetection(SpecModel):
    """A key is hot when its rate over ``window`` reaches ``threshold`` requests per second."""

    threshold: float = Field(gt=0, le=1e9)
    window: Duration = Field(default_factory=lambda: Duration("10s"))
    # Space-Saving counters per window slice: the memory bound. Keys rarer than
    # requests/capacity may be missed, never one above it.
    capacity: int = Field(default=1024, ge=8, le=MAX_TRACKED)
    # How many of the most requested keys each instance reports to the control plane.
    reportTop: int = Field(default=20, ge=1, le=1000)

    @field_validator("window")
    @classmethod
    def _check_window(cls, value: Duration) -> Duration:
        return _within(value, 1000, 3_600_000, "the detection window")

    @model_validator(mode="after")
    def _report_fits(self) -> Self:
        if self.reportTop > self.capacity:
            raise FieldError(("reportTop",), f"must not exceed capacity ({self.capacity})")
        return self


class NearCache(SpecModel):
    """Hot keys kept in process memory: at most ``maxEntries``, each for at most ``ttl``."""

    maxEntries: int = Field(default=10_000, ge=1, le=MAX_TRACKED)
    ttl: Duration = Field(default_factory=lambda: Duration("30s"))
    invalidation: InvalidationMode = InvalidationMode.TRACKING

    @field_validator("ttl")
    @classmethod
    def _check_ttl(cls, value: Duration) -> Duration:
        return _within(value, 1, DAY_MS, "the near-cache TTL")


class Coalescing(SpecModel):
    """Concurrent misses of one key wait for one load (single-flight)."""

    enabled: bool = True


class SourceProtection(SpecModel):
    """Limits on loads from the source per key, applied by ``get_or_load``."""

    # Sentinel's per-value token bucket: loadsPerSecond tokens, refilled each second, + burst.
    maxLoadsPerSecond: int | None = Field(default=None, ge=0, le=10**9)
    burst: int = Field(default=0, ge=0, le=10**9)
    maxConcurrentLoads: int | None = Field(default=None, ge=1, le=10**6)
    # Keys whose buckets are remembered (least recently used forgotten first).
    maxTrackedKeys: int = Field(default=4000, ge=1, le=200_000)

    @model_validator(mode="after")
    def _some_limit(self) -> Self:
        if self.maxLoadsPerSecond is None and self.maxConcurrentLoads is None:
            raise ValueError("set maxLoadsPerSecond, maxConcurrentLoads or both")
        if self.burst and self.maxLoadsPerSecond is None:
            raise FieldError(("burst",), "burst needs maxLoadsPerSecond")
        return self


class CacheBreaker(SpecModel):
    """Opens when the cache's error ratio over ``statDuration`` reaches ``errorRatio``."""

    errorRatio: Ratio = Field(default_factory=lambda: Ratio("50%"))
    minRequestAmount: int = Field(default=5, ge=1, le=10**9)
    statDuration: Duration = Field(default_factory=lambda: Duration("10s"))
    recoveryTimeout: Duration = Field(default_factory=lambda: Duration("5s"))
    # How long past its freshness a near-cache entry may still be served while the cache fails.
    staleIfError: Duration = Field(default_factory=lambda: Duration("0s"))
    whenOpen: WhenOpen = WhenOpen.ERROR

    @field_validator("errorRatio")
    @classmethod
    def _check_ratio(cls, value: Ratio) -> Ratio:
        if not 0.0 < value <= 1.0:
            raise ValueError(f"must be a ratio above 0 and at most 1 (100%), got {value._serialize()!r}")
        return value

    @field_validator("statDuration", "recoveryTimeout")
    @classmethod
    def _check_positive(cls, value: Duration) -> Duration:
        return _within(value, 1, DAY_MS, "the duration")

    @field_validator("staleIfError")
    @classmethod
    def _check_stale(cls, value: Duration) -> Duration:
        return _within(value, 0, DAY_MS, "staleIfError")


class BigValue(SpecModel):
    """Values above ``warnAbove`` bytes are logged and counted; above ``refuseAbove`` a write is
    refused before it is sent, and a read is returned but never kept in the near-cache."""

    warnAbove: int | None = None
    refuseAbove: int | None = None

    @field_validator("warnAbove", "refuseAbove", mode="before")
    @classmethod
    def _size(cls, value: Any) -> int | None:
        return None if value is None else parse_size(value)

    @model_validator(mode="after")
    def _order(self) -> Self:
        if self.warnAbove is None and self.refuseAbove is None:
            raise ValueError("set warnAbove, refuseAbove or both")
        if self.warnAbove is not None and self.refuseAbove is not None and self.warnAbove >= self.refuseAbove:
            raise FieldError(("warnAbove",), "must be below refuseAbove")
        return self


class CachePolicySpec(SpecModel):
    cacheNames: list[str] = Field(min_length=1, max_length=100)
    hotKey: HotKeyDetection | None = None
    nearCache: NearCache | None = None
    coalescing: Coalescing = Field(default_factory=Coalescing)
    sourceProtection: SourceProtection | None = None
    breaker: CacheBreaker | None = None
    bigValue: BigValue | None = None

    @field_validator("cacheNames")
    @classmethod
    def _check_names(cls, names: list[str]) -> list[str]:
        for i, name in enumerate(names):
            if len(name) > 253 or not _CACHE_NAME.match(name):
                raise FieldError(
                    (i,),
                    f"invalid cache name {name!r}: letters, digits, '-', '_', '.' or ':', starting and"
                    " ending with a letter or digit (the name given to opensergo.cache.governed)",
                )
        if len(set(names)) != len(names):
            raise ValueError("lists a cache name twice")
        return names

    @model_validator(mode="after")
    def _dependencies(self) -> Self:
        if self.nearCache is not None and self.hotKey is None:
            raise FieldError(("nearCache",), "the near-cache keeps hot keys: set hotKey too")
        if self.breaker is not None and self.breaker.staleIfError.millis and self.nearCache is None:
            raise FieldError(
                ("breaker", "staleIfError"), "stale values come from the near-cache: set nearCache too"
            )
        return self


class CachePolicy(Resource):
    GROUP: ClassVar[str] = GROUP
    VERSION: ClassVar[str] = VERSION
    KIND: ClassVar[str] = "CachePolicy"
    PLURAL: ClassVar[str] = "cachepolicies"

    spec: CachePolicySpec
