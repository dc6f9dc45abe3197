"""Where the SDK's asyncio core runs: a loop on a daemon thread of its own, or the application's.

Sync applications get one daemon thread running one event loop (:meth:`LoopThread.start`); the
subscribe stream, the metadata reporter and the token client all run on it. Asyncio applications
run the core on their own loop (:meth:`LoopThread.adopt`). Sync code reaches the loop through
:meth:`LoopThread.call` (a function) and :meth:`LoopThread.run` (a coroutine).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["LoopThread"]

T = TypeVar("T")


class LoopThread:
    """One event loop for the SDK core, with the thread that runs it when the loop is ours."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        """The daemon thread running the loop (kept after :meth:`stop`); None on an adopted loop."""
        self._thread_id: int | None = None

    @property
    def owns_thread(self) -> bool:
        """True when the loop runs on a thread of ours (:meth:`start`), not the application's."""
        return self.thread is not None

    def start(self) -> asyncio.AbstractEventLoop:
        """Run a new event loop on a new daemon thread."""
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=_run_forever, args=(loop,), name=self.name, daemon=True)
        thread.start()
        self.loop, self.thread, self._thread_id = loop, thread, thread.ident
        return loop

    def adopt(self) -> asyncio.AbstractEventLoop:
        """Use the running event loop (the caller's thread); no thread of ours."""
        self.loop = asyncio.get_running_loop()
        self.thread, self._thread_id = None, threading.get_ident()
        return self.loop

    def on_loop_thread(self) -> bool:
        return self._thread_id is not None and threading.get_ident() == self._thread_id

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = 10.0) -> T:
        """Run ``coro`` on the loop from another thread and wait for its result."""
        loop = self._require_loop()
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        try:
            return future.result(timeout)
        except BaseException:
            future.cancel()
            raise

    def call(self, fn: Callable[[], T], timeout: float | None = 10.0) -> T:
        """Call ``fn`` on the loop (at once when already on it) and wait for its result."""
        if self.on_loop_thread():
            return fn()
        loop = self._require_loop()
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def runner() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

        try:
            loop.call_soon_threadsafe(runner)
        except RuntimeError as exc:  # the loop is closed
            raise RuntimeError("the OpenSergo client is stopped") from exc
        return future.result(timeout)

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop our loop and join its thread (its remaining tasks are cancelled); an adopted loop
        is left alone."""
        loop, thread = self.loop, self.thread
        if thread is None or loop is None:
            return
        if self.on_loop_thread():
            raise RuntimeError("the SDK loop cannot be stopped from its own thread")
        with contextlib.suppress(RuntimeError):  # already closed
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)

    def _require_loop(self) -> asyncio.AbstractEventLoop:
        if self.loop is None or self.loop.is_closed():
            raise RuntimeError("the OpenSergo client is stopped")
        return self.loop


def _run_forever(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        try:
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()
