"""The governed caches of this process, for reporting their hot keys to the control plane.

Hot keys travel on the channel the SDK's other metrics use: the OTLP metrics export
(:mod:`opensergo.observability.metrics` observes :func:`hot_key_points` as the gauge
``opensergo.cache.hot_keys``, one point per reported key). This module imports no Redis client.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any, NamedTuple

__all__ = ["HotKeyPoint", "governors", "hot_key_points", "register"]

MAX_KEY_CHARS = 256  # longer keys are cut: an attribute value, not a payload

_lock = threading.Lock()
_governors: weakref.WeakSet[Any] = weakref.WeakSet()


class HotKeyPoint(NamedTuple):
    cache: str
    key: str
    rate: float  # requests per second over the detection window, on this instance
    hot: bool


def register(governor: Any) -> None:
    """Report ``governor``'s hot keys (anything with ``cache`` and ``hot_keys()``) while it lives."""
    with _lock:
        _governors.add(governor)


def governors() -> list[Any]:
    with _lock:
        return list(_governors)


def hot_key_points() -> list[HotKeyPoint]:
    """The top keys of every governed cache, as each cache's detector ranks them."""
    points: list[HotKeyPoint] = []
    for governor in governors():
        for item in governor.hot_keys():
            key = item.key
            text = key.decode("utf-8", "backslashreplace") if isinstance(key, bytes) else str(key)
            points.append(HotKeyPoint(governor.cache, text[:MAX_KEY_CHARS], round(item.rate, 3), item.hot))
    return points
