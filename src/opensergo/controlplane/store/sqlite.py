"""The embedded default store: one SQLite file, durable (WAL + synchronous=FULL).

Table ``events`` is an append-only log whose AUTOINCREMENT key is the store revision; it doubles
as the replay source of ``watch(since)`` and as the per-object version history. :meth:`compact`
(and each write, for its object) keeps it bounded: at most N changes per object, and nothing older
than the retention except each object's current state. A watch from before a dropped deletion
raises CompactedError. Table ``server_values`` holds the control plane's own values (the session
key, revoked sessions).

Opened ``shared``, several processes (the workers of one replica, see workers.py) use one file:
a writer takes SQLite's write lock first (``BEGIN IMMEDIATE``) and continues from the revision
the others reached, a watch polls the log for the others' changes, and status documents live in
``server_values``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

from opensergo.controlplane.store.base import (
    BatchOp,
    BatchResults,
    Bookmark,
    CompactedError,
    ConflictError,
    Delete,
    EventType,
    NotFoundError,
    ObjectKey,
    Put,
    StoredObject,
    WatchEvent,
    WatchEvents,
    with_revision,
    with_server_metadata,
)

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    kind TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    body TEXT NOT NULL,
    revision INTEGER NOT NULL,
    PRIMARY KEY (kind, namespace, name)
);
CREATE TABLE IF NOT EXISTS events (
    revision INTEGER PRIMARY KEY AUTOINCREMENT,
    type TEXT NOT NULL,
    kind TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_object ON events (kind, namespace, name, revision);
CREATE TABLE IF NOT EXISTS server_values (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    expires REAL
);
"""
_COMPACTED = "store/compacted-revision"  # server value: the newest deletion compaction dropped

_WATCH_QUEUE_LIMIT = 10_000
_STATUS_PREFIX = "replica-status/"  # server values: the status documents of a shared store
# How often a shared store's watch reads the log for other processes' changes (s): their latency.
SHARED_POLL_INTERVAL = 0.01
_BUSY_TIMEOUT = 30.0  # s: how long a writer waits for another process's transaction


class _Watcher:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[WatchEvent | None] = asyncio.Queue(maxsize=_WATCH_QUEUE_LIMIT)
        self.overflowed = False


class SqliteStore:
    """Store backed by ``<data_dir>/opensergo.db``: one process, or the processes of one machine
    when ``shared`` (see the module's docstring)."""

    supports_ttl = False
    status_subresource = False
    max_batch = 1000  # one transaction: bounded only to keep each commit short

    def __init__(
        self, data_dir: str | Path, history_per_object: int | None = None, *, shared: bool = False
    ) -> None:
        """``history_per_object``: changes kept per object, trimmed at each write (None: all).
        ``shared``: other processes open the same file (``shared`` in the Store protocol)."""
        self.path = Path(data_dir) / "opensergo.db"
        self.history_per_object = history_per_object
        self.shared = shared
        self._db: aiosqlite.Connection | None = None
        self._revision = 0
        self._lock = asyncio.Lock()
        self._watchers: set[_Watcher] = set()
        self._status: dict[str, dict[str, Any]] = {}
        self.compacted_revision = 0

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # A writer of another process holds the lock for one transaction: wait for it.
        self._db = await aiosqlite.connect(self.path, timeout=_BUSY_TIMEOUT)
        await self._db.execute("PRAGMA journal_mode=WAL")
        await self._db.execute("PRAGMA synchronous=FULL")
        await self._db.executescript(_SCHEMA)
        async with self._db.execute("PRAGMA table_info(events)") as cur:
            columns = {row[1] for row in await cur.fetchall()}
        if "at" not in columns:  # a store from before compaction: its changes count from now
            await self._db.execute("ALTER TABLE events ADD COLUMN at REAL")
            await self._db.execute("UPDATE events SET at = ?", (time.time(),))
        await self._db.commit()
        self._revision = await self._highest_revision()
        self.compacted_revision = int(await self.get_value(_COMPACTED) or 0)

    async def _highest_revision(self) -> int:
        """The highest revision ever issued: the log's newest, or AUTOINCREMENT's record of it
        when compaction dropped the newest rows (revisions are never issued twice)."""
        async with self._conn.execute(
            "SELECT MAX(COALESCE((SELECT MAX(revision) FROM events), 0),"
            " COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0))"
        ) as cur:
            row = await cur.fetchone()
        return int(row[0]) if row else 0

    @staticmethod
    async def _begin_immediate(db: aiosqlite.Connection) -> None:
        """Take SQLite's write lock. Its busy handler waits for another process's transaction,
        but SQLite also answers "locked" at once in some WAL states (another process resetting or
        checkpointing the log): those are retried here, for as long as the busy timeout."""
        deadline = time.monotonic() + _BUSY_TIMEOUT
        pause = 0.001
        while True:
            try:
                await db.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) or time.monotonic() > deadline:
                    raise
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.05)

    @contextlib.asynccontextmanager
    async def _writing(self) -> AsyncIterator[aiosqlite.Connection]:
        """Exclusive write access: this process's lock, and when ``shared`` SQLite's write lock
        too, taken before anything is read so that checks and writes see the others' commits."""
        async with self._lock:
            db = self._conn
            if self.shared:
                await self._begin_immediate(db)
                self._revision = max(self._revision, await self._highest_revision())
            try:
                yield db
            finally:
                if db.in_transaction:  # nothing committed (nothing to write, or an error)
                    await db.rollback()

    async def close(self) -> None:
        for watcher in list(self._watchers):
            with contextlib.suppress(asyncio.QueueFull):
                watcher.queue.put_nowait(None)
        if self._db is not None:
            await self._db.close()
            self._db = None

    @property
    def revision(self) -> int:
        return self._revision

    @property
    def _conn(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("store is not open")
        return self._db

    async def get(self, kind: str, namespace: str, name: str) -> StoredObject | None:
        async with self._conn.execute(
            "SELECT body, revision FROM objects WHERE kind=? AND namespace=? AND name=?",
            (kind, namespace, name),
        ) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        return StoredObject(kind, namespace, name, json.loads(row[0]), int(row[1]))

    async def list(self, kind: str | None = None, namespace: str | None = None) -> list[StoredObject]:
        query = "SELECT kind, namespace, name, body, revision FROM objects WHERE 1=1"
        args: list[str] = []
        if kind is not None:
            query += " AND kind=?"
            args.append(kind)
        if namespace is not None:
            query += " AND namespace=?"
            args.append(namespace)
        query += " ORDER BY kind, namespace, name"
        async with self._conn.execute(query, args) as cur:
            rows = await cur.fetchall()
        return [StoredObject(r[0], r[1], r[2], json.loads(r[3]), int(r[4])) for r in rows]

    async def put(
        self,
        kind: str,
        namespace: str,
        name: str,
        body: dict[str, Any],
        *,
        expected_revision: int | None = None,
        create_only: bool = False,
        ttl: float | None = None,  # not supported: the caller expires objects (supports_ttl False)
    ) -> StoredObject:
        async with self._writing():
            current = await self.get(kind, namespace, name)
            if current is not None and create_only:
                raise ConflictError(f"{kind} {namespace}/{name} already exists")
            if expected_revision is not None:
                actual = current.revision if current else 0
                if actual != expected_revision:
                    raise ConflictError(
                        f"{kind} {namespace}/{name} was modified: resourceVersion is {actual},"
                        f" not {expected_revision}"
                    )
            (stored,) = await self._transaction([(kind, namespace, name)], [Put(kind, namespace, name, body)])
            assert stored is not None  # a Put always stores
            return stored

    async def delete(
        self, kind: str, namespace: str, name: str, *, expected_revision: int | None = None
    ) -> StoredObject:
        async with self._writing():
            current = await self.get(kind, namespace, name)
            if current is None:
                raise NotFoundError(f"{kind} {namespace}/{name} not found")
            if expected_revision is not None and current.revision != expected_revision:
                raise ConflictError(
                    f"{kind} {namespace}/{name} was modified: resourceVersion is {current.revision},"
                    f" not {expected_revision}"
                )
            (deleted,) = await self._transaction([(kind, namespace, name)], [Delete(kind, namespace, name)])
            assert deleted is not None  # it existed: checked above, under the lock
            return deleted

    async def apply_batch(self, ops: Sequence[BatchOp]) -> BatchResults:
        """Every write in one transaction (one commit, one fsync); see Store.apply_batch."""
        if not ops:
            return []
        async with self._writing():
            return await self._transaction([op.key for op in ops], ops)

    async def _transaction(self, keys: Sequence[ObjectKey], ops: Sequence[BatchOp]) -> BatchResults:
        """Apply ``ops`` in one transaction, then tell the watchers. The caller is ``_writing``."""
        db = self._conn
        revision = self._revision
        events: list[WatchEvent] = []
        results: BatchResults = []
        seen: dict[ObjectKey, StoredObject | None] = {}
        try:
            currents = await self._current(keys)
            for op in ops:
                current = seen[op.key] if op.key in seen else currents.get(op.key)
                if isinstance(op, Delete):
                    current = op.deletes(current)
                    if current is None:
                        results.append(None)
                        continue
                    revision += 1
                    # The last state, at the revision of its deletion (as the watch reports it).
                    gone = StoredObject(op.kind, op.namespace, op.name, current.body, revision)
                    event = WatchEvent(EventType.DELETED, gone, revision)
                    seen[op.key] = None
                    results.append(gone)
                else:
                    revision += 1
                    body = with_revision(with_server_metadata(op.body, current, op.namespace), revision)
                    obj = StoredObject(op.kind, op.namespace, op.name, body, revision)
                    event = WatchEvent(EventType.MODIFIED if current else EventType.ADDED, obj, revision)
                    seen[op.key] = obj
                    results.append(obj)
                events.append(event)
            if events:
                await self._write_rows(events)
                await db.commit()
        except BaseException:
            await db.rollback()
            raise
        self._revision = revision
        for event in events:
            self._notify(event)
        return results

    async def _current(self, keys: Sequence[ObjectKey]) -> dict[ObjectKey, StoredObject]:
        """The current state of some objects, read in as few statements as SQLite allows."""
        out: dict[tuple[str, str, str], StoredObject] = {}
        unique: Sequence[ObjectKey] = tuple(dict.fromkeys(keys))
        for start in range(0, len(unique), 250):  # 3 parameters per key, under SQLite's 999
            chunk = unique[start : start + 250]
            where = " OR ".join(["(kind=? AND namespace=? AND name=?)"] * len(chunk))
            async with self._conn.execute(
                f"SELECT kind, namespace, name, body, revision FROM objects WHERE {where}",
                [part for key in chunk for part in key],
            ) as cur:
                for row in await cur.fetchall():
                    out[(row[0], row[1], row[2])] = StoredObject(
                        row[0], row[1], row[2], json.loads(row[3]), int(row[4])
                    )
        return out

    async def _write_rows(self, events: Sequence[WatchEvent]) -> None:
        """The log rows and object rows of some events (inside the caller's transaction).

        Revisions are assigned here rather than by AUTOINCREMENT so that a body can carry its own
        resourceVersion in one INSERT; open() starts from the highest revision ever issued."""
        db = self._conn
        now = time.time()
        rows = []
        for event in events:
            obj = event.object
            text = json.dumps(obj.body, sort_keys=True)
            rows.append((event.revision, event.type.value, obj.kind, obj.namespace, obj.name, text, now))
        await db.executemany(
            "INSERT INTO events (revision, type, kind, namespace, name, body, at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        if self.history_per_object is not None:
            # Keep each object's newest changes only (the index makes this a short range scan).
            await db.executemany(
                "DELETE FROM events WHERE kind=? AND namespace=? AND name=? AND revision <="
                " (SELECT revision FROM events WHERE kind=? AND namespace=? AND name=?"
                " ORDER BY revision DESC LIMIT 1 OFFSET ?)",
                list(
                    dict.fromkeys((r[2], r[3], r[4], r[2], r[3], r[4], self.history_per_object) for r in rows)
                ),
            )
        gone = [(r[2], r[3], r[4]) for e, r in zip(events, rows, strict=True) if e.type == EventType.DELETED]
        if gone:
            await db.executemany("DELETE FROM objects WHERE kind=? AND namespace=? AND name=?", gone)
        # The newest state of each object written (a batch may hold several writes of one).
        current: dict[ObjectKey, tuple[str, str, str, str, int]] = {}
        for event, row in zip(events, rows, strict=True):
            key = (row[2], row[3], row[4])
            if event.type == EventType.DELETED:
                current.pop(key, None)
            else:
                current[key] = (*key, row[5], event.revision)
        if current:
            await db.executemany(
                "INSERT INTO objects (kind, namespace, name, body, revision) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (kind, namespace, name) DO UPDATE SET body=excluded.body,"
                " revision=excluded.revision",
                list(current.values()),
            )

    def _notify(self, event: WatchEvent) -> None:
        for watcher in list(self._watchers):
            try:
                watcher.queue.put_nowait(event)
            except asyncio.QueueFull:
                # A watcher this far behind re-reads the log instead of holding memory.
                watcher.overflowed = True

    async def _events_after(self, revision: int, limit: int = 1000) -> WatchEvents:
        async with self._conn.execute(
            "SELECT revision, type, kind, namespace, name, body FROM events WHERE revision > ?"
            " ORDER BY revision LIMIT ?",
            (revision, limit),
        ) as cur:
            rows = await cur.fetchall()
        return [_event_from_row(r) for r in rows]

    async def watch(self, since_revision: int = 0) -> AsyncIterator[WatchEvent | Bookmark]:
        watcher = _Watcher()
        self._watchers.add(watcher)
        last = since_revision
        try:
            while True:
                await self._check_resumable(last)
                # Replay from the log until caught up, then switch to live events.
                while True:
                    batch = await self._events_after(last)
                    for event in batch:
                        last = event.revision
                        yield event
                    if len(batch) < 1000:
                        break
                yield Bookmark(max(last, self._revision))
                watcher.overflowed = False
                if self.shared:
                    async for event in self._follow_shared(watcher, last):
                        yield event
                    return
                while True:
                    live = await watcher.queue.get()
                    if live is None:
                        return
                    if watcher.overflowed:
                        watcher.queue = asyncio.Queue(maxsize=_WATCH_QUEUE_LIMIT)
                        break
                    if live.revision <= last:
                        continue
                    last = live.revision
                    yield live
        finally:
            self._watchers.discard(watcher)

    async def _check_resumable(self, last: int) -> None:
        """CompactedError when the log no longer holds every change after revision ``last``."""
        if self.shared:  # another process may have compacted since this one opened
            self.compacted_revision = int(await self.get_value(_COMPACTED) or 0)
        if 0 < last < self.compacted_revision:
            raise CompactedError(
                f"revision {last} is older than the history kept (compacted at"
                f" {self.compacted_revision}); list again"
            )

    async def _follow_shared(self, watcher: _Watcher, last: int) -> AsyncIterator[WatchEvent]:
        """Live events of a shared store, read from the log: other processes' commits are seen
        by polling it, this process's wake it at once. Reading rather than taking this process's
        events from the queue keeps the order of revisions across processes."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SHARED_POLL_INTERVAL):
                    if await watcher.queue.get() is None:
                        return
            while not watcher.queue.empty():
                if watcher.queue.get_nowait() is None:
                    return
            async with self._lock:  # not inside this process's own write transaction
                batch = await self._events_after(last)
            for event in batch:
                last = event.revision
                yield event
            self._revision = max(self._revision, last)

    async def refresh(self, kind: str, namespace: str, name: str) -> bool:
        return await self.get(kind, namespace, name) is not None

    async def publish_status(self, replica: str, document: dict[str, Any], ttl: float) -> None:
        if not self.shared:
            self._status[replica] = document  # one process: nothing to share
            return
        async with self._writing() as db:
            await db.execute(
                "INSERT INTO server_values (name, value, expires) VALUES (?, ?, ?) ON CONFLICT (name)"
                " DO UPDATE SET value = excluded.value, expires = excluded.expires",
                (_STATUS_PREFIX + replica, json.dumps(document), time.time() + ttl),
            )
            await db.commit()

    async def read_status(self) -> dict[str, dict[str, Any]]:
        if not self.shared:
            return dict(self._status)
        async with self._conn.execute(
            "SELECT name, value FROM server_values WHERE name >= ? AND name < ? AND expires >= ?",
            (_STATUS_PREFIX, _STATUS_PREFIX[:-1] + chr(ord(_STATUS_PREFIX[-1]) + 1), time.time()),
        ) as cur:
            rows = await cur.fetchall()
        return {str(name)[len(_STATUS_PREFIX) :]: json.loads(value) for name, value in rows}

    async def set_status(self, kind: str, namespace: str, name: str, status: dict[str, Any]) -> StoredObject:
        raise NotImplementedError("sqlite objects have no status subresource (status_subresource is False)")

    async def compact(self, keep_per_object: int, retention: float) -> int:
        async with self._writing() as db:
            try:
                cur = await db.execute(
                    "DELETE FROM events WHERE revision IN (SELECT revision FROM (SELECT revision,"
                    " ROW_NUMBER() OVER (PARTITION BY kind, namespace, name ORDER BY revision DESC)"
                    " AS newer FROM events) WHERE newer > ?)",
                    (keep_per_object,),
                )
                dropped = max(0, cur.rowcount)
                if retention > 0:
                    cutoff = time.time() - retention
                    # Objects' current states stay; what goes includes deletions (tombstones).
                    stale = "at < ? AND revision NOT IN (SELECT revision FROM objects)"
                    async with db.execute(
                        f"SELECT MAX(revision) FROM events WHERE type = 'DELETED' AND {stale}", (cutoff,)
                    ) as rows:
                        row = await rows.fetchone()
                    cur = await db.execute(f"DELETE FROM events WHERE {stale}", (cutoff,))
                    dropped += max(0, cur.rowcount)
                    if row is not None and row[0] is not None and int(row[0]) > self.compacted_revision:
                        self.compacted_revision = int(row[0])
                        await db.execute(
                            "INSERT INTO server_values (name, value) VALUES (?, ?) ON CONFLICT (name)"
                            " DO UPDATE SET value = excluded.value",
                            (_COMPACTED, str(self.compacted_revision)),
                        )
                await db.execute("DELETE FROM server_values WHERE expires < ?", (time.time(),))
                await db.commit()
            except BaseException:
                await db.rollback()
                raise
        if dropped:
            log.info("store history compacted: %d change(s) dropped", dropped)
        return dropped

    async def get_or_create_value(self, name: str, value: str, ttl: float | None = None) -> str:
        now = time.time()
        async with self._writing() as db:
            await db.execute("DELETE FROM server_values WHERE name = ? AND expires < ?", (name, now))
            await db.execute(
                "INSERT OR IGNORE INTO server_values (name, value, expires) VALUES (?, ?, ?)",
                (name, value, None if ttl is None else now + ttl),
            )
            await db.commit()
        stored = await self.get_value(name)
        return value if stored is None else stored

    async def get_value(self, name: str) -> str | None:
        async with self._conn.execute(
            "SELECT value FROM server_values WHERE name = ? AND (expires IS NULL OR expires >= ?)",
            (name, time.time()),
        ) as cur:
            row = await cur.fetchone()
        return None if row is None else str(row[0])

    async def history(self, kind: str, namespace: str, name: str) -> WatchEvents:
        async with self._conn.execute(
            "SELECT revision, type, kind, namespace, name, body FROM events"
            " WHERE kind=? AND namespace=? AND name=? ORDER BY revision",
            (kind, namespace, name),
        ) as cur:
            rows = await cur.fetchall()
        return [_event_from_row(r) for r in rows]


def _event_from_row(row: Any) -> WatchEvent:
    revision, event_type, kind, namespace, name, body = row
    obj = StoredObject(kind, namespace, name, json.loads(body), int(revision))
    return WatchEvent(EventType(event_type), obj, int(revision))
