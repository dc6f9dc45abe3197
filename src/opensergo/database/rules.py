"""The database rules of this process: the one entry point the SDK's rule sources call.

``enable_from_env()`` (live, per-kind pushes) calls :func:`apply`; ``load_rules()`` (offline)
calls :func:`replace`. Engines made by :func:`opensergo.database.create_engine` listen here and
rebuild their routing when an object they use changes; nothing the application holds is
rebuilt. This module imports neither SQLAlchemy nor a driver, so the SDK can call it whether or
not the ``database`` extra is installed.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Iterable
from typing import Protocol

from opensergo.spec import database as spec
from opensergo.spec.base import Resource

__all__ = ["KINDS", "DatabaseRules", "Listener", "apply", "default_rules", "replace"]

log = logging.getLogger("opensergo.database")

KINDS: tuple[type[Resource], ...] = (
    spec.VirtualDatabase,
    spec.DatabaseEndpoint,
    spec.ReadWriteSplitting,
    spec.Sharding,
    spec.Encryption,
    spec.Shadow,
    spec.DatabaseDiscovery,
    spec.DistributedTransaction,
)
"""The eight ``database.opensergo.io`` kinds."""

_KIND_NAMES = frozenset(k.KIND for k in KINDS)


def is_database_object(obj: Resource) -> bool:
    return getattr(obj, "GROUP", None) == spec.GROUP and obj.kind in _KIND_NAMES


class Listener(Protocol):
    def rules_changed(self, namespace: str) -> None: ...


class DatabaseRules:
    """Database objects by namespace and kind, plus the engines that use them."""

    def __init__(self) -> None:
        self._objects: dict[str, dict[str, tuple[Resource, ...]]] = {}
        self._lock = threading.RLock()
        self._listeners: weakref.WeakSet[Listener] = weakref.WeakSet()
        self.version = 0

    def objects(self, namespace: str) -> list[Resource]:
        with self._lock:
            return [o for items in self._objects.get(namespace, {}).values() for o in items]

    def apply(self, kind: str | type[Resource], objects: Iterable[Resource], *, namespace: str) -> None:
        """Replace the objects of one kind in ``namespace`` (a control-plane push)."""
        name = kind if isinstance(kind, str) else kind.KIND
        if name not in _KIND_NAMES:
            raise ValueError(f"{name!r} is not a database kind")
        items = tuple(o for o in objects if o.kind == name and o.namespace == namespace)
        with self._lock:
            self._objects.setdefault(namespace, {})[name] = items
            self.version += 1
        self._notify(namespace)

    def replace(self, objects: Iterable[Resource], *, namespace: str) -> int:
        """Replace every database object of ``namespace`` by the database objects among
        ``objects`` (others are skipped); returns how many were taken."""
        grouped: dict[str, tuple[Resource, ...]] = {}
        taken = [o for o in objects if is_database_object(o) and o.namespace == namespace]
        for obj in taken:
            grouped[obj.kind] = (*grouped.get(obj.kind, ()), obj)
        with self._lock:
            self._objects[namespace] = grouped
            self.version += 1
        self._notify(namespace)
        return len(taken)

    def clear(self) -> None:
        with self._lock:
            namespaces = list(self._objects)
            self._objects.clear()
            self.version += 1
        for namespace in namespaces:
            self._notify(namespace)

    def add_listener(self, listener: Listener) -> None:
        self._listeners.add(listener)

    def remove_listener(self, listener: Listener) -> None:
        self._listeners.discard(listener)

    def _notify(self, namespace: str) -> None:
        for listener in list(self._listeners):
            try:
                listener.rules_changed(namespace)
            except Exception:  # a broken listener must not stop the others, nor NACK the push
                log.exception("applying database rules to %r failed", listener)


_default = DatabaseRules()


def default_rules() -> DatabaseRules:
    """The process-wide rules that ``create_engine`` reads by default."""
    return _default


def apply(kind: str | type[Resource], objects: Iterable[Resource], *, namespace: str) -> None:
    """Replace the objects of one database kind in ``namespace`` (called for every push)."""
    _default.apply(kind, objects, namespace=namespace)


def replace(objects: Iterable[Resource], *, namespace: str) -> int:
    """Replace the database objects of ``namespace`` (called by ``load_rules``)."""
    return _default.replace(objects, namespace=namespace)
