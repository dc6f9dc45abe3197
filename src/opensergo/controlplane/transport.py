"""OpenSergoUniversalTransportService: SubscribeConfig streams, pushes, ACK/NACK bookkeeping.

One stream per data plane, authenticated when it opens (grpcauth's handler wrapper); each target is
authorized on its own: a target in a namespace where the caller is not a data plane (role agent or
admin) is refused with a NACK reply of code 4003 (PERMISSION_DENIED) and nothing is pushed for it,
while the stream and its other subscriptions go on (one stream multiplexes many targets, and the
official SDKs neither reconnect nor resubscribe selectively). Each stream has one writer task fed
by a queue, so pushes and replies never interleave (upstream writes from two goroutines at once).
Pending pushes are coalesced per group: a slow client gets the newest snapshot, not every
intermediate one.

A change push is serialized once per (snapshot, encoding), response_id included, and the same
bytes object is written to every subscribed stream: its response_id names the push, not the
stream, and the control plane maps it back to (group, version) when an ACK names it. A fan-out
to 10,000 streams therefore builds no message and copies no payload per stream. An initial push
answers a request_id of the client's own: the shared frame plus that field (protobuf lets a
field be appended to an encoded message). A group whose objects cannot be encoded
gets a NACK (code 4000, naming the object) instead of a push; the stream's other groups go on.

Bounds (:class:`~opensergo.controlplane.limits.Limits`): subscriptions per stream (beyond: a
NACK 4002), open streams per peer identity (beyond: RESOURCE_EXHAUSTED), NACK messages stored and
logged cut to a length, and the number of closed streams kept. The peer identity is the peer's
host by default; with auth on the control plane passes grpcauth's ``peer_identity``, the
authenticated caller.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from opensergo.common.kube_names import InvalidName, check_app, check_label, check_namespace
from opensergo.common.protocol import (
    ACK,
    CODE_CHANGE_PUSH,
    CODE_PERMISSION_DENIED,
    CODE_REQUEST_INVALID,
    CODE_SUCCESS,
    CODE_UNKNOWN_ERROR,
    CODE_VERSION_OUTDATED,
    ENCODING_LABEL,
    NACK,
    Encoding,
    SubscriptionKey,
)
from opensergo.controlplane.api.auth import ANONYMOUS, Principal
from opensergo.controlplane.grpcauth import OPEN, Action, GrpcAuth
from opensergo.controlplane.limits import Limits
from opensergo.controlplane.reclaim import MemoryReclaimer
from opensergo.controlplane.snapshots import EncodeError, Snapshot, SnapshotCache
from opensergo.controlplane.undecodable import checks_undecodable, refused
from opensergo.proto.transport.v1 import protocol_pb2 as pb
from opensergo.proto.transport.v1 import protocol_pb2_grpc as pb_grpc
from opensergo.spec import kinds

log = logging.getLogger(__name__)

_INFLIGHT_LIMIT = 1024  # initial pushes per stream whose answers can be matched
_PUSHES_KEPT = 65_536  # change pushes (one per snapshot and encoding) whose ACKs can be matched
_OUTBOX_LIMIT = 4096  # queued items per stream; pushes are at most one per subscribed group
_NAME_MAX = 253  # namespace and app names (Kubernetes names are at most 253 characters)


@dataclass(slots=True)
class SubscriptionState:
    """What one client has been sent for one group, and what it answered."""

    key: SubscriptionKey
    encoding: Encoding
    pushed_version: int | None = None
    pushed_at: float | None = None
    acked_version: int | None = None
    acked_at: float | None = None
    last_response: str = "pending"  # pending | acked | nacked | outdated | rejected | failed
    last_code: int | None = None
    last_message: str = ""
    # The last ten NACKs; replaced on each one, never appended to (an empty tuple until one).
    nacks: Sequence[dict[str, Any]] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "namespace": self.key.namespace,
            "app": self.key.app,
            "kind": self.key.kind,
            "encoding": self.encoding.value,
            "pushedVersion": self.pushed_version,
            "pushedAt": self.pushed_at,
            "ackedVersion": self.acked_version,
            "ackedAt": self.acked_at,
            "state": self.last_response,
            "code": self.last_code,
            "message": self.last_message,
            "nacks": list(self.nacks),
        }


Render = Callable[["ClientStream", SubscriptionKey, "str | None"], "bytes | None"]
_Push = tuple[SubscriptionKey, int]  # the group and version a push carried
_EOF: object = grpc.aio.EOF  # type: ignore[attr-defined]  # missing from grpc-stubs


class _Marker:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


_SCHEDULED = _Marker("scheduled")  # the writer is due to run (loop.call_soon)
_STOPPED = _Marker("stopped")  # the call is over: nothing is written any more


class ClientStream:
    """One SubscribeConfig call.

    Its handler coroutine reads requests. What is queued is written one message at a time, in
    order, so pushes and replies never interleave, by stepping grpc.aio's ``write`` coroutine
    by hand: the writer starts it, and the future it waits on resumes it (what an asyncio task
    does, without a task). A stream with nothing queued holds no writer state: no task, frame,
    future nor queue. A task per stream sleeping between pushes cost about 1.1 KB of the 29 KB
    per stream, and a task per push cost more CPU than the rest of the push (its creation, its
    registration in asyncio's weak set of tasks, and its garbage).

    What most streams never use is created on first use: the queue (by each burst of writes),
    the map of answered initial pushes.
    """

    __slots__ = (
        "_context",
        "_inflight",
        "_next_id",
        "_outbox",
        "_pending",
        "_render",
        "_waiting",
        "_writing",
        "connected_at",
        "disconnected_at",
        "id",
        "identifier",
        "owner",
        "peer",
        "principal",
        "subscriptions",
    )

    def __init__(self, peer: str, context: Any, render: Render, owner: str = "") -> None:
        self.id = uuid.uuid4().hex[:12]
        self.peer = peer
        self.owner = owner  # the peer identity its streams are counted against
        self.identifier = ""
        self.principal: Principal = ANONYMOUS
        self.connected_at = time.time()
        self.disconnected_at: float | None = None
        self.subscriptions: dict[SubscriptionKey, SubscriptionState] = {}
        self._context = context
        self._render = render
        self._outbox: deque[SubscriptionKey | bytes] | None = None  # while something is queued
        self._pending: dict[SubscriptionKey, str | None] | None = None  # queued pushes' request ids
        # None (idle), _SCHEDULED, the write coroutine in progress, or _STOPPED.
        self._writing: Any = None
        self._waiting: asyncio.Future[Any] | None = None  # what the write in progress waits on
        # Answered initial pushes, oldest first: none, one (response_id, key, version) (most
        # streams), or a dict of response_id -> (key, version).
        self._inflight: tuple[str, SubscriptionKey, int] | dict[str, _Push] | None = None
        self._next_id = 0

    def schedule_push(self, key: SubscriptionKey, request_id: str | None) -> None:
        """Queue a push of the newest snapshot; ``request_id`` marks the initial push."""
        if self._writing is _STOPPED:
            return  # nothing can be written any more
        pending = self._pending
        if pending is None:
            pending = self._pending = {}
        elif key in pending:
            if request_id is not None:
                pending[key] = request_id
            return
        pending[key] = request_id
        self._queue(key)

    def reply(self, response: pb.SubscribeResponse) -> None:
        if self._writing is _STOPPED:
            return
        if self._outbox is not None and len(self._outbox) >= _OUTBOX_LIMIT:
            # A client that sends requests but does not read the answers: drop the answer
            # (pushes are coalesced per group and never dropped).
            log.debug("stream %s: outbox full, reply dropped", self.id)
            return
        self._queue(response.SerializeToString())

    def _queue(self, item: SubscriptionKey | bytes) -> None:
        if self._outbox is None:
            self._outbox = deque()
        self._outbox.append(item)
        if self._writing is None:
            self._writing = _SCHEDULED
            asyncio.get_running_loop().call_soon(self._write)

    def _write(self, _done: object = None) -> None:
        """Write what is queued, one message at a time: start the write of the next message,
        or resume the one in progress when the future it waits on is done (it then reads the
        future's result or exception itself)."""
        write = self._writing
        if write is _STOPPED:
            return
        self._waiting = None
        if write is _SCHEDULED:
            write = None
        while True:
            if write is None:
                data = self._next()
                if data is None:
                    self._writing = None
                    return
                write = self._context.write(data)
            try:
                waited = write.send(None)
            except StopIteration:
                write = None  # written
                continue
            except (Exception, asyncio.CancelledError) as err:
                # The call is over: nothing can be written any more (the reader ends the stream).
                log.debug("stream %s: write failed: %s", self.id, err)
                self._stop()
                return
            self._writing = write
            if waited is None:  # a bare yield: run again on the next loop iteration
                asyncio.get_running_loop().call_soon(self._write)
                return
            waited._asyncio_future_blocking = False
            self._waiting = waited
            waited.add_done_callback(self._write)
            return

    def _next(self) -> bytes | None:
        """The next message to write; None when nothing is queued (the queue is then dropped)."""
        outbox = self._outbox
        while outbox:
            item = outbox.popleft()
            if not isinstance(item, SubscriptionKey):
                return item
            pending = self._pending
            request_id = pending.pop(item, None) if pending is not None else None
            try:
                data = self._render(self, item, request_id)
            except Exception:
                # One group's failure must not end the writer of every other group.
                log.exception("stream %s: cannot render a push of %s", self.id, item)
                continue
            if data is not None:  # None: unsubscribed meanwhile
                return data
        # Every queued push is in the queue: nothing is pending either.
        self._outbox = self._pending = None
        return None

    def _stop(self) -> None:
        write, waiting = self._writing, self._waiting
        self._writing = _STOPPED
        self._waiting = None
        if waiting is not None:
            waiting.cancel()  # as a cancelled task would: the batch completes into nothing
        if write is not None and write is not _SCHEDULED and write is not _STOPPED:
            write.close()
        self._outbox = self._pending = None

    async def flush(self) -> None:
        """Wait until everything queued so far has been written (or the call is over)."""
        while self._writing is not None and self._writing is not _STOPPED:
            await asyncio.sleep(0.005)

    def close(self) -> None:
        self._stop()
        # A closed stream is kept for the dashboard a while: keep its state, not the gRPC call.
        self._context = None
        self._inflight = None

    def next_response_id(self) -> str:
        self._next_id += 1
        return f"{self.id}-{self._next_id}"

    def remember(self, response_id: str, key: SubscriptionKey, version: int) -> None:
        inflight = self._inflight
        if inflight is None or (isinstance(inflight, tuple) and inflight[0] == response_id):
            self._inflight = (response_id, key, version)
            return
        if isinstance(inflight, tuple):
            first_id, first_key, first_version = inflight
            inflight = self._inflight = {first_id: (first_key, first_version)}
        inflight[response_id] = (key, version)
        if len(inflight) > _INFLIGHT_LIMIT:
            del inflight[next(iter(inflight))]

    def lookup(self, response_id: str) -> tuple[SubscriptionKey, int] | None:
        """The push an answer names (a client may answer one push more than once)."""
        inflight = self._inflight
        if isinstance(inflight, tuple):
            return (inflight[1], inflight[2]) if inflight[0] == response_id else None
        return inflight.get(response_id) if inflight is not None else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "identifier": self.identifier,
            "peer": self.peer,
            "owner": self.owner,
            "connected": self.disconnected_at is None,
            "connectedAt": self.connected_at,
            "disconnectedAt": self.disconnected_at,
            "subscriptions": [s.to_dict() for _, s in sorted(self.subscriptions.items())],
        }


AnswerListener = Callable[["ClientStream", SubscriptionState, int], None]


def peer_host(context: Any) -> str:
    """The host part of a gRPC peer (``ipv4:10.0.0.7:51234`` -> ``10.0.0.7``)."""
    peer = str(context.peer() or "")
    scheme, _, rest = peer.partition(":")
    if scheme in ("ipv4", "ipv6"):
        host, _, _ = rest.rpartition(":")
        return host.strip("[]") or rest
    return peer


PeerIdentity = Callable[[Any], str]


class TransportService(pb_grpc.OpenSergoUniversalTransportServiceServicer):
    """Serves SubscribeConfig from a SnapshotCache."""

    def __init__(
        self,
        snapshots: SnapshotCache,
        identity: str,
        limits: Limits | None = None,
        peer_identity: PeerIdentity = peer_host,
        access: GrpcAuth = OPEN,
    ) -> None:
        self._snapshots = snapshots
        self.identity = identity
        self._access = access
        self._control_plane = pb.ControlPlaneDesc(identifier=identity)
        self.limits = limits or Limits()
        self._peer_identity = peer_identity
        self._streams: dict[str, ClientStream] = {}
        self._closed: OrderedDict[str, ClientStream] = OrderedDict()
        self._index: dict[SubscriptionKey, set[ClientStream]] = {}
        # One key object per subscribed group (the keys of _index), shared by the subscriptions of
        # every stream: a key built from a request holds three strings of its own.
        self._keys: dict[SubscriptionKey, SubscriptionKey] = {}
        # Change pushes by response_id (shared by every stream they went to): (group, version).
        self._pushes: OrderedDict[str, tuple[SubscriptionKey, int]] = OrderedDict()
        self._push_ids = itertools.count(1)
        self._push_prefix = f"{uuid.uuid4().hex[:8]}-"
        self._open_per_owner: dict[str, int] = {}
        self.refused_streams = 0
        self.refused_subscriptions = 0
        # Open streams per client identifier (a scan per closed stream is quadratic at 10,000).
        self._open_per_identifier: dict[str, int] = {}
        self._disconnect_listeners: list[Callable[[str], Coroutine[Any, Any, None]]] = []
        self._answer_listeners: list[AnswerListener] = []
        self._background: set[asyncio.Task[None]] = set()
        self.reclaimer = MemoryReclaimer()  # shared with the registry (app.py)
        self._render_push: Render = self._render  # one bound method for every stream
        snapshots.add_listener(self._on_snapshot)

    def add_answer_listener(self, listener: AnswerListener) -> None:
        """Called with (stream, subscription, version) after each ACK or NACK is recorded."""
        self._answer_listeners.append(listener)

    def add_disconnect_listener(self, listener: Callable[[str], Coroutine[Any, Any, None]]) -> None:
        """Called with a client identifier when its last open stream ends."""
        self._disconnect_listeners.append(listener)

    # --- streams served by other services (xDS), listed and counted like ours ---

    def attach(self, stream: ClientStream) -> None:
        self._streams[stream.id] = stream

    def detach(self, stream: ClientStream) -> None:
        self._streams.pop(stream.id, None)
        stream.disconnected_at = time.time()
        if self.limits.closed_streams_kept > 0:
            self._closed[stream.id] = stream
        while len(self._closed) > self.limits.closed_streams_kept:
            self._closed.popitem(last=False)

    def notify_answer(self, stream: ClientStream, state: SubscriptionState, version: int) -> None:
        for listener in self._answer_listeners:
            listener(stream, state, version)

    # --- queries (REST, dashboard, tests) ---

    def clients(self, include_disconnected: bool = True) -> list[ClientStream]:
        streams = list(self._streams.values())
        if include_disconnected:
            streams += list(self._closed.values())
        return streams

    @property
    def connected_count(self) -> int:
        return len(self._streams)

    # --- fan-out ---

    def _on_snapshot(self, snapshot: Snapshot) -> None:
        for stream in self._index.get(snapshot.key, ()):
            stream.schedule_push(snapshot.key, None)

    # --- the rpc ---

    @checks_undecodable
    async def SubscribeConfig(
        self,
        request_iterator: AsyncIterator[pb.SubscribeRequest],
        context: grpc.aio.ServicerContext[pb.SubscribeRequest, pb.SubscribeResponse],
    ) -> None:
        owner = self._peer_identity(context)
        open_streams = self._open_per_owner.get(owner, 0)
        if open_streams >= self.limits.streams_per_peer:
            self.refused_streams += 1
            log.warning("refusing a stream from %s: %d streams are open", owner, open_streams)
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"too many open streams from {owner} (at most {self.limits.streams_per_peer})",
            )
        self._open_per_owner[owner] = open_streams + 1
        stream = ClientStream(context.peer(), context, self._render_push, owner)
        stream.principal = self._access.caller()
        self._streams[stream.id] = stream
        log.info("stream %s opened from %s", stream.id, stream.peer)
        try:
            # context.read(), not request_iterator: gRPC's iterator is an async generator over
            # read() whose frames live as long as the call (0.4 KB per open stream).
            while (request := await context.read()) is not _EOF:
                if refused(request, context):
                    break  # not a valid message: the call ends with INVALID_ARGUMENT
                self._handle(stream, request)
                # Not kept while waiting for the next one: a parsed message holds its upb arena
                # (about 0.7 KB of RSS, outside what tracemalloc sees).
                del request
            await stream.flush()  # the client half-closed: deliver what is queued, then end
        except grpc.aio.AioRpcError:
            pass
        except Exception:
            log.exception("stream %s: reader failed", stream.id)
        finally:
            stream.close()
            self._drop(stream)

    def _handle(self, stream: ClientStream, request: pb.SubscribeRequest) -> None:  # noqa: C901 (complexity debt, see pyproject [tool.ruff.lint.mccabe])
        if request.identifier and not stream.identifier:
            stream.identifier = request.identifier
            self._open_per_identifier[stream.identifier] = (
                self._open_per_identifier.get(stream.identifier, 0) + 1
            )
        if request.response_ack in (ACK, NACK):
            self._record_answer(stream, request)
            return
        if request.response_ack:
            self._reject(stream, request, f"unknown response_ack {request.response_ack!r}")
            return
        target = request.target
        if not request.HasField("target") or not target.namespace or not target.app or not target.kinds:
            self._reject(stream, request, "Request is invalid: target namespace, app and kinds are required")
            return
        if len(target.namespace) > _NAME_MAX or len(target.app) > _NAME_MAX:
            self._reject(
                stream, request, f"Request is invalid: namespace and app are at most {_NAME_MAX} long"
            )
            return
        unknown = [k for k in target.kinds if not _known_kind(k)]
        if unknown:
            shown = ", ".join(k[:_NAME_MAX] for k in unknown[:5])
            self._reject(stream, request, f"Request is invalid: unknown kind(s) {shown}")
            return
        try:
            check_namespace(target.namespace, "target.namespace")
            check_app(target.app, "target.app")
            for label in target.labels:
                check_label(label.key, label.value, "target.labels")
        except InvalidName as err:
            self._reject(stream, request, f"Request is invalid: {err}")
            return
        if request.op_type != pb.UNSUBSCRIBE:
            denial = self._access.denial(stream.principal, target.namespace, Action.SUBSCRIBE)
            if denial is not None:
                self._reject(stream, request, f"PERMISSION_DENIED: {denial}", CODE_PERMISSION_DENIED)
                return
            new = {SubscriptionKey(target.namespace, target.app, k) for k in target.kinds}
            limit = self.limits.subscriptions_per_stream
            if len(new - stream.subscriptions.keys()) + len(stream.subscriptions) > limit:
                self.refused_subscriptions += 1
                self._reject(stream, request, f"Request is invalid: at most {limit} subscriptions per stream")
                return
        encoding = Encoding.UPSTREAM
        for label in target.labels:
            if label.key == ENCODING_LABEL and label.value == Encoding.NATIVE.value:
                encoding = Encoding.NATIVE
        for kind in target.kinds:
            key = SubscriptionKey(target.namespace, target.app, kind)
            if request.op_type == pb.UNSUBSCRIBE:
                self._unsubscribe(stream, key)
            else:
                self._subscribe(stream, key, encoding, request.request_id)

    def _subscribe(
        self, stream: ClientStream, key: SubscriptionKey, encoding: Encoding, request_id: str
    ) -> None:
        key = self._keys.setdefault(key, key)
        state = stream.subscriptions.get(key)
        if state is None:
            stream.subscriptions[key] = SubscriptionState(key, encoding)
        else:
            state.encoding = encoding
        self._index.setdefault(key, set()).add(stream)
        # Always answer with the state of the world, even when empty (upstream sends nothing).
        stream.schedule_push(key, request_id or stream.next_response_id())

    def _unsubscribe(self, stream: ClientStream, key: SubscriptionKey) -> None:
        stream.subscriptions.pop(key, None)
        if stream._pending is not None:
            stream._pending.pop(key, None)
        self._leave(stream, key)

    def _leave(self, stream: ClientStream, key: SubscriptionKey) -> None:
        streams = self._index.get(key)
        if streams is not None:
            streams.discard(stream)
            if not streams:
                del self._index[key]
                del self._keys[key]

    def _render(self, stream: ClientStream, key: SubscriptionKey, request_id: str | None) -> bytes | None:
        """The encoded push for one stream: shared bytes for a change push; for an initial push
        (``request_id`` given) the shared frame plus the client's response_id."""
        state = stream.subscriptions.get(key)
        if state is None:
            return None
        snapshot = self._snapshots.get(state.key)
        state.pushed_version = snapshot.version
        state.pushed_at = time.time()
        if state.acked_version != snapshot.version:
            state.last_response = "pending"
        encoding = state.encoding
        try:
            if request_id is None:
                return snapshot.memo(
                    (encoding, CODE_CHANGE_PUSH), lambda: self._change_push(snapshot, encoding)
                )
            frame = snapshot.memo(
                (encoding, CODE_SUCCESS), lambda: self._frame(snapshot, encoding, CODE_SUCCESS)
            )
        except EncodeError as err:  # logged once by the snapshot
            state.last_response = "failed"
            state.last_code = CODE_UNKNOWN_ERROR
            state.last_message = str(err)
            response_id = request_id or stream.next_response_id()
            stream.remember(response_id, state.key, snapshot.version)
            return pb.SubscribeResponse(
                status=pb.Status(code=CODE_UNKNOWN_ERROR, message=str(err)),
                ack=NACK,
                namespace=snapshot.key.namespace,
                app=snapshot.key.app,
                kind=snapshot.key.kind,
                control_plane=self._control_plane,
                response_id=response_id,
            ).SerializeToString()
        stream.remember(request_id, state.key, snapshot.version)
        return frame + pb.SubscribeResponse(response_id=request_id).SerializeToString()

    def _change_push(self, snapshot: Snapshot, encoding: Encoding) -> bytes:
        """A change push, response_id included: the same bytes go to every subscribed stream."""
        response_id = f"{self._push_prefix}{next(self._push_ids)}"
        self._pushes[response_id] = (snapshot.key, snapshot.version)
        while len(self._pushes) > _PUSHES_KEPT:
            self._pushes.popitem(last=False)
        frame = self._frame(snapshot, encoding, CODE_CHANGE_PUSH)
        return frame + pb.SubscribeResponse(response_id=response_id).SerializeToString()

    def _frame(self, snapshot: Snapshot, encoding: Encoding, code: int) -> bytes:
        """Every field of a push except response_id, serialized once."""
        return pb.SubscribeResponse(
            status=pb.Status(code=code, message="Get and send rule success"),
            ack="",
            namespace=snapshot.key.namespace,
            app=snapshot.key.app,
            kind=snapshot.key.kind,
            dataWithVersion=pb.DataWithVersion(
                data=list(snapshot.encoded(encoding)), version=snapshot.version
            ),
            control_plane=self._control_plane,
        ).SerializeToString()

    def rpc_handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        """The service's handler; responses are written as pre-encoded bytes."""
        method = grpc.stream_stream_rpc_method_handler(
            self.SubscribeConfig,
            request_deserializer=pb.SubscribeRequest.FromString,
            response_serializer=_passthrough,
        )
        return grpc.method_handlers_generic_handler(
            "io.opensergo.proto.transport.v1.OpenSergoUniversalTransportService", {"SubscribeConfig": method}
        )

    def _reject(
        self,
        stream: ClientStream,
        request: pb.SubscribeRequest,
        message: str,
        code: int = CODE_REQUEST_INVALID,
    ) -> None:
        log.warning("stream %s (%s): %s", stream.id, stream.identifier or stream.peer, message)
        stream.reply(
            pb.SubscribeResponse(
                status=pb.Status(code=code, message=message),
                ack=NACK,
                namespace=request.target.namespace,
                app=request.target.app,
                control_plane=self._control_plane,
                response_id=request.request_id,
            )
        )

    def _record_answer(self, stream: ClientStream, request: pb.SubscribeRequest) -> None:
        code = request.status.code if request.HasField("status") else 0
        message = _cut(request.status.message, self.limits.nack_message_chars)
        found = None
        if request.request_id:
            found = stream.lookup(request.request_id) or self._pushes.get(request.request_id)
        if found is None and request.response_ack == NACK:
            # The Java SDK NACKs without request_id: blame the newest unanswered push.
            pending = [s for s in stream.subscriptions.values() if s.last_response == "pending"]
            if pending:
                newest = max(pending, key=lambda s: s.pushed_at or 0.0)
                found = (newest.key, newest.pushed_version or 0)
        if found is None:
            log.debug(
                "stream %s: %s for unknown push %r", stream.id, request.response_ack, request.request_id
            )
            return
        key, version = found
        state = stream.subscriptions.get(key)
        if state is None:
            return
        state.last_code = code
        state.last_message = message
        if request.response_ack == NACK:
            state.last_response = "nacked"
            state.nacks = [*state.nacks[-9:], {"version": version, "code": code, "message": message}]
            log.warning(
                "client %s NACKed %s/%s %s version %d: code %d %s",
                stream.identifier or stream.peer,
                key.namespace,
                key.app,
                key.kind,
                version,
                code,
                message,
            )
        elif code == CODE_VERSION_OUTDATED:
            state.last_response = "outdated"
        elif code in (0, CODE_SUCCESS):
            state.last_response = "acked"
            state.acked_version = version
            state.acked_at = time.time()
        else:
            # The Go SDK ACKs with 4007 when decoding or a subscriber failed.
            state.last_response = "rejected"
            log.warning(
                "client %s could not apply %s version %d: code %d %s",
                stream.identifier or stream.peer,
                key.kind,
                version,
                code,
                message,
            )
        for listener in self._answer_listeners:
            listener(stream, state, version)

    def _drop(self, stream: ClientStream) -> None:
        self._streams.pop(stream.id, None)
        self.reclaimer.released()
        for key in list(stream.subscriptions):
            self._leave(stream, key)
        stream.disconnected_at = time.time()
        left = self._open_per_owner.get(stream.owner, 1) - 1
        if left > 0:
            self._open_per_owner[stream.owner] = left
        else:
            self._open_per_owner.pop(stream.owner, None)
        if self.limits.closed_streams_kept > 0:
            self._closed[stream.id] = stream
        while len(self._closed) > self.limits.closed_streams_kept:
            self._closed.popitem(last=False)
        log.info("stream %s closed (%s)", stream.id, stream.identifier or stream.peer)
        if stream.identifier and self._release_identifier(stream.identifier):
            for listener in self._disconnect_listeners:
                task = asyncio.get_running_loop().create_task(listener(stream.identifier))
                self._background.add(task)
                task.add_done_callback(self._background.discard)

    def _release_identifier(self, identifier: str) -> bool:
        """One stream of ``identifier`` ended; True when it was the last open one."""
        left = self._open_per_identifier.get(identifier, 1) - 1
        if left > 0:
            self._open_per_identifier[identifier] = left
            return False
        self._open_per_identifier.pop(identifier, None)
        return True


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


def _passthrough(data: bytes) -> bytes:
    return data


def _known_kind(name: str) -> bool:
    try:
        kinds.by_full_kind(name)
    except KeyError:
        return False
    return True
