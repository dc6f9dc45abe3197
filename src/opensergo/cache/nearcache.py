"""The near-cache: hot keys' values in process memory, bounded, with a TTL and invalidation.

Freshness has two conditions: the entry is younger than ``ttl``, and (with tracking) the
invalidation connection has been up since the entry was filled. While that connection is down
no entry is fresh, since invalidations may be lost; once it is back, everything is flushed
(Redis' client-side caching guide: flush on loss of the invalidation connection).

Entries are kept ``stale_for`` seconds past their freshness so the cache breaker can serve
them while the cache fails (stale-if-error); the freshness end of an entry is the earlier of its
TTL and the moment tracking was lost, so staleness stays bounded either way.

The race between a GET reply and an invalidation on another connection is closed with a
placeholder: :meth:`reserve` is called before the GET is sent, :meth:`invalidate` discards the
placeholder, and :meth:`fill` stores the reply only if its placeholder is still there.

At most ``max_entries`` are kept; a fill beyond that evicts the entry filled longest ago.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any, Final

__all__ = ["MISSING", "NearCache"]


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final = _Missing()


class NearCache:
    """Keys are bytes (as Redis names them in invalidation messages)."""

    def __init__(self, max_entries: int, ttl: float, stale_for: float = 0.0, tracking: bool = True) -> None:
        self.max_entries = max_entries
        self.ttl = ttl
        self.stale_for = stale_for
        # key -> (value, fresh until, keep until)
        self._entries: dict[bytes, tuple[Any, float, float]] = {}
        self._pending: dict[bytes, object] = {}
        self._lock = threading.Lock()
        # With tracking, nothing is fresh until the invalidation connection says it is up.
        self.lost_at: float | None = 0.0 if tracking else None
        self.hits = 0
        self.stale_hits = 0
        self.fills = 0
        self.dropped_fills = 0
        self.invalidations = 0
        self.flushes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def tracking_up(self) -> bool:
        return self.lost_at is None

    def get_fresh(self, key: bytes, now: float) -> Any:
        """The value if fresh, else MISSING."""
        entry = self._entries.get(key)
        if entry is None or self.lost_at is not None or now >= entry[1]:
            return MISSING
        self.hits += 1
        return entry[0]

    def get_stale(self, key: bytes, now: float) -> Any:
        """The value if within ``stale_for`` of the end of its freshness, else MISSING."""
        entry = self._entries.get(key)
        if entry is None:
            return MISSING
        fresh_end = entry[1] if self.lost_at is None else min(entry[1], self.lost_at)
        if now > fresh_end + self.stale_for:
            return MISSING
        self.stale_hits += 1
        return entry[0]

    def reserve(self, key: bytes) -> object:
        """A placeholder for a GET about to be sent; pass it to :meth:`fill`."""
        token = object()
        self._pending[key] = token
        return token

    def fill(self, key: bytes, token: object, value: Any, now: float) -> bool:
        """Store the reply of a GET reserved with ``token``, unless an invalidation came first."""
        with self._lock:
            if self._pending.get(key) is not token:
                self.dropped_fills += 1
                return False
            del self._pending[key]
            if self.lost_at is not None:
                self.dropped_fills += 1
                return False
            entries = self._entries
            if key not in entries and len(entries) >= self.max_entries:
                self._evict(now)
            fresh_until = now + self.ttl
            entries[key] = (value, fresh_until, fresh_until + self.stale_for)
            self.fills += 1
            return True

    def cancel(self, key: bytes, token: object) -> None:
        """Drop a placeholder whose GET failed."""
        with self._lock:
            if self._pending.get(key) is token:
                del self._pending[key]

    def _evict(self, now: float) -> None:
        entries = self._entries
        expired = [k for k, e in entries.items() if e[2] < now]
        for k in expired:
            del entries[k]
        if len(entries) >= self.max_entries:
            del entries[next(iter(entries))]  # the entry filled longest ago

    def invalidate(self, keys: Iterable[bytes]) -> None:
        """Forget ``keys`` and their placeholders (an invalidation message)."""
        with self._lock:
            for key in keys:
                self._entries.pop(key, None)
                self._pending.pop(key, None)
                self.invalidations += 1

    def flush(self) -> None:
        """Forget everything (FLUSHALL, or the invalidation connection came back)."""
        with self._lock:
            self._entries.clear()
            self._pending.clear()
            self.flushes += 1

    def tracking_lost(self, now: float) -> None:
        """No entry is fresh from ``now`` on; entries stay for stale-if-error."""
        with self._lock:
            if self.lost_at is None:
                self.lost_at = now
            self._pending.clear()

    def tracking_restored(self) -> None:
        """The invalidation connection is up (again): start from empty, then serve fresh."""
        with self._lock:
            self._entries.clear()
            self._pending.clear()
            self.flushes += 1
            self.lost_at = None
