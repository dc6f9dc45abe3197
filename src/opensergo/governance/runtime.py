"""Live governance: keep an :class:`~opensergo.governance.Engine` in step with the control plane.

::

    from opensergo import enable_from_env

    governance = enable_from_env(app="foo-app")  # None when OPENSERGO_BOOTSTRAP* is not set

or, with a client you built yourself::

    client = OpenSergoClient("127.0.0.1:10246", app="foo-app")
    governance = attach(client)  # the process-wide engine unless engine= is given
    client.start()

:class:`Governance` subscribes the client to every fault-tolerance kind (FaultToleranceRule, the
five strategy kinds, HttpRequestFallbackAction) for the client's app and namespace, and feeds
each push to the engine, which recompiles atomically. Pushes that arrive together (an
``opensergo apply`` of a strategy, a fallback action and the rule that uses them is three pushes,
one per kind) are coalesced for ``coalesce`` seconds (default 20 ms) and applied in one
recompile, so a request never sees the rule without its strategy or its fallback action. It also
subscribes to the app's own ``ServiceInstance`` objects and keeps
:meth:`Engine.set_instance_count` equal to the number of live instances, so GlobalToLocal rate
limits re-divide their threshold as instances join and leave.

Global rate limits (``limitMode: Global``) lease tokens through the client's token client
(:meth:`OpenSergoClient.token_client`), which shares the client's connection and loop thread.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import logging
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

from opensergo.cache import rules as cache_rules
from opensergo.client.bootstrap import governance_enabled
from opensergo.client.client import OpenSergoClient, Subscription
from opensergo.client.tokens import TokenClient
from opensergo.database import rules as database_rules
from opensergo.governance.api import default_engine
from opensergo.governance.faulttolerance.engine import KINDS, Engine
from opensergo.observability.auto import enable_signals
from opensergo.spec.base import Resource
from opensergo.spec.discovery import ServiceInstance

__all__ = [
    "Governance",
    "attach",
    "current",
    "disable",
    "enable_from_env",
]

log = logging.getLogger("opensergo.governance.runtime")

INSTANCE_KIND = ServiceInstance.KIND


class Governance:
    """Drives ``engine`` (default: the process-wide one) from ``client``'s subscriptions.

    Call :meth:`attach` (done by :func:`attach`) before or after the client starts; then start
    the client. ``instances=False`` leaves the instance count alone (GlobalToLocal then divides by
    the engine's current count, 1 by default). ``coalesce`` is how long pushes are gathered
    before one recompile (0: every push recompiles at once).
    """

    def __init__(
        self,
        client: OpenSergoClient,
        engine: Engine | None = None,
        *,
        instances: bool = True,
        coalesce: float = 0.02,
        global_limits: bool = True,
    ) -> None:
        self.client = client
        # limitMode Global: leases from the control plane's token service (local shares without),
        # through the client's token client, taken when this starts.
        self.global_limits = global_limits
        self.tokens: TokenClient | None = None
        self.engine = engine if engine is not None else default_engine()
        self.track_instances = instances
        self.coalesce = coalesce
        self._subs: list[Subscription] = []
        self._lock = threading.Lock()
        self._staged: dict[str, list[Resource]] = {}
        self._versions: dict[str, int] = {}
        self._flush_scheduled = False
        self._instance_count: int | None = None
        self.pushes = 0
        """Pushes received (fault-tolerance and instance pushes)."""
        self.applied = 0
        """Recompiles caused by pushes."""

    # -- lifecycle -------------------------------------------------------------------------------

    def attach(self) -> Governance:
        """Subscribe to every fault-tolerance kind, and to ServiceInstance when tracking instances."""
        if self._subs:
            return self
        for kind in KINDS:
            self._subs.append(self.client.subscribe(kind, callback=self._rules_callback(kind)))
        for db_kind in database_rules.KINDS:  # opensergo.database engines follow these
            callback = functools.partial(_apply_database, db_kind.KIND, self.client.namespace)
            self._subs.append(self.client.subscribe(db_kind.KIND, callback=callback))
        for cache_kind in cache_rules.KINDS:  # opensergo.cache governed clients follow these
            callback = functools.partial(_apply_cache, cache_kind.KIND, self.client.namespace)
            self._subs.append(self.client.subscribe(cache_kind.KIND, callback=callback))
        if self.track_instances:
            self._subs.append(self.client.subscribe(INSTANCE_KIND, callback=self._on_instances))
        return self

    def detach(self) -> None:
        """Unsubscribe; the engine keeps the rules it has."""
        subs, self._subs = self._subs, []
        for sub in subs:
            with contextlib.suppress(RuntimeError):  # the client is already stopped
                sub.unsubscribe()

    def start(self, timeout: float | None = 10.0) -> Governance:
        """Start the client (on its own thread)."""
        self._start_tokens()
        self.client.start(timeout)
        return self

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop the client; the engine keeps the rules it has."""
        self.client.stop(timeout)
        self._stop_tokens()

    async def astart(self) -> Governance:
        self._start_tokens()
        await self.client.astart()
        return self

    async def astop(self) -> None:
        await self.client.astop()
        self._stop_tokens()

    def _start_tokens(self) -> None:
        # The client starts and stops its token client with itself.
        if self.global_limits and self.tokens is None:
            self.tokens = self.client.token_client()
            self.engine.set_token_source(self.tokens)

    def _stop_tokens(self) -> None:
        tokens, self.tokens = self.tokens, None
        if tokens is not None:
            self.engine.set_token_source(None)

    def wait_synced(self, timeout: float | None) -> bool:
        """Block until every subscription got its first live push and it was applied."""
        if not self.client.wait_synced(timeout):
            return False
        self.flush()
        return True

    async def wait_synced_async(self, timeout: float | None) -> bool:
        if not await self.client.wait_synced_async(timeout):
            return False
        self.flush()
        return True

    # -- state -----------------------------------------------------------------------------------

    @property
    def versions(self) -> dict[str, int]:
        """The last pushed version per kind."""
        return dict(self._versions)

    @property
    def instance_count(self) -> int | None:
        """The live instances of this app as last pushed (None: no push yet)."""
        return self._instance_count

    def status(self) -> dict[str, Any]:
        """Plain data for a debug endpoint."""
        return {
            "app": self.client.app,
            "namespace": self.client.namespace,
            "connected": self.client.connected,
            "engine_version": self.engine.version,
            "resources": list(self.engine.resources),
            "instances": self.engine.instances,
            "versions": self.versions,
            "problems": list(self.engine.problems),
            "blocks": {"|".join(k): v for k, v in self.engine.block_counts().items()},
        }

    # -- pushes ----------------------------------------------------------------------------------

    def _rules_callback(self, kind: str) -> Callable[[list[Resource], int], None]:
        def on_push(resources: list[Resource], version: int) -> None:
            self._on_rules(kind, resources, version)

        return on_push

    def _on_rules(self, kind: str, resources: list[Resource], version: int) -> None:
        self.pushes += 1
        self._versions[kind] = version
        with self._lock:
            self._staged[kind] = [r for r in resources if r.kind == kind]
            if self._flush_scheduled:
                return
            delay = self.coalesce
            loop: asyncio.AbstractEventLoop | None = None
            if delay > 0:
                try:
                    loop = asyncio.get_running_loop()
                except RuntimeError:
                    loop = None
            if loop is not None:
                self._flush_scheduled = True
                loop.call_later(delay, self.flush)
                return
        self.flush()

    def flush(self) -> None:
        """Apply the pushes gathered so far in one recompile (normally done by a timer)."""
        with self._lock:
            staged, self._staged = self._staged, {}
            self._flush_scheduled = False
        if not staged:
            return
        engine = self.engine
        if len(staged) == 1:
            [(kind, items)] = staged.items()
            result = engine.update_kind(kind, items)
        else:
            current: dict[str, list[Resource]] = {}
            for obj in engine.objects():
                current.setdefault(obj.kind, []).append(obj)
            current.update(staged)
            result = engine.set_rules([obj for items in current.values() for obj in items])
        self.applied += 1
        log.info(
            "fault-tolerance rules applied (%s): engine version %d, guarded resources %s",
            ", ".join(f"{k} x{len(v)}" for k, v in staged.items()),
            result.version,
            list(result.resources),
        )

    def _on_instances(self, resources: list[Resource], version: int) -> None:
        self.pushes += 1
        app = self.client.app
        count = sum(1 for r in resources if isinstance(r, ServiceInstance) and r.spec.app == app)
        self._instance_count = count
        before = self.engine.instances
        self.engine.set_instance_count(max(1, count))
        if self.engine.instances != before:
            log.info("live instances of %s: %d (GlobalToLocal thresholds re-divided)", app, count)


def _apply_database(kind: str, namespace: str, resources: list[Resource], version: int) -> None:
    database_rules.apply(kind, resources, namespace=namespace)


def _apply_cache(kind: str, namespace: str, resources: list[Resource], version: int) -> None:
    cache_rules.apply(kind, resources, namespace=namespace)


def attach(
    client: OpenSergoClient,
    engine: Engine | None = None,
    *,
    instances: bool = True,
    coalesce: float = 0.02,
    global_limits: bool = True,
) -> Governance:
    """Drive ``engine`` (default: the process-wide one) from ``client``; see :class:`Governance`."""
    return Governance(
        client, engine, instances=instances, coalesce=coalesce, global_limits=global_limits
    ).attach()


_active: Governance | None = None
_active_lock = threading.Lock()


def enable_from_env(
    app: str | None = None,
    *,
    engine: Engine | None = None,
    environ: Mapping[str, str] | None = None,
    wait: float | None = None,
    **client_options: Any,
) -> Governance | None:
    """Turn governance on when ``OPENSERGO_BOOTSTRAP_CONFIG`` / ``OPENSERGO_BOOTSTRAP`` is set.

    Creates a client from the environment (``app``, else the bootstrap ``app``, else
    ``$OPENSERGO_APP``; ``client_options`` go to :meth:`OpenSergoClient.from_env`), attaches it
    to ``engine`` (default: the process-wide engine), starts it on its own thread and returns the
    :class:`Governance` (``.client``, ``.engine``). Returns None when the environment is not set:
    governance is off and every guard passes. ``wait`` seconds, when given, waits for the first
    rules. Process-wide and idempotent: later calls return the same object. The client is stopped
    at interpreter exit.
    """
    global _active
    if not governance_enabled(environ):
        return None
    with _active_lock:
        if _active is not None:
            return _active
        client = OpenSergoClient.from_env(app=app, environ=environ, **client_options)
        governance = attach(client, engine)
        governance.start()
        _active = governance
    # Metrics, traces and logs on with governance, unless switched off (observability/auto.py).
    env = os.environ if environ is None else environ
    enable_signals(
        app=client.app, namespace=client.namespace, environ=env, engine=engine,
        framework=env.get("OPENSERGO_FRAMEWORK"),
    )  # fmt: skip
    atexit.register(_stop_at_exit, governance)
    log.info(
        "OpenSergo governance on for %s/%s via %s", client.namespace, client.app, ", ".join(client.endpoints)
    )
    if wait is not None and not governance.wait_synced(wait):
        log.warning("no rules from the control plane within %.1f s; continuing", wait)
    return governance


def current() -> Governance | None:
    """The Governance started by :func:`enable_from_env`, if any."""
    return _active


def disable() -> None:
    """Stop the Governance started by :func:`enable_from_env` (its rules stay in the engine)."""
    global _active
    with _active_lock:
        governance, _active = _active, None
    if governance is not None:
        governance.detach()
        governance.stop()


def _stop_at_exit(governance: Governance) -> None:
    if governance is _active or _active is None:
        try:
            governance.stop(timeout=2.0)
        except Exception:  # pragma: no cover - best effort at exit
            log.debug("stopping the OpenSergo client at exit failed", exc_info=True)
