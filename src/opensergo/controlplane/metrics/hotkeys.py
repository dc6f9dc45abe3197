"""Hot keys of governed caches, per app, as the data planes report them.

Each SDK instance exports the gauge ``opensergo.cache.hot_keys``: one point per key among the
heaviest of each of its governed caches (attributes: cache, key, hot), valued at the key's rate
on that instance. An export carries the instance's whole current list, so it replaces what the
instance reported before. Per app, a key's figures are summed over the instances that reported
it within :data:`FRESH_S` seconds: the app's rate for that key, and whether any instance
finds it hot.

Exporters choose the keys, so the keys remembered per app are bounded (:data:`MAX_KEYS_PER_APP`);
points beyond are dropped and counted by the metric store.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

FRESH_S = 15.0
MAX_KEYS_PER_APP = 1000
MAX_KEY_CHARS = 256

__all__ = ["FRESH_S", "MAX_KEYS_PER_APP", "HotKeyBoard", "HotKeyReport"]


@dataclass(frozen=True, slots=True)
class HotKeyReport:
    cache: str
    key: str
    rate: float
    hot: bool


class HotKeyBoard:
    def __init__(self, max_keys_per_app: int = MAX_KEYS_PER_APP) -> None:
        self.max_keys_per_app = max_keys_per_app
        # (namespace, app) -> (cache, key) -> instance -> (rate, hot, received)
        self._apps: dict[tuple[str, str], dict[tuple[str, str], dict[str, tuple[float, bool, float]]]] = {}

    def replace(
        self, namespace: str, app: str, instance: str, reports: Iterable[HotKeyReport], now: float
    ) -> tuple[int, int]:
        """Take ``instance``'s current list; returns (points used, points dropped)."""
        keys = self._apps.setdefault((namespace, app), {})
        for previous in keys.values():
            previous.pop(instance, None)
        used = dropped = 0
        for r in reports:
            ident = (r.cache, r.key[:MAX_KEY_CHARS])
            members = keys.get(ident)
            if members is None:
                if len(keys) >= self.max_keys_per_app and not self._evict_one(keys):
                    dropped += 1
                    continue
                members = keys[ident] = {}
            members[instance] = (r.rate, r.hot, now)
            used += 1
        for ident in [k for k, m in keys.items() if not m]:
            del keys[ident]
        return used, dropped

    @staticmethod
    def _evict_one(keys: dict[tuple[str, str], dict[str, tuple[float, bool, float]]]) -> bool:
        """Make room by forgetting a key no instance reports any more."""
        for ident, members in keys.items():
            if not members:
                del keys[ident]
                return True
        return False

    def app(self, namespace: str, app: str, now: float) -> list[dict[str, Any]]:
        """The app's keys, heaviest first: rate summed over fresh instances."""
        out: list[dict[str, Any]] = []
        for (cache, key), members in self._apps.get((namespace, app), {}).items():
            fresh = [(rate, hot, at) for rate, hot, at in members.values() if now - at <= FRESH_S]
            if not fresh:
                continue
            out.append(
                {
                    "cache": cache,
                    "key": key,
                    "rate": round(sum(r for r, _, _ in fresh), 3),
                    "hot": any(h for _, h, _ in fresh),
                    "instances": len(fresh),
                    "hotInstances": sum(1 for _, h, _ in fresh if h),
                    "lastSeen": max(at for _, _, at in fresh),
                }
            )
        out.sort(key=lambda e: (-float(e["rate"]), str(e["cache"]), str(e["key"])))
        return out

    def expire(self, horizon: float) -> None:
        """Forget reports received before ``horizon``."""
        for app_key in list(self._apps):
            keys = self._apps[app_key]
            for ident in list(keys):
                members = keys[ident]
                for instance in [i for i, (_, _, at) in members.items() if at < horizon]:
                    del members[instance]
                if not members:
                    del keys[ident]
            if not keys:
                del self._apps[app_key]
