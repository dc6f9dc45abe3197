"""The client's rule cache: (namespace, app, kind) -> (version, resources), plus an on-disk snapshot.

The in-memory :class:`RuleCache` is written only by the client's event loop and read from any
thread. The on-disk :class:`SnapshotFile` keeps the last known state so that an application that
starts while the control plane is unreachable still gets its last rules at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opensergo.client._spec import KindLike, Parser, default_parser, kind_name
from opensergo.common.protocol import SubscriptionKey
from opensergo.spec.base import Resource
from opensergo.spec.kinds import secrets_of
from opensergo.spec.secrets import has_secrets

__all__ = [
    "SNAPSHOT_FORMAT",
    "CacheEntry",
    "RuleCache",
    "SnapshotFile",
    "default_snapshot_dir",
]

_log = logging.getLogger("opensergo.client.cache")

SNAPSHOT_FORMAT = 1


@dataclass(frozen=True)
class CacheEntry:
    """The full state of one key. ``live`` is False while it comes only from the on-disk snapshot.

    ``stream`` identifies the SubscribeConfig stream whose push set this entry (the client's stream
    counter), or None when unknown. Versions are only compared between pushes of one stream: the
    first push of a key on a new stream is authoritative (see :mod:`opensergo.client.subscriber`).
    """

    version: int
    items: tuple[Resource, ...]
    live: bool = True
    stream: int | None = None


class RuleCache:
    """Thread-safe cache of the latest applied state per (namespace, app, kind).

    ``namespace`` and ``app`` are the defaults used by :meth:`get` and :meth:`version` when the
    caller leaves them out (a client's cache uses the client's own).
    """

    def __init__(self, *, namespace: str | None = None, app: str | None = None) -> None:
        self._default_namespace = namespace
        self._default_app = app
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._entries: dict[SubscriptionKey, CacheEntry] = {}
        self._async_waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    # -- queries -------------------------------------------------------------------------------
    def key(
        self, kind: str | KindLike, *, namespace: str | None = None, app: str | None = None
    ) -> SubscriptionKey:
        """The key of ``kind`` (a full name, a registered name or a kind object) for (namespace, app)."""
        ns = namespace or self._default_namespace
        application = app or self._default_app
        if not ns or not application:
            raise ValueError("namespace and app are required (this cache has no defaults)")
        return SubscriptionKey(ns, application, kind_name(kind))

    def get(
        self, kind: str | KindLike, *, namespace: str | None = None, app: str | None = None
    ) -> list[Resource]:
        """The resources of (namespace, app, kind); an empty list if nothing is cached."""
        entry = self.entry(self.key(kind, namespace=namespace, app=app))
        return list(entry.items) if entry is not None else []

    def version(
        self, kind: str | KindLike, *, namespace: str | None = None, app: str | None = None
    ) -> int | None:
        """The cached version of (namespace, app, kind), or None if nothing is cached."""
        entry = self.entry(self.key(kind, namespace=namespace, app=app))
        return entry.version if entry is not None else None

    def entry(self, key: SubscriptionKey) -> CacheEntry | None:
        with self._lock:
            return self._entries.get(key)

    def keys(self) -> list[SubscriptionKey]:
        with self._lock:
            return list(self._entries)

    def items(self) -> list[tuple[SubscriptionKey, CacheEntry]]:
        with self._lock:
            return list(self._entries.items())

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._entries

    # -- updates (client loop only) --------------------------------------------------------------
    def put(
        self,
        key: SubscriptionKey,
        version: int,
        items: Iterable[Resource],
        *,
        live: bool = True,
        stream: int | None = None,
    ) -> None:
        """Replace the state of ``key`` and wake every waiter."""
        entry = CacheEntry(version=version, items=tuple(items), live=live, stream=stream)
        with self._lock:
            self._entries[key] = entry
        self.notify()

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
        self.notify()

    # -- waiting ---------------------------------------------------------------------------------
    def notify(self) -> None:
        """Wake every thread and coroutine waiting on this cache (e.g. after a change elsewhere)."""
        with self._lock:
            self._cond.notify_all()
            waiters = list(self._async_waiters)
        for loop, event in waiters:
            with contextlib.suppress(RuntimeError):  # the waiter's loop is closed
                loop.call_soon_threadsafe(event.set)

    def wait_until(self, predicate: Callable[[], bool], timeout: float | None) -> bool:
        """Block until ``predicate()`` is true (re-checked after every change) or ``timeout`` passes."""
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    async def wait_until_async(self, predicate: Callable[[], bool], timeout: float | None) -> bool:
        """Like :meth:`wait_until`, without blocking the running event loop."""
        loop = asyncio.get_running_loop()
        event = asyncio.Event()
        waiter = (loop, event)
        deadline = None if timeout is None else loop.time() + timeout
        with self._lock:
            self._async_waiters.add(waiter)
        try:
            while True:
                event.clear()
                if predicate():
                    return True
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    return False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), remaining)
        finally:
            with self._lock:
                self._async_waiters.discard(waiter)

    # -- snapshot conversion -------------------------------------------------------------------
    def to_snapshot(self) -> dict[str, Any]:
        """The JSON document of the on-disk snapshot."""
        entries = []
        for key, entry in sorted(self.items()):
            entries.append(
                {
                    "namespace": key.namespace,
                    "app": key.app,
                    "kind": key.kind,
                    "version": entry.version,
                    "items": [item.to_dict() for item in entry.items],
                }
            )
        return {"format": SNAPSHOT_FORMAT, "savedAt": time.time(), "entries": entries}

    def load_snapshot(self, document: Mapping[str, Any], parser: Parser = default_parser) -> int:
        """Add the snapshot's keys as non-live entries (keys already cached are kept); returns the count.

        An entry that cannot be parsed is logged and skipped.
        """
        if document.get("format") != SNAPSHOT_FORMAT:
            raise ValueError(f"unsupported snapshot format {document.get('format')!r}")
        raw_entries = document.get("entries")
        if not isinstance(raw_entries, list):
            raise ValueError("'entries' must be a list")
        loaded = 0
        for index, raw in enumerate(raw_entries):
            try:
                key, version, items = _parse_entry(raw, parser)
            except Exception as exc:
                _log.warning("snapshot entry %d ignored: %s", index, exc)
                continue
            with self._lock:
                if key in self._entries:
                    continue
                self._entries[key] = CacheEntry(version=version, items=items, live=False)
            loaded += 1
        self.notify()
        return loaded


def _parse_entry(raw: object, parser: Parser) -> tuple[SubscriptionKey, int, tuple[Resource, ...]]:
    if not isinstance(raw, dict):
        raise ValueError("not an object")
    fields = {}
    for name in ("namespace", "app", "kind"):
        value = raw.get(name)
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name!r} must be a non-empty string")
        fields[name] = value
    version = raw.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise ValueError("'version' must be an integer")
    raw_items = raw.get("items")
    if not isinstance(raw_items, list):
        raise ValueError("'items' must be a list")
    items = tuple(parser(item) for item in raw_items)
    return SubscriptionKey(fields["namespace"], fields["app"], fields["kind"]), version, items


def default_snapshot_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$OPENSERGO_SNAPSHOT_DIR``, else ``$XDG_CACHE_HOME/opensergo/snapshots``, else
    ``~/.cache/opensergo/snapshots``."""
    env = os.environ if environ is None else environ
    explicit = env.get("OPENSERGO_SNAPSHOT_DIR", "").strip()
    if explicit:
        return Path(explicit).expanduser()
    xdg = env.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "opensergo" / "snapshots"


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def _safe_component(value: str) -> str:
    cleaned = _UNSAFE.sub("_", value)
    if cleaned in ("", ".", ".."):
        cleaned = cleaned.replace(".", "_") or "_"
    return cleaned


class SnapshotFile:
    """One client's snapshot: ``<dir>/<namespace>/<app>.json``, replaced atomically on save.

    Secrets never reach the disk: an entry whose objects hold a secret field (as each kind's
    schema marks them, e.g. a DatabaseEndpoint password or the credentials in its JDBC URL) is
    left out of the file, so that group comes only from the live control plane (see
    docs/security.md). A file written before this rule loses such entries on load as well.
    """

    def __init__(self, directory: Path | str, *, namespace: str, app: str) -> None:
        self.path = Path(directory) / _safe_component(namespace) / f"{_safe_component(app)}.json"

    def load(self) -> dict[str, Any] | None:
        """The stored document; None if there is none or it is unreadable/corrupt (logged)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            _log.warning("cannot read snapshot %s: %s", self.path, exc)
            return None
        try:
            data: Any = json.loads(text)
        except ValueError as exc:
            _log.warning("ignoring corrupt snapshot %s: %s", self.path, exc)
            return None
        if not isinstance(data, dict):
            _log.warning("ignoring corrupt snapshot %s: not a JSON object", self.path)
            return None
        return _without_secrets(data, self.path)

    def save(self, document: Mapping[str, Any]) -> None:
        """Write ``document`` atomically (temporary file in the same directory, then ``os.replace``)."""
        document = _without_secrets(document, self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(document, fh, separators=(",", ":"), sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def _without_secrets(document: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """``document`` without the entries whose items hold a secret (they stay off the disk)."""
    entries = document.get("entries")
    if not isinstance(entries, list):
        return dict(document)
    kept = [
        e
        for e in entries
        if not (isinstance(e, dict) and any(_holds_secret(i) for i in e.get("items") or []))
    ]
    if len(kept) < len(entries):
        _log.info("snapshot %s: %d entry(ies) with secrets left out", path, len(entries) - len(kept))
    return {**document, "entries": kept}


def _holds_secret(item: Any) -> bool:
    return has_secrets(item, secrets_of(item))
