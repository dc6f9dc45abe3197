"""Injectable monotonic clocks for the governance engine.

The engine reads time as integer nanoseconds from a monotonic source (``Clock.now_ns``) once per
``entry`` and once per ``exit``. Windows, breakers and throttling are all computed in nanoseconds;
bucket starts are aligned to multiples of the bucket length on this clock's own origin (Sentinel
aligns to the epoch, which is the same arithmetic on a different origin).

:class:`ManualClock` makes every time-based behaviour deterministic in tests: time only moves when
the test calls :meth:`ManualClock.advance`, or when a caller sleeps and the clock is in
``auto_advance`` mode.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import asyncio

# asyncio is imported where a sleep awaits, not here: the governance API imports this module,
# and asyncio (with ssl, subprocess and concurrent.futures behind it) would double its import
# time for applications that never await.

NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000


@runtime_checkable
class Clock(Protocol):
    """A monotonic time source plus the matching ways to wait on it."""

    def now_ns(self) -> int:
        """Monotonic time in integer nanoseconds."""
        ...

    def now_ms(self) -> int:
        """Monotonic time in integer milliseconds."""
        ...

    def sleep(self, seconds: float) -> None:
        """Block the calling thread for ``seconds`` of this clock's time."""
        ...

    async def asleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time without blocking the event loop."""
        ...


class SystemClock:
    """``time.monotonic_ns`` with ``time.sleep`` / ``asyncio.sleep``."""

    __slots__ = ()

    # The engine binds this attribute directly on its hot path: a C function, no Python frame.
    now_ns = staticmethod(time.monotonic_ns)

    def now_ms(self) -> int:
        return time.monotonic_ns() // NS_PER_MS

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    async def asleep(self, seconds: float) -> None:
        import asyncio

        await asyncio.sleep(seconds if seconds > 0 else 0)


SYSTEM_CLOCK = SystemClock()


class ManualClock:
    """A clock that only moves when told to; for deterministic tests.

    ``auto_advance=True`` (default): ``sleep``/``asleep`` move virtual time to the sleeper's
    deadline (``now at the call + seconds``) when it lies ahead, and return at once. Several
    concurrent sleepers leave the clock at the latest deadline, as if they had slept in parallel.

    ``auto_advance=False``: sleepers wait until another party calls :meth:`advance` past their
    deadline (threads block on a condition, asyncio tasks await a future). Lets a test observe
    callers while they are queued.

    Every sleep is recorded in :attr:`sleeps` (seconds) in call order.
    """

    def __init__(self, start_ms: int = 0, *, auto_advance: bool = True) -> None:
        self._ns = start_ms * NS_PER_MS
        self.auto_advance = auto_advance
        self.sleeps: list[float] = []
        self._cond = threading.Condition()
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    def now_ns(self) -> int:
        return self._ns

    def now_ms(self) -> int:
        return self._ns // NS_PER_MS

    def advance(self, ms: float) -> None:
        """Move time forward by ``ms`` milliseconds (may be fractional), waking due sleepers."""
        if ms < 0:
            raise ValueError("a monotonic clock cannot go back; use set_ms() for that in a test")
        self._move_to(self._ns + round(ms * NS_PER_MS))

    def advance_ns(self, ns: int) -> None:
        if ns < 0:
            raise ValueError("a monotonic clock cannot go back")
        self._move_to(self._ns + ns)

    def set_ms(self, ms: int) -> None:
        """Jump to an absolute time, backwards too (to test a clock that goes back)."""
        self._move_to(ms * NS_PER_MS, allow_back=True)

    def _move_to(self, ns: int, *, allow_back: bool = False) -> None:
        with self._cond:
            if ns < self._ns and not allow_back:
                return
            self._ns = ns
            self._cond.notify_all()
            due = [fut for deadline, fut in self._waiters if deadline <= ns]
            self._waiters = [(d, f) for d, f in self._waiters if d > ns]
        for fut in due:
            loop = fut.get_loop()
            if loop.is_closed():
                continue
            loop.call_soon_threadsafe(_resolve, fut)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if seconds <= 0:
            return
        with self._cond:
            deadline = self._ns + round(seconds * NS_PER_S)
        if self.auto_advance:
            self._move_to(deadline)
            return
        with self._cond:
            self._cond.wait_for(lambda: self._ns >= deadline)

    async def asleep(self, seconds: float) -> None:
        import asyncio

        self.sleeps.append(seconds)
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        deadline = self._ns + round(seconds * NS_PER_S)
        if self.auto_advance:
            self._move_to(deadline)
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with self._cond:
            if self._ns >= deadline:
                return
            self._waiters.append((deadline, fut))
        await fut

    @property
    def pending_sleepers(self) -> int:
        """How many asyncio sleepers are waiting for time to advance (auto_advance=False)."""
        with self._cond:
            return len(self._waiters)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
