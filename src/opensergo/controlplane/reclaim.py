"""Giving memory back to the system after a mass departure of data planes.

The control plane tunes its garbage collector for tens of thousands of long-lived streams (app.py:
young objects are collected rarely, older ones almost never). When thousands of streams end at
once (a node pool drained, a region failed over), they leave reference cycles (tasks, coroutines,
exceptions with their tracebacks) that those settings would keep for a long time, and the heap
they freed stays with the allocator. The reclaimer counts departures (streams closed, instances
expired); once many have happened and they have paused, it runs one full collection and asks
glibc to return free heap pages (malloc_trim; nothing on other C libraries).
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import gc
import logging
import time

log = logging.getLogger(__name__)


class MemoryReclaimer:
    """Collects and trims once ``threshold`` departures have happened and then paused for
    ``quiet`` seconds (see the module docstring)."""

    def __init__(self, threshold: int = 1000, quiet: float = 2.0) -> None:
        self.threshold = threshold
        self.quiet = quiet
        self.runs = 0
        self._released = 0
        self._last = 0.0
        self._scheduled: asyncio.TimerHandle | None = None

    def released(self, count: int = 1) -> None:
        """``count`` streams or instances went away."""
        self._released += count
        self._last = time.monotonic()
        if self._released >= self.threshold and self._scheduled is None:
            self._scheduled = asyncio.get_running_loop().call_later(self.quiet, self._reclaim)

    def _reclaim(self) -> None:
        waited = time.monotonic() - self._last
        if waited < self.quiet:  # still disconnecting: wait for the pause
            self._scheduled = asyncio.get_running_loop().call_later(self.quiet - waited, self._reclaim)
            return
        self._scheduled = None
        self._released = 0
        self.runs += 1
        started = time.monotonic()
        collected = gc.collect()
        _malloc_trim()
        log.info(
            "memory reclaimed after a mass departure: %d objects collected in %.0f ms",
            collected,
            (time.monotonic() - started) * 1000,
        )


def _malloc_trim() -> None:
    """Return the allocator's free pages to the system (glibc only)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim(0)
    except (OSError, AttributeError, TypeError):
        pass  # not glibc: nothing to ask
