"""The clients ``opensergo-run`` puts in place of ``redis.Redis`` and ``redis.asyncio.Redis``.

Each is the governed client (:class:`~opensergo.cache.client.GovernedRedis`,
:class:`~opensergo.cache.aio.AsyncGovernedRedis`) under the cache name ``$OPENSERGO_CACHE_NAME``,
else the ``client_name`` the application gives, else ``default``. The first command any of them
sends turns governance on (``enable_from_env``) if nothing has yet, so a process that only talks
to Redis still receives its CachePolicy objects; before a policy arrives calls pass through.
"""

from __future__ import annotations

import functools
import logging
import threading
from typing import Any

__all__ = ["async_class", "start_governance", "sync_class"]

log = logging.getLogger("opensergo.cache")

_lock = threading.Lock()
_started = False


def start_governance() -> None:
    """Turn governance on once per process (a no-op when it is already on or not configured)."""
    global _started
    with _lock:
        if _started:
            return
        _started = True
    try:
        from opensergo.governance.runtime import current, enable_from_env

        if current() is None:
            enable_from_env()
    except Exception:
        log.exception("opensergo-run: cannot start OpenSergo governance for the cache")


# Built on first use, by the import hook, once the redis package is complete.
@functools.cache
def sync_class() -> type[Any]:
    from opensergo.cache.client import GovernedRedis

    class AutoGovernedRedis(GovernedRedis):
        _opensergo = True

        def execute_command(self, *args: Any, **options: Any) -> Any:
            if not _started:
                start_governance()
            return super().execute_command(*args, **options)

        def get(self, name: Any) -> Any:
            if not _started:
                start_governance()
            return super().get(name)

    return AutoGovernedRedis


@functools.cache
def async_class() -> type[Any]:
    from opensergo.cache.aio import AsyncGovernedRedis

    class AutoAsyncGovernedRedis(AsyncGovernedRedis):
        _opensergo = True

        async def execute_command(self, *args: Any, **options: Any) -> Any:
            if not _started:
                start_governance()
            return await super().execute_command(*args, **options)

        async def get(self, name: Any) -> Any:
            if not _started:
                start_governance()
            return await super().get(name)

    return AutoAsyncGovernedRedis
