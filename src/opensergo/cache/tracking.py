"""Redis server-assisted client-side caching over RESP2, which works on Redis 6.0 and later.

redis-py's own client-side cache (``cache_config``) needs Redis 7.4 and is sync-only; Debian's
Redis is 7.0. This module drives the commands itself:

* :class:`InvalidationListener` keeps one connection (a thread of its own) that asks
  ``CLIENT ID`` and then subscribes to ``__redis__:invalidate``. Redis publishes there, as an
  array of key names (or nil for FLUSHALL/FLUSHDB), the keys that tracked connections read and
  that were then written, expired or evicted. It PINGs every ``ping_every`` seconds and declares
  the connection lost when nothing came back for ``dead_after`` seconds or the socket fails;
  then it reconnects with backoff. Each (re)connection is a new client id and a new
  ``generation``.
* :func:`tracking_command` is what a data connection sends (once per connection and generation)
  before its first tracked read: ``CLIENT TRACKING ON REDIRECT <id> OPTIN``. With OPTIN only the
  reads preceded by ``CLIENT CACHING YES`` are tracked, so only hot keys occupy Redis' tracking
  table and only they cause invalidation messages.

Callers are told through three callbacks: ``on_keys(keys)`` (``None``: everything),
``on_lost(now)`` and ``on_restored()``; on restore the caller flushes whatever it cached, since
invalidations sent while the connection was down are lost.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import redis
from redis.connection import AbstractConnection

__all__ = ["CHANNEL", "InvalidationListener", "resp2_kwargs", "sync_connection_args", "tracking_command"]

log = logging.getLogger("opensergo.cache")

CHANNEL = b"__redis__:invalidate"

# The connection settings a listener may copy from an asyncio pool's connection kwargs.
_PORTABLE = frozenset(
    {
        "host", "port", "db", "username", "password", "socket_timeout", "socket_connect_timeout",
        "socket_keepalive", "socket_keepalive_options", "client_name", "path", "ssl_keyfile",
        "ssl_certfile", "ssl_cert_reqs", "ssl_ca_certs", "ssl_ca_data", "ssl_check_hostname",
        "encoding", "encoding_errors", "decode_responses",
    }
)  # fmt: skip


def sync_connection_args(
    connection_class: type[Any], kwargs: Mapping[str, Any]
) -> tuple[type[AbstractConnection], dict[str, Any]]:
    """A sync connection class and arguments reaching the same server as a (sync or asyncio)
    pool's ``connection_class`` and ``connection_kwargs``."""
    if issubclass(connection_class, AbstractConnection):
        return connection_class, dict(kwargs)
    name = connection_class.__name__
    cls = getattr(redis.connection, name, None)
    if not (isinstance(cls, type) and issubclass(cls, AbstractConnection)):
        cls = redis.connection.Connection
    return cls, {k: v for k, v in kwargs.items() if k in _PORTABLE}


def resp2_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """A pool's connection kwargs for a RESP2 connection of our own: no client-side cache, no
    maintenance notifications (both need RESP3), and no connect hook of the app's."""
    out = dict(kwargs)
    for name in ("cache", "cache_config", "maint_notifications_config", "maint_notifications_pool_handler"):
        out.pop(name, None)
    out.update(protocol=2, redis_connect_func=None)
    return out


def tracking_command(client_id: int) -> tuple[str, ...]:
    return ("CLIENT", "TRACKING", "ON", "REDIRECT", str(client_id), "OPTIN")


class InvalidationListener:
    """The invalidation connection of one governed client (see the module docstring)."""

    def __init__(
        self,
        connection_class: type[AbstractConnection],
        connection_kwargs: Mapping[str, Any],
        on_keys: Callable[[list[bytes] | None], None],
        on_lost: Callable[[float], None],
        on_restored: Callable[[], None],
        *,
        ping_every: float = 1.0,
        dead_after: float = 3.0,
        name: str = "",
    ) -> None:
        kwargs = resp2_kwargs(connection_kwargs)
        kwargs["decode_responses"] = False  # keys as Redis names them
        kwargs.pop("retry", None)  # this loop reconnects by itself
        if kwargs.get("socket_connect_timeout") is None:
            kwargs["socket_connect_timeout"] = 1.0
        self._connection_class = connection_class
        self._kwargs = kwargs
        # Weak: the thread must not keep the governed client alive.
        self._on_keys = _weak(on_keys)
        self._on_lost = _weak(on_lost)
        self._on_restored = _weak(on_restored)
        self.ping_every = ping_every
        self.dead_after = dead_after
        self.client_id: int | None = None
        self.generation = 0
        self.up = threading.Event()
        self.messages = 0
        self.reconnects = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"opensergo-cache-tracking-{name}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        backoff = 0.05
        was_up = False
        while not self._stop.is_set():
            conn: Any = self._connection_class(**self._kwargs)
            try:
                client_id = self._subscribe(conn)
                self.client_id = client_id
                self.generation += 1
                if not _call(self._on_restored):
                    return
                self.up.set()
                if was_up:
                    self.reconnects += 1
                was_up = True
                backoff = 0.05
                log.debug("cache tracking: invalidations redirected to client %d", client_id)
                self._listen(conn)
            except (redis.RedisError, OSError) as err:
                if self.up.is_set():
                    log.warning(
                        "cache tracking connection lost (%s); near-cache not fresh until it is back", err
                    )
                elif not was_up:
                    log.debug("cache tracking connection failed: %s", err)
            finally:
                conn.disconnect()
            if self.up.is_set():
                self.up.clear()
                self.client_id = None
                if not _call(self._on_lost, time.monotonic()):
                    return
            if self._stop.wait(backoff):
                return
            backoff = min(backoff * 2, 1.0)

    def _subscribe(self, conn: Any) -> int:
        conn.connect()
        conn.send_command("CLIENT", "ID")
        client_id = int(conn.read_response())
        conn.send_command("SUBSCRIBE", CHANNEL)
        reply = conn.read_response()
        if not (isinstance(reply, list) and reply and reply[0] == b"subscribe"):
            raise redis.ConnectionError(f"unexpected reply to SUBSCRIBE: {reply!r}")
        return client_id

    def _listen(self, conn: Any) -> None:
        last_heard = last_ping = time.monotonic()
        while not self._stop.is_set():
            if self._on_keys() is None:  # the governed client is gone
                self._stop.set()
                return
            now = time.monotonic()
            if now - last_heard > self.dead_after:
                raise redis.TimeoutError(f"no reply from the cache for {self.dead_after:.1f} s")
            if now - last_ping >= self.ping_every:
                conn.send_command("PING")
                last_ping = now
            if not conn.can_read(timeout=0.1):
                continue
            reply = conn.read_response()
            last_heard = time.monotonic()
            if isinstance(reply, list) and len(reply) == 3 and reply[0] == b"message":
                self.messages += 1
                keys = reply[2]
                if not _call(self._on_keys, list(keys) if isinstance(keys, list) else None):
                    return


def _weak(fn: Callable[..., Any]) -> Callable[[], Callable[..., Any] | None]:
    if hasattr(fn, "__self__") and hasattr(fn, "__func__"):
        return weakref.WeakMethod(fn)
    return lambda: fn


def _call(ref: Callable[[], Callable[..., Any] | None], *args: Any) -> bool:
    """Call the referenced callback; False once its owner is gone (the thread then ends)."""
    fn = ref()
    if fn is None:
        return False
    fn(*args)
    return True
