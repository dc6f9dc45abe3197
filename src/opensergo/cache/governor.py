"""What a governed client (sync or asyncio) keeps besides its connections: the compiled policy
for its cache name, kept current as policies are pushed, and the invalidation listener that the
near-cache needs while the policy has one with tracking."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from opensergo.cache import report
from opensergo.cache.detector import HotKey
from opensergo.cache.policy import Policy, compile_policy
from opensergo.cache.rules import CacheRules, default_rules
from opensergo.cache.tracking import InvalidationListener, sync_connection_args
from opensergo.common.clock import SYSTEM_CLOCK, Clock

__all__ = ["Governor", "key_bytes", "key_text"]

log = logging.getLogger("opensergo.cache")


def key_bytes(name: Any) -> bytes:
    """A key as Redis spells it on the wire (and in invalidation messages)."""
    if type(name) is bytes:
        return name
    if type(name) is str:
        return name.encode("utf-8")
    if isinstance(name, str):
        return name.encode("utf-8")
    if isinstance(name, bytes | bytearray | memoryview):
        return bytes(name)
    return str(name).encode("utf-8")  # redis-py sends numbers as their decimal text


def key_text(key: bytes) -> str:
    return key.decode("utf-8", "backslashreplace")


class Governor:
    def __init__(
        self,
        cache: str,
        connection_class: type[Any],
        connection_kwargs: Mapping[str, Any],
        *,
        rules: CacheRules | None = None,
        namespace: str | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.cache = cache
        self.namespace = namespace
        self.clock = clock
        self._ns = clock.now_ns
        if clock is SYSTEM_CLOCK:  # the same clock, read without a Python frame
            self.now = time.monotonic  # type: ignore[method-assign]
        self._connection = sync_connection_args(connection_class, connection_kwargs)
        self._rules = rules if rules is not None else default_rules()
        self.listener: InvalidationListener | None = None
        self.policy: Policy = compile_policy(cache, None, clock)
        self._rules.add_listener(self)
        self.policies_changed()
        report.register(self)

    def now(self) -> float:
        return self._ns() / 1e9

    # -- rules ------------------------------------------------------------------------------------

    def policies_changed(self) -> None:
        obj = self._rules.policy_for(self.cache, self.namespace)
        if obj == self.policy.source:  # a re-push of the same object keeps the warm state
            return
        policy = compile_policy(self.cache, obj, self.clock)
        if policy.tracking:
            self._start_listener()
        self.policy = policy
        if (
            policy.tracking
            and policy.near is not None
            and self.listener is not None
            and self.listener.up.is_set()
        ):
            policy.near.tracking_restored()
        if not policy.tracking:
            self._stop_listener()
        log.info("cache %r governed by %s", self.cache, obj.name if obj is not None else "no CachePolicy")

    def _start_listener(self) -> None:
        if self.listener is not None and self.listener.alive:
            return
        cls, kwargs = self._connection
        self.listener = InvalidationListener(
            cls, kwargs, self._on_keys, self._on_lost, self._on_restored, name=self.cache
        )

    def _stop_listener(self) -> None:
        listener, self.listener = self.listener, None
        if listener is not None:
            listener.stop(timeout=0)

    def close(self) -> None:
        self._rules.remove_listener(self)
        self._stop_listener()

    # -- invalidation callbacks (the listener's thread) --------------------------------------------

    def _on_keys(self, keys: list[bytes] | None) -> None:
        near = self.policy.near
        if near is None:
            return
        if keys is None:
            near.flush()
        else:
            near.invalidate(keys)

    def _on_lost(self, now: float) -> None:
        near = self.policy.near
        if near is not None:
            near.tracking_lost(self.now())

    def _on_restored(self) -> None:
        near = self.policy.near
        if near is not None:
            near.tracking_restored()

    # -- tracked reads --------------------------------------------------------------------------

    def tracking_target(self) -> tuple[int, int] | None:
        """(client id, generation) of the invalidation connection, None while it is down."""
        listener = self.listener
        if listener is None or not listener.up.is_set():
            return None
        client_id = listener.client_id
        return None if client_id is None else (client_id, listener.generation)

    # -- reporting ------------------------------------------------------------------------------

    def hot_keys(self) -> list[HotKey]:
        detector = self.policy.detector
        return [] if detector is None else detector.top(self.now())

    def stats(self) -> dict[str, Any]:
        p = self.policy
        out: dict[str, Any] = {"cache": self.cache, "policy": p.name}
        if p.near is not None:
            n = p.near
            out["nearCache"] = {
                "entries": len(n), "hits": n.hits, "staleHits": n.stale_hits, "fills": n.fills,
                "droppedFills": n.dropped_fills, "invalidations": n.invalidations, "flushes": n.flushes,
                "trackingUp": n.tracking_up,
            }  # fmt: skip
        if p.breaker is not None:
            out["breaker"] = {"state": p.breaker.state.name.lower(), "opens": p.breaker.opens}
        if p.loads is not None:
            out["loadsRefused"] = p.loads.refused
        if p.big is not None:
            out["bigValues"] = {"warned": p.big.warned, "refused": p.big.refused}
        return out
