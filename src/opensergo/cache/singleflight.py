"""Single-flight: concurrent calls for one key share one execution (Go's x/sync/singleflight).

The first caller for a key runs the function; callers arriving while it runs wait and get the
same value, or the same exception. Nothing is cached: the key is forgotten as soon as the call
ends, so the next caller starts afresh. :class:`SingleFlight` serves threads,
:class:`AsyncSingleFlight` the coroutines of one event loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

__all__ = ["AsyncSingleFlight", "SingleFlight"]


class _Call:
    __slots__ = ("done", "error", "value", "waiters")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: Any = None
        self.error: BaseException | None = None
        self.waiters = 0


class SingleFlight:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[Hashable, _Call] = {}
        self.executions = 0
        self.shared = 0

    def do(self, key: Hashable, fn: Callable[[], Any]) -> Any:
        with self._lock:
            call = self._calls.get(key)
            if call is not None:
                call.waiters += 1
                self.shared += 1
                leader = False
            else:
                call = self._calls[key] = _Call()
                self.executions += 1
                leader = True
        if not leader:
            call.done.wait()
            if call.error is not None:
                raise call.error
            return call.value
        try:
            call.value = fn()
        except BaseException as err:
            call.error = err
            raise
        finally:
            with self._lock:
                del self._calls[key]
            call.done.set()
        return call.value

    def in_flight(self) -> int:
        return len(self._calls)


class AsyncSingleFlight:
    def __init__(self) -> None:
        self._calls: dict[Hashable, asyncio.Future[Any]] = {}
        self.executions = 0
        self.shared = 0

    async def do(self, key: Hashable, fn: Callable[[], Awaitable[Any]]) -> Any:
        future = self._calls.get(key)
        if future is not None:
            self.shared += 1
            # shield: a waiter cancelled must not cancel the leader's load for everyone else
            return await asyncio.shield(future)
        future = asyncio.get_running_loop().create_future()
        self._calls[key] = future
        self.executions += 1
        try:
            value = await fn()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as err:
            if not future.done():
                future.set_exception(err)
                future.exception()  # retrieved here, so an unawaited one is not logged
            raise
        else:
            future.set_result(value)
            return value
        finally:
            del self._calls[key]

    def in_flight(self) -> int:
        return len(self._calls)
