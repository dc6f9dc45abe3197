"""Store on etcd (v3 API through aetcd): ``--store etcd://host1:port1,host2:port2``.

Layout under a prefix (default ``/opensergo``):

- ``<prefix>/o/<kind>/<namespace>/<name>``: the object's JSON body. ``resourceVersion`` is the
  key's etcd ``mod_revision``, so versions are cluster-wide, only increase, and agree between
  control-plane replicas.
- ``<prefix>/status/<replica>``: per-replica status documents (clients' ACK state), each under a
  lease so that a dead replica's entry disappears.
- ``<prefix>/v/<name>``: server values shared by the replicas (the session key, revoked
  sessions), created once with a compare-and-swap on the key's version.

History is etcd's: compact it with etcd's own retention (``--auto-compaction-mode=periodic
--auto-compaction-retention=720h``). A watch from revision 0 over a compacted history replays the
current objects instead; a later start revision that was compacted raises CompactedError.

Writes are compare-and-swap transactions on ``mod_revision``. Every call fails over to the next
endpoint when the current one is unreachable or has no leader, retrying until a deadline, so
writes continue after a leader election. Watches resume from the last delivered revision on
another endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from functools import partial
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aetcd
from aetcd import transactions as _txn

from opensergo.controlplane.store.base import (
    BatchOp,
    BatchResults,
    Bookmark,
    CompactedError,
    ConflictError,
    Delete,
    EventType,
    NotFoundError,
    Put,
    StoredObject,
    WatchEvent,
    WatchEvents,
    with_revision,
    with_server_metadata,
)

log = logging.getLogger(__name__)

MAX_TXN_OPS = 128  # etcd's default --max-txn-ops

T = TypeVar("T")

_RETRYABLE = (
    aetcd.ConnectionFailedError,
    aetcd.ConnectionTimeoutError,
    aetcd.InternalError,
    aetcd.ClientError,
    OSError,
)


def parse_endpoints(url: str) -> list[tuple[str, int]]:
    """``etcd://h1:2379,h2:2379`` (or without the scheme) -> [("h1", 2379), ("h2", 2379)]."""
    text = url.removeprefix("etcd://")
    endpoints = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        parsed = urlsplit("//" + item)
        if not parsed.hostname:
            raise ValueError(f"invalid etcd endpoint {item!r} in {url!r}")
        endpoints.append((parsed.hostname, parsed.port or 2379))
    if not endpoints:
        raise ValueError(f"no etcd endpoint in {url!r}")
    return endpoints


class EtcdStore:
    """The Store protocol on an etcd cluster."""

    supports_ttl = True
    shared = True
    status_subresource = False
    max_batch = MAX_TXN_OPS

    def __init__(
        self,
        endpoints: list[tuple[str, int]],
        *,
        prefix: str = "/opensergo",
        timeout: float = 5.0,
        retry_for: float = 20.0,
    ) -> None:
        self._endpoints = endpoints
        self._prefix = prefix.rstrip("/")
        self._timeout = timeout
        self._retry_for = retry_for
        self._index = 0
        self._client: aetcd.Client | None = None
        self._revision = 0
        self._closed = False
        self._leases: dict[bytes, int] = {}

    # --- connection and failover ---

    async def open(self) -> None:
        await self._call(self._read_revision)

    async def _read_revision(self, client: aetcd.Client) -> None:
        # A count-only range read answers with the cluster's current revision in its header.
        request = aetcd.rpc.RangeRequest(key=self._prefix.encode() + b"/", count_only=True)
        response = await client.kvstub.Range(request, timeout=self._timeout)
        self._seen(int(response.header.revision))

    async def close(self) -> None:
        self._closed = True
        if self._client is not None:
            await self._client.close()
            self._client = None

    @property
    def revision(self) -> int:
        return self._revision

    def _seen(self, revision: int) -> None:
        if revision > self._revision:
            self._revision = revision

    async def _connected(self) -> aetcd.Client:
        if self._client is None:
            host, port = self._endpoints[self._index % len(self._endpoints)]
            client = aetcd.Client(host=host, port=port, timeout=int(max(1, self._timeout)))
            await client.connect()
            self._client = client
        return self._client

    async def _fail_over(self, error: BaseException) -> None:
        host, port = self._endpoints[self._index % len(self._endpoints)]
        log.warning("etcd %s:%d failed (%s); trying the next endpoint", host, port, error)
        self._index += 1
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):  # the connection is already broken
                await client.close()

    async def _call(self, fn: Callable[[aetcd.Client], Awaitable[T]]) -> T:
        """Run ``fn`` against a healthy endpoint, failing over until ``retry_for`` elapses."""
        deadline = time.monotonic() + self._retry_for
        delay = 0.05
        while True:
            try:
                return await fn(await self._connected())
            except (ConflictError, NotFoundError):
                raise
            except _RETRYABLE as err:
                if self._closed or time.monotonic() > deadline:
                    raise
                await self._fail_over(err)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    # --- keys ---

    def _key(self, kind: str, namespace: str, name: str) -> bytes:
        return f"{self._prefix}/o/{kind}/{namespace}/{name}".encode()

    def _scan_prefix(self, kind: str | None, namespace: str | None) -> bytes:
        key = f"{self._prefix}/o/"
        if kind is not None:
            key += f"{kind}/"
            if namespace is not None:
                key += f"{namespace}/"
        return key.encode()

    def _decode(self, key: bytes, value: bytes, revision: int) -> StoredObject:
        rest = key.decode()[len(self._prefix) + 3 :]
        kind_ns, name = rest.rsplit("/", 1)
        kind, namespace = kind_ns.rsplit("/", 1)
        return StoredObject(kind, namespace, name, with_revision(json.loads(value), revision), revision)

    # --- reads ---

    async def get(self, kind: str, namespace: str, name: str) -> StoredObject | None:
        key = self._key(kind, namespace, name)

        async def read(client: aetcd.Client) -> StoredObject | None:
            result = await client.get(key)
            if result is None:
                return None
            self._seen(result.header.revision)
            return self._decode(key, result.value, result.mod_revision)

        return await self._call(read)

    async def list(self, kind: str | None = None, namespace: str | None = None) -> list[StoredObject]:
        prefix = self._scan_prefix(kind, namespace)

        async def read(client: aetcd.Client) -> list[StoredObject]:
            result = await client.get_prefix(prefix)
            if getattr(result, "header", None) is not None:
                self._seen(result.header.revision)
            return [self._decode(kv.key, kv.value, kv.mod_revision) for kv in result]

        objects = await self._call(read)
        if kind is None and namespace is not None:
            objects = [o for o in objects if o.namespace == namespace]
        return sorted(objects, key=lambda o: o.key)

    # --- writes ---

    async def put(
        self,
        kind: str,
        namespace: str,
        name: str,
        body: dict[str, Any],
        *,
        expected_revision: int | None = None,
        create_only: bool = False,
        ttl: float | None = None,
    ) -> StoredObject:
        key = self._key(kind, namespace, name)
        for _ in range(16):
            current = await self.get(kind, namespace, name)
            if current is not None and create_only:
                raise ConflictError(f"{kind} {namespace}/{name} already exists")
            actual = current.revision if current else 0
            if expected_revision is not None and actual != expected_revision:
                raise ConflictError(
                    f"{kind} {namespace}/{name} was modified: resourceVersion is {actual},"
                    f" not {expected_revision}"
                )
            stored = with_server_metadata(body, current, namespace)
            stored["metadata"].pop("resourceVersion", None)
            value = json.dumps(stored, sort_keys=True).encode()
            lease = await self._lease(ttl) if ttl else None
            revision = await self._swap(key, actual, value, lease)
            if revision is not None:
                if lease is not None:
                    self._leases[key] = lease.id
                return StoredObject(kind, namespace, name, with_revision(stored, revision), revision)
            if expected_revision is not None or create_only:
                raise ConflictError(f"{kind} {namespace}/{name} was modified concurrently")
        raise ConflictError(f"{kind} {namespace}/{name}: too much write contention")

    async def apply_batch(self, ops: Sequence[BatchOp]) -> BatchResults:
        """One read transaction for the current states, then one write transaction comparing
        every key's mod_revision (retried whole when another writer got in between). Leases are
        granted per object (each instance expires on its own), concurrently, before the write.
        Every object of the batch shares the transaction's revision. At most 128 operations:
        etcd's default --max-txn-ops."""
        if not ops:
            return []
        if len(ops) > MAX_TXN_OPS:
            raise ValueError(f"a batch holds at most {MAX_TXN_OPS} operations, not {len(ops)}")
        keys = [self._key(*op.key) for op in ops]
        if len(set(keys)) != len(keys):
            raise ValueError("a batch writes each object at most once")
        for _ in range(16):
            currents = await self._read_many(keys)
            compare: list[Any] = []
            success: list[Any] = []
            results: BatchResults = []
            ttls = {i: op.ttl for i, op in enumerate(ops) if isinstance(op, Put) and op.ttl}
            granted = await asyncio.gather(*(self._lease(ttl) for ttl in ttls.values()))
            leases = dict(zip(ttls, granted, strict=True))
            pending: list[tuple[Put | Delete, dict[str, Any] | StoredObject | None]] = []
            for i, (op, key, current) in enumerate(zip(ops, keys, currents, strict=True)):
                compare.append(_txn.Mod(key) == (current.revision if current else 0))
                if isinstance(op, Delete):
                    current = op.deletes(current)
                    if current is not None:
                        success.append(_txn.Delete(key))
                    pending.append((op, current))
                    continue
                stored = with_server_metadata(op.body, current, op.namespace)
                stored["metadata"].pop("resourceVersion", None)
                success.append(
                    _txn.Put(key, json.dumps(stored, sort_keys=True).encode(), lease=leases.get(i))
                )
                pending.append((op, stored))
            revision = await self._commit(compare, success)
            if revision is None:
                continue  # another writer changed one of the objects: read again
            for i, (op, state) in enumerate(pending):
                if isinstance(op, Delete):
                    results.append(state if isinstance(state, StoredObject) else None)
                    self._leases.pop(keys[i], None)
                    continue
                assert isinstance(state, dict)
                if i in leases:
                    self._leases[keys[i]] = leases[i].id
                results.append(StoredObject(*op.key, with_revision(state, revision), revision))
            return results
        raise ConflictError("batch: too much write contention")

    async def _read_many(self, keys: Sequence[bytes]) -> BatchResults:
        """The current state of several keys in one (read-only) transaction."""

        async def txn(client: aetcd.Client) -> BatchResults:
            _, responses = await client.transaction(
                compare=[], success=[_txn.Get(k) for k in keys], failure=[]
            )
            out: BatchResults = []
            for key, found in zip(keys, responses, strict=True):
                if not found:
                    out.append(None)
                    continue
                value, meta = found[0]
                self._seen(int(meta.header.revision))
                out.append(self._decode(key, value, int(meta.mod_revision)))
            return out

        return await self._call(txn)

    async def _commit(self, compare: Sequence[Any], success: Sequence[Any]) -> int | None:
        """Run a write transaction; its revision, None when a comparison failed."""
        if not success:
            return self._revision  # only deletions of objects that do not exist: nothing to write

        async def txn(client: aetcd.Client) -> int | None:
            ok, responses = await client.transaction(compare=compare, success=success, failure=[])
            if not ok:
                return None
            first = responses[0]
            which = first.WhichOneof("response")
            revision = int(getattr(first, which).header.revision)
            self._seen(revision)
            return revision

        return await self._call(txn)

    async def _lease(self, ttl: float) -> Any:
        return await self._call(lambda client: client.lease(max(1, round(ttl))))

    async def _swap(self, key: bytes, expected_mod: int, value: bytes, lease: Any) -> int | None:
        async def txn(client: aetcd.Client) -> int | None:
            ok, responses = await client.transaction(
                compare=[client.transactions.mod(key) == expected_mod],
                success=[client.transactions.put(key, value, lease=lease)],
                failure=[],
            )
            if not ok:
                return None
            revision = int(responses[0].response_put.header.revision)
            self._seen(revision)
            return revision

        return await self._call(txn)

    async def refresh(self, kind: str, namespace: str, name: str) -> bool:
        """Keep a TTL object alive; False when it is gone (its lease expired)."""
        key = self._key(kind, namespace, name)

        async def keep_alive(client: aetcd.Client) -> bool:
            lease_id = self._leases.get(key)
            if lease_id is None:
                result = await client.get(key)
                if result is None or not result.lease:
                    return False
                lease_id = self._leases[key] = result.lease
            response = await client.refresh_lease(lease_id)
            return bool(getattr(response, "TTL", 1) > 0)

        return await self._call(keep_alive)

    async def delete(
        self, kind: str, namespace: str, name: str, *, expected_revision: int | None = None
    ) -> StoredObject:
        key = self._key(kind, namespace, name)
        for _ in range(16):
            current = await self.get(kind, namespace, name)
            if current is None:
                raise NotFoundError(f"{kind} {namespace}/{name} not found")
            if expected_revision is not None and current.revision != expected_revision:
                raise ConflictError(
                    f"{kind} {namespace}/{name} was modified: resourceVersion is {current.revision},"
                    f" not {expected_revision}"
                )

            async def txn(client: aetcd.Client, rev: int = current.revision) -> int | None:
                ok, responses = await client.transaction(
                    compare=[client.transactions.mod(key) == rev],
                    success=[client.transactions.delete(key)],
                    failure=[],
                )
                if not ok:
                    return None
                revision = int(responses[0].response_delete_range.header.revision)
                self._seen(revision)
                return revision

            if await self._call(txn) is not None:
                self._leases.pop(key, None)
                return current
            if expected_revision is not None:
                raise ConflictError(f"{kind} {namespace}/{name} was modified concurrently")
        raise ConflictError(f"{kind} {namespace}/{name}: too much write contention")

    # --- watch and history ---

    async def watch(self, since_revision: int = 0) -> AsyncIterator[WatchEvent | Bookmark]:
        # Watch the whole prefix: besides objects it carries the sync marker that this watch
        # writes once it is established; its event proves that the replay is complete.
        objects = f"{self._prefix}/o/".encode()
        cursor = _Cursor(since_revision)
        delay = 0.05
        while not self._closed:
            try:
                client = await self._connected()
                watch = await client.watch_prefix(
                    self._prefix.encode() + b"/", start_revision=cursor.resume(), prev_kv=True
                )
                marker = f"{self._prefix}/sync/{uuid.uuid4().hex}".encode()
                await self._call(partial(_put, key=marker, value=b""))
                try:
                    async for event in watch:
                        delay = 0.05
                        key = event.kv.key
                        if key == marker:
                            if event.kind != "DELETE":
                                self._seen(int(event.kv.mod_revision))
                                yield Bookmark(int(event.kv.mod_revision))
                                await self._call(partial(_delete, key=marker))
                            continue
                        if not key.startswith(objects):
                            continue
                        converted = self._event(event)
                        if cursor.advance(converted.revision):
                            self._seen(converted.revision)
                            yield converted
                finally:
                    with contextlib.suppress(Exception):  # the stream may already be gone
                        await watch.cancel()
            except aetcd.RevisionCompactedError as err:
                if cursor.last != 0:
                    raise CompactedError(
                        f"revision {cursor.last} is older than etcd's history ({err.compacted_revision})"
                    ) from None
                # A replay from the start: the current objects are the state it would reach.
                objects_now, revision = await self._list_at_revision()
                for obj in sorted(objects_now, key=lambda o: o.revision):
                    yield WatchEvent(EventType.ADDED, obj, obj.revision)
                cursor = _Cursor(revision)
                self._seen(revision)
            except _RETRYABLE as err:
                if self._closed:
                    return
                await self._fail_over(err)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    def _event(self, event: Any) -> WatchEvent:
        kv = event.kv
        revision = int(kv.mod_revision)
        if event.kind == "DELETE":
            if event.prev_kv is None:
                obj = self._decode(kv.key, b"{}", revision)
            else:
                obj = self._decode(kv.key, event.prev_kv.value, int(event.prev_kv.mod_revision))
            return WatchEvent(EventType.DELETED, obj, revision)
        event_type = EventType.ADDED if int(kv.version) == 1 else EventType.MODIFIED
        return WatchEvent(event_type, self._decode(kv.key, kv.value, revision), revision)

    async def _list_at_revision(self) -> tuple[tuple[StoredObject, ...], int]:
        """Every object and the revision of that view."""
        prefix = f"{self._prefix}/o/".encode()
        result = await self._call(lambda client: client.get_prefix(prefix))
        header = getattr(result, "header", None)
        objects = tuple(self._decode(kv.key, kv.value, kv.mod_revision) for kv in result)
        revision = (
            int(header.revision) if header is not None else max((o.revision for o in objects), default=0)
        )
        return objects, revision

    async def history(self, kind: str, namespace: str, name: str) -> WatchEvents:
        """Every change of one object still in etcd's history (until compaction), oldest first."""
        key = self._key(kind, namespace, name)
        target = self.revision
        start = 1
        for _ in range(3):
            try:
                return await self._history_from(key, start, target)
            except aetcd.RevisionCompactedError as err:
                start = int(err.compacted_revision)  # what is older is gone: start there
        return []

    async def _history_from(self, key: bytes, start: int, target: int) -> WatchEvents:
        events: WatchEvents = []
        client = await self._connected()
        watch = await client.watch(key, start_revision=start, prev_kv=True)
        iterator = watch.__aiter__()
        try:
            while True:
                try:
                    event = await asyncio.wait_for(iterator.__anext__(), 0.5)
                except (TimeoutError, StopAsyncIteration):
                    break
                converted = self._event(event)
                events.append(converted)
                if converted.revision >= target:
                    break
        finally:
            with contextlib.suppress(Exception):
                await watch.cancel()
        return events

    async def compact(self, keep_per_object: int, retention: float) -> int:
        return 0  # etcd compacts its own history (see the module docstring)

    def _value_key(self, name: str) -> bytes:
        return f"{self._prefix}/v/{name}".encode()

    async def get_or_create_value(self, name: str, value: str, ttl: float | None = None) -> str:
        key = self._value_key(name)
        lease = await self._lease(ttl) if ttl else None

        async def txn(client: aetcd.Client) -> str:
            ok, responses = await client.transaction(
                compare=[client.transactions.version(key) == 0],
                success=[client.transactions.put(key, value.encode(), lease=lease)],
                failure=[client.transactions.get(key)],
            )
            if ok or not responses or not responses[0]:
                return value
            stored: bytes = responses[0][0][0]
            return stored.decode()

        return await self._call(txn)

    async def get_value(self, name: str) -> str | None:
        key = self._value_key(name)
        result = await self._call(lambda client: client.get(key))
        return None if result is None else bytes(result.value).decode()

    # --- replica status documents ---

    async def publish_status(self, replica: str, document: dict[str, Any], ttl: float) -> None:
        key = f"{self._prefix}/status/{replica}".encode()
        lease = await self._lease(ttl)
        value = json.dumps(document).encode()
        await self._call(lambda client: client.put(key, value, lease=lease))

    async def read_status(self) -> dict[str, dict[str, Any]]:
        prefix = f"{self._prefix}/status/".encode()
        result = await self._call(lambda client: client.get_prefix(prefix))
        return {kv.key.decode()[len(prefix) :]: json.loads(kv.value) for kv in result}

    async def set_status(self, kind: str, namespace: str, name: str, status: dict[str, Any]) -> StoredObject:
        raise NotImplementedError("etcd objects have no status subresource (status_subresource is False)")


class _Cursor:
    """Where a watch is: a batch writes several objects at one revision, so besides the last
    revision delivered it counts the events of that revision delivered, and a resumed watch
    replays that revision and skips them."""

    def __init__(self, revision: int) -> None:
        self.last = revision
        self._delivered = 0  # events of revision ``last`` delivered
        self._skip = 0

    def resume(self) -> int:
        """The start revision of a (re)opened watch."""
        self._skip = self._delivered
        return self.last if self._delivered else self.last + 1

    def advance(self, revision: int) -> bool:
        """Whether an event of ``revision`` is new (and so is delivered)."""
        if revision < self.last or (revision == self.last and not self._delivered):
            return False
        if revision == self.last and self._skip > 0:
            self._skip -= 1
            return False
        if revision > self.last:
            self.last, self._delivered, self._skip = revision, 0, 0
        self._delivered += 1
        return True


async def _put(client: aetcd.Client, *, key: bytes, value: bytes) -> Any:
    return await client.put(key, value)


async def _delete(client: aetcd.Client, *, key: bytes) -> Any:
    return await client.delete(key)
