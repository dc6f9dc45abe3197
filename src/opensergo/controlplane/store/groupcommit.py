"""Group commit: many concurrent writers, one store transaction per short window.

A burst of registrations would otherwise be one transaction (one fsync on SQLite, one Raft round
on etcd) per instance. Writers queue their Put or Delete and wait; one flusher task takes what has
queued, waits a few milliseconds for more (up to a bounded batch), and applies the batch with
:meth:`Store.apply_batch`. Each writer is answered only once its batch is durable; a failed batch
fails exactly its own writers, and the next batch is tried afresh.

Writes to one object keep their order: an object already in the batch being gathered waits for
the next batch (a store batch writes each object at most once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

from opensergo.controlplane.store.base import BatchOp, Delete, NotFoundError, Put, Store, StoredObject

log = logging.getLogger(__name__)

DEFAULT_WINDOW = 0.002  # seconds a batch waits for company after its first write


class GroupCommit:
    """Coalesces writes into batches; see the module docstring."""

    def __init__(self, store: Store, *, window: float = DEFAULT_WINDOW, max_batch: int | None = None) -> None:
        """``max_batch``: at most the store's own bound (etcd: 128 operations per transaction)."""
        self._store = store
        self.window = window
        self.max_batch = min(max_batch or store.max_batch, store.max_batch)
        self._queue: deque[tuple[BatchOp, asyncio.Future[StoredObject | None]]] = deque()
        self._flusher: asyncio.Task[None] | None = None
        self._arrived = asyncio.Event()
        self.batches = 0  # batches committed (tests and metrics)
        self.writes = 0

    async def put(self, op: Put) -> StoredObject:
        stored = await self.submit(op)
        assert stored is not None  # a Put always stores
        return stored

    async def delete(self, op: Delete) -> StoredObject:
        """The last state; NotFoundError when there was nothing to delete."""
        gone = await self.submit(op)
        if gone is None:
            raise NotFoundError(f"{op.kind} {op.namespace}/{op.name} not found")
        return gone

    def submit(self, op: BatchOp) -> asyncio.Future[StoredObject | None]:
        """Queue a write now (its place in the order is fixed on return); await the result."""
        future: asyncio.Future[StoredObject | None] = asyncio.get_running_loop().create_future()
        self._queue.append((op, future))
        if len(self._queue) >= self.max_batch:
            self._arrived.set()
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.get_running_loop().create_task(self._flush_all())
        return future

    async def _flush_all(self) -> None:
        while self._queue:
            if len(self._queue) < self.max_batch and self.window > 0:
                self._arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), self.window)
            await self._flush(self._take())

    def _take(self) -> list[tuple[BatchOp, asyncio.Future[StoredObject | None]]]:
        batch: list[tuple[BatchOp, asyncio.Future[StoredObject | None]]] = []
        keys = set()
        while self._queue and len(batch) < self.max_batch:
            op, future = self._queue[0]
            if op.key in keys:
                break  # the same object again: the next batch, so its writes stay in order
            self._queue.popleft()
            if future.cancelled():
                continue  # its writer gave up before it was sent: never written
            keys.add(op.key)
            batch.append((op, future))
        return batch

    async def _flush(self, batch: list[tuple[BatchOp, asyncio.Future[StoredObject | None]]]) -> None:
        if not batch:
            return
        try:
            results = await self._store.apply_batch([op for op, _ in batch])
        except Exception as err:
            log.warning("a batch of %d write(s) failed: %s", len(batch), err)
            for _, future in batch:
                if not future.done():
                    future.set_exception(err)
            return
        self.batches += 1
        self.writes += len(batch)
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)
