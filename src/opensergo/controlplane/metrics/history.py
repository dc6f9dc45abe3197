"""Downsampled metrics history on disk: one row per (namespace, app, resource, period).

Every ``resolution`` seconds (default 60) the last complete period of every active series is
summed and written to ``<data-dir>/metrics-history.db`` (SQLite, stdlib ``sqlite3`` in a worker
thread); rows older than ``retention`` (default 7 days) are deleted. History is per replica: each
replica keeps what its own data planes exported to it.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from pathlib import Path
from typing import Any

from opensergo.controlplane.metrics.store import MetricStore

log = logging.getLogger(__name__)

# A period is summed this long after it ends, so exports covering its last second have arrived.
GRACE_S = 2.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS history (
    namespace TEXT NOT NULL,
    app TEXT NOT NULL,
    resource TEXT NOT NULL,
    ts INTEGER NOT NULL,
    seconds INTEGER NOT NULL,
    passed REAL NOT NULL,
    blocked REAL NOT NULL,
    errors REAL NOT NULL,
    completed REAL NOT NULL,
    rt_sum REAL NOT NULL,
    p99_rt REAL,
    concurrency_max REAL NOT NULL,
    breaker_open_max REAL NOT NULL,
    PRIMARY KEY (namespace, app, resource, ts)
);
CREATE INDEX IF NOT EXISTS history_by_ts ON history (ts);
"""


class MetricsHistory:
    """Writes and reads the downsampled history."""

    def __init__(self, path: Path | None, resolution: int = 60, retention: int = 7 * 86400) -> None:
        if resolution < 1:
            raise ValueError("history resolution must be at least 1 second")
        self.path = path
        self.resolution = int(resolution)
        self.retention = int(retention)
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._last_flush = 0

    @property
    def enabled(self) -> bool:
        return self.path is not None and self.retention > 0

    def open(self) -> None:
        if not self.enabled or self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.executescript(_SCHEMA)
        self._conn.commit()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def rows_for(self, store: MetricStore, period_end: int) -> list[tuple[Any, ...]]:
        """The rows for the period [period_end - resolution, period_end)."""
        start = period_end - self.resolution
        rows = []
        for series in store.iter_series():
            t = series.totals(start, period_end)
            if not t["seen"]:
                continue
            ns, app, resource = series.key
            rows.append(
                (
                    ns, app, resource, start, self.resolution, t["passed"], t["blocked"], t["errors"],
                    t["completed"], t["rtSum"], t["p99Rt"], t["concurrencyMax"], t["breakerOpenMax"],
                )
            )  # fmt: skip
        return rows

    def write(self, rows: list[tuple[Any, ...]], now: float) -> None:
        with self._lock:
            if self._conn is None:
                return
            self._conn.executemany(
                "INSERT OR REPLACE INTO history VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows
            )
            self._conn.execute("DELETE FROM history WHERE ts < ?", (int(now) - self.retention,))
            self._conn.commit()

    def query(
        self, namespace: str, app: str, resource: str | None, start: int, end: int
    ) -> list[dict[str, Any]]:
        with self._lock:
            if self._conn is None:
                return []
            sql = (
                "SELECT resource, ts, seconds, passed, blocked, errors, completed, rt_sum, p99_rt,"
                " concurrency_max, breaker_open_max FROM history"
                " WHERE namespace=? AND app=? AND ts >= ? AND ts < ?"
            )
            args: list[Any] = [namespace, app, start, end]
            if resource is not None:
                sql += " AND resource=?"
                args.append(resource)
            rows = self._conn.execute(sql + " ORDER BY resource, ts", args).fetchall()
        out = []
        for r in rows:
            seconds = max(1, r[2])
            out.append(
                {
                    "resource": r[0],
                    "t": r[1],
                    "seconds": r[2],
                    "passQps": round(r[3] / seconds, 3),
                    "blockQps": round(r[4] / seconds, 3),
                    "errorQps": round(r[5] / seconds, 3),
                    "avgRt": round(r[7] / r[6], 3) if r[6] > 0 else None,
                    "p99Rt": r[8],
                    "concurrencyMax": r[9],
                    "breakerOpenMax": r[10],
                }
            )
        return out

    def due_rows(self, store: MetricStore, now: float) -> list[tuple[Any, ...]]:
        """Rows of every period that ended at least GRACE_S ago and was not written yet."""
        res = self.resolution
        end = int(now - GRACE_S) // res * res
        if self._last_flush == 0:
            self._last_flush = end - res  # the first run writes the period that just ended
        first = max(self._last_flush + res, end - store.retention // res * res)
        rows: list[tuple[Any, ...]] = []
        for period_end in range(first, end + 1, res):
            rows += self.rows_for(store, period_end)
        self._last_flush = max(self._last_flush, end)
        return rows

    async def run(self, store: MetricStore) -> None:
        """Write each finished period; forget silent series (runs until cancelled)."""
        loop = asyncio.get_running_loop()
        self._last_flush = int(store.now()) // self.resolution * self.resolution - self.resolution
        while True:
            now = store.now()
            next_end = (int(now - GRACE_S) // self.resolution + 1) * self.resolution
            await asyncio.sleep(max(0.05, next_end + GRACE_S - now))
            try:
                store.expire()
                if self.enabled:
                    # Written even when empty: the write also prunes rows past the retention,
                    # which must happen while every app is quiet too.
                    rows = self.due_rows(store, store.now())
                    await loop.run_in_executor(None, self.write, rows, store.now())
            except Exception:
                log.exception("writing metrics history failed")
