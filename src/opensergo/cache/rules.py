"""The cache policies of this process: the one entry point the SDK's rule sources call.

``enable_from_env()`` (live pushes of ``CachePolicy``) calls :func:`apply`; ``load_rules()``
(offline) calls :func:`replace`. Governed clients (:func:`opensergo.cache.governed`) listen here
and recompile their policy when an object naming their cache changes. This module imports no
Redis client, so the SDK can call it whether or not the ``cache`` extra is installed.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Iterable
from typing import Protocol

from opensergo.spec.base import Resource
from opensergo.spec.cache import CachePolicy

__all__ = ["KINDS", "CacheRules", "Listener", "apply", "default_rules", "replace"]

log = logging.getLogger("opensergo.cache")

KINDS: tuple[type[Resource], ...] = (CachePolicy,)
"""The ``cache.opensergo.io`` kinds."""


class Listener(Protocol):
    def policies_changed(self) -> None: ...


class CacheRules:
    """CachePolicy objects by namespace, and the governed caches that use them."""

    def __init__(self) -> None:
        self._objects: dict[str, tuple[CachePolicy, ...]] = {}
        self._lock = threading.RLock()
        self._listeners: weakref.WeakSet[Listener] = weakref.WeakSet()
        self.version = 0

    def policy_for(self, cache: str, namespace: str | None = None) -> CachePolicy | None:
        """The policy naming ``cache`` (in ``namespace``, or any); the first by name when several
        do, which is logged."""
        with self._lock:
            found = sorted(
                (
                    o
                    for ns, items in self._objects.items()
                    if namespace is None or ns == namespace
                    for o in items
                    if cache in o.spec.cacheNames
                ),
                key=lambda o: (o.namespace, o.name),
            )
        if len(found) > 1:
            log.warning(
                "cache %r is named by %d CachePolicy objects (%s); using %s",
                cache, len(found), ", ".join(o.name for o in found), found[0].name,
            )  # fmt: skip
        return found[0] if found else None

    def apply(self, objects: Iterable[Resource], *, namespace: str) -> None:
        """Replace the CachePolicy objects of ``namespace`` (a push; other kinds are skipped)."""
        items = tuple(o for o in objects if isinstance(o, CachePolicy) and o.namespace == namespace)
        with self._lock:
            self._objects[namespace] = items
            self.version += 1
        self._notify()

    replace = apply

    def clear(self) -> None:
        with self._lock:
            self._objects.clear()
            self.version += 1
        self._notify()

    def add_listener(self, listener: Listener) -> None:
        self._listeners.add(listener)

    def remove_listener(self, listener: Listener) -> None:
        self._listeners.discard(listener)

    def _notify(self) -> None:
        for listener in list(self._listeners):
            try:
                listener.policies_changed()
            except Exception:  # one broken cache must not stop the others, nor NACK the push
                log.exception("applying cache policies to %r failed", listener)


_default = CacheRules()


def default_rules() -> CacheRules:
    """The process-wide policies that ``governed`` reads by default."""
    return _default


def apply(kind: str, objects: Iterable[Resource], *, namespace: str) -> None:
    """Replace the CachePolicy objects of ``namespace`` (called for every push)."""
    _default.apply(objects, namespace=namespace)


def replace(objects: Iterable[Resource], *, namespace: str) -> int:
    """Replace the CachePolicy objects of ``namespace`` (called by ``load_rules``)."""
    items = [o for o in objects if isinstance(o, CachePolicy)]
    _default.apply(items, namespace=namespace)
    return len(items)
