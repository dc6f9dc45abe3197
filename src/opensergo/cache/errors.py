"""The errors a governed cache raises, each a subclass of what callers already handle."""

from __future__ import annotations

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError

from opensergo.governance.errors import BlockedError

__all__ = ["BigValueError", "CacheUnavailableError", "SourceProtectedError"]


class CacheUnavailableError(RedisConnectionError):
    """The cache's breaker is open and the near-cache holds no value within its stale bound.

    A redis ``ConnectionError``, so code that already survives a cache outage survives this."""

    def __init__(self, cache: str, key: object) -> None:
        super().__init__(f"cache {cache!r} is unavailable (circuit breaker open); no stale value for {key!r}")
        self.cache = cache
        self.key = key


class BigValueError(DataError):
    """A write refused before it was sent: the value is larger than ``bigValue.refuseAbove``."""

    def __init__(self, cache: str, key: object, size: int, limit: int) -> None:
        super().__init__(f"cache {cache!r}: value of {key!r} is {size} bytes, above the {limit}-byte limit")
        self.cache = cache
        self.key = key
        self.size = size
        self.limit = limit


class SourceProtectedError(BlockedError):
    """``get_or_load`` refused to load ``key`` from the source (per-key rate or concurrency)."""

    KIND = "CachePolicy"

    def __init__(self, cache: str, policy: str, key: object, detail: str) -> None:
        super().__init__(f"cache:{cache}", policy, "sourceProtection", detail=detail)
        self.cache = cache
        self.key = key

    def __str__(self) -> str:
        return f"cache {self.cache!r}: load of {self.key!r} refused by {self.rule}: {self.detail}"
