"""The Aggregated Discovery Service (state of the world) on the control plane's gRPC port.

One stream per Envoy or proxyless gRPC client. Its handler is one loop over an inbox of
requests and "the cache changed" marks, so a stream's state is never touched concurrently.

Protocol points (reference envoy-xds.md §1):

* Nonces are per stream; a request whose ``response_nonce`` is not the latest one sent for its
  type is stale and ignored whole.
* ACK: the latest nonce and no ``error_detail``. NACK: ``error_detail`` set (its message is
  Envoy's reason). After a NACK the stream is *parked* for that type: the rejected content is
  not sent again (go-control-plane re-sends it at once, in a loop); the next different content
  is. Envoy keeps its last good config meanwhile.
* A response is sent for a type on the first request, when the subscribed names differ from the
  names of the last response, and when the content for the node changed. LDS and CDS are full
  sets (wildcard); RDS and EDS are sent by name.
* ``version_info`` is ``<store revision>.<content digest>``: it grows with the store and changes
  whenever the content does.

Authorization (``--auth on``): the stream was authenticated by the port's auth wrapper
(grpcauth.py: a bearer token in the call metadata, or a client certificate listed in the tokens
file), else it already ended ``UNAUTHENTICATED``. Its node's namespace selects everything it is
sent, so the first request's node must name a namespace where the caller is ``agent`` or
``admin``; otherwise the stream ends ``PERMISSION_DENIED`` before any response, as Istio's xDS
server does. Envoy logs the status and retries with back-off; a proxyless gRPC channel reports
the error. The node cannot change namespace later: the node of later requests is ignored.

Every stream is listed among the transport's clients (``opensergo get clients``, dashboard) with
one subscription per rule group its resources were built from; an ACK or NACK of a type is
recorded against each of those groups, so a NACKed rule shows as NACKed with Envoy's message in
the rollout view.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import json_format

from opensergo.common.protocol import Encoding, SubscriptionKey
from opensergo.controlplane.grpcauth import AUTHORIZATION, OPEN, Action, GrpcAuth, authorization_header
from opensergo.controlplane.snapshots import Snapshot, SnapshotCache
from opensergo.controlplane.transport import ClientStream, SubscriptionState, TransportService
from opensergo.controlplane.xds.build import Builder
from opensergo.controlplane.xds.node import NodeError, NodeProfile
from opensergo.controlplane.xds.resources import (
    CLUSTER,
    ENDPOINT,
    LISTENER,
    SEND_ORDER,
    SHORT_NAMES,
    WILDCARD_TYPES,
    Built,
)

log = logging.getLogger(__name__)

_CHANGED = object()
NACK_MESSAGE_CHARS = 2048


def _cut(message: str) -> str:
    """A NACK message bounded in size: its end (Envoy puts the reason last) with a marker."""
    if len(message) <= NACK_MESSAGE_CHARS:
        return message
    return "..." + message[-(NACK_MESSAGE_CHARS - 3) :]


_CLOSED = object()
REDACTED = "******"


def _redacted(message: str, profile: NodeProfile | None) -> str:
    """Envoy's NACK message without the node's credential: the message may quote the rejected
    listener, whose ratelimit filter carries it, and NACKs are logged and shown to viewers."""
    for _, value in profile.control_plane_metadata if profile is not None else ():
        secret = value.partition(" ")[2].strip() or value
        message = message.replace(value, REDACTED).replace(secret, REDACTED)
    return message


@dataclass
class TypeState:
    """One resource type on one stream."""

    requested: bool = False
    names: list[str] | None = None  # None: wildcard
    explicit: bool = False  # has named resources at least once (no more legacy wildcard)
    nonce: str = ""
    version: str = ""
    digest: bytes | None = None
    sent_names: list[str] | None = None
    sources: dict[SubscriptionKey, int] = field(default_factory=dict)
    sent_at: float | None = None
    acked_version: str = ""
    acked_at: float | None = None
    parked: bytes | None = None  # digest of the content last NACKed
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "names": self.names,
            "version": self.version,
            "nonce": self.nonce,
            "sentAt": self.sent_at,
            "ackedVersion": self.acked_version,
            "ackedAt": self.acked_at,
            "state": "nacked"
            if self.parked is not None
            else ("acked" if self.acked_version == self.version else "pending"),
            "error": self.error,
        }


class XdsStream(ClientStream):
    """An ADS stream, shaped like a SubscribeConfig stream for the client views."""

    __slots__ = ("_answers", "_nonces", "_service", "inbox", "node", "profile", "types")

    def __init__(self, peer: str, context: Any, service: AdsService) -> None:
        super().__init__(peer, context, lambda *_: None)
        self._service = service
        self.node: dict[str, Any] = {}
        self.profile: NodeProfile | None = None
        self.types: dict[str, TypeState] = {}
        self.inbox: asyncio.Queue[Any] = asyncio.Queue()
        self._nonces = itertools.count(1)
        # group -> type_url -> (source version, "pending" | "acked" | "nacked")
        self._answers: dict[SubscriptionKey, dict[str, tuple[int, str]]] = {}

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["protocol"] = "xds"
        data["node"] = self.node
        data["xds"] = {SHORT_NAMES.get(t, t): s.to_dict() for t, s in sorted(self.types.items())}
        return data

    # --- bookkeeping of answers against rule groups ---

    def _sent(self, type_url: str, sources: dict[SubscriptionKey, int]) -> None:
        now = time.time()
        for key, version in sources.items():
            state = self.subscriptions.get(key)
            if state is None:
                state = self.subscriptions[key] = SubscriptionState(key, Encoding.UPSTREAM)
            self._answers.setdefault(key, {})[type_url] = (version, "pending")
            if state.pushed_version is None or version >= state.pushed_version:
                state.pushed_version = version
                state.pushed_at = now
            if state.acked_version != version:
                state.last_response = "pending"

    def _answered(self, type_url: str, sources: dict[SubscriptionKey, int], error: str, code: int) -> None:
        now = time.time()
        for key, version in sources.items():
            state = self.subscriptions.get(key)
            if state is None:
                continue
            answers = self._answers.setdefault(key, {})
            answers[type_url] = (version, "nacked" if error else "acked")
            if error:
                state.last_response = "nacked"
                state.last_code = code
                state.last_message = error
                state.nacks = [*state.nacks[-9:], {"version": version, "code": code, "message": error}]
            elif all(answer == "acked" for _, answer in answers.values()):
                state.last_response = "acked"
                state.last_code = 0
                state.last_message = ""
                state.acked_version = max(v for v, _ in answers.values())
                state.acked_at = now
            else:
                continue
            self._service.transport.notify_answer(self, state, version)

    def settle(self, sources: dict[SubscriptionKey, int]) -> None:
        """A change produced no new content for this node: groups it already ACKed in full
        are ACKed at their new versions (the Envoy runs exactly that configuration)."""
        now = time.time()
        for key, version in sources.items():
            state = self.subscriptions.get(key)
            answers = self._answers.get(key)
            if state is None or not answers or state.acked_version is None or version <= state.acked_version:
                continue
            if all(answer == "acked" for _, answer in answers.values()):
                state.pushed_version = state.acked_version = version
                state.pushed_at = state.acked_at = now
                for type_url, (_, answer) in list(answers.items()):
                    answers[type_url] = (version, answer)
                self._service.transport.notify_answer(self, state, version)


class AdsService:
    def __init__(
        self,
        snapshots: SnapshotCache,
        transport: TransportService,
        identity: str,
        auth: GrpcAuth = OPEN,
    ) -> None:
        self.snapshots = snapshots
        self.transport = transport
        self.auth = auth
        self.builder = Builder(snapshots)
        self._identity = base_pb2.ControlPlane(identifier=identity)
        self._streams: set[XdsStream] = set()
        snapshots.add_listener(self._on_snapshot)

    def rpc_handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        """State of the world only: DeltaAggregatedResources answers UNIMPLEMENTED."""
        method = grpc.stream_stream_rpc_method_handler(
            self.StreamAggregatedResources,
            request_deserializer=discovery_pb2.DiscoveryRequest.FromString,
            response_serializer=discovery_pb2.DiscoveryResponse.SerializeToString,
        )
        return grpc.method_handlers_generic_handler(
            "envoy.service.discovery.v3.AggregatedDiscoveryService", {"StreamAggregatedResources": method}
        )

    @property
    def streams(self) -> list[XdsStream]:
        return list(self._streams)

    def _on_snapshot(self, snapshot: Snapshot) -> None:
        for stream in self._streams:
            stream.inbox.put_nowait(_CHANGED)

    async def StreamAggregatedResources(
        self,
        request_iterator: AsyncIterator[discovery_pb2.DiscoveryRequest],
        context: grpc.aio.ServicerContext[discovery_pb2.DiscoveryRequest, discovery_pb2.DiscoveryResponse],
    ) -> None:
        stream = XdsStream(context.peer(), context, self)
        reader = asyncio.get_running_loop().create_task(self._read(request_iterator, stream))
        self._streams.add(stream)
        self.transport.attach(stream)
        try:
            await self._serve(stream, context)
        finally:
            reader.cancel()
            self._streams.discard(stream)
            self.transport.detach(stream)
            log.info("xds stream %s closed (%s)", stream.id, stream.identifier or stream.peer)

    async def _read(self, requests: AsyncIterator[discovery_pb2.DiscoveryRequest], stream: XdsStream) -> None:
        try:
            async for request in requests:
                stream.inbox.put_nowait(request)
        except (grpc.aio.AioRpcError, asyncio.CancelledError):
            pass
        finally:
            stream.inbox.put_nowait(_CLOSED)

    async def _serve(self, stream: XdsStream, context: Any) -> None:
        while True:
            batch = [await stream.inbox.get()]
            while not stream.inbox.empty():
                batch.append(stream.inbox.get_nowait())
            changed = False
            for item in batch:
                if item is _CLOSED:
                    return
                if item is _CHANGED:
                    changed = True  # many marks (one per changed group) make one rebuild
                else:
                    await self._request(stream, item, context)
            if changed and stream.profile is not None:
                await self._push_changes(stream, context)

    # --- requests ---

    async def _request(
        self, stream: XdsStream, request: discovery_pb2.DiscoveryRequest, context: Any
    ) -> None:
        if stream.profile is None:
            if not request.HasField("node"):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the first request must carry the node")
            try:
                profile = NodeProfile.from_node(request.node)
            except NodeError as err:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
            stream.profile = await self._authorized(profile, request.node.id or stream.peer, context)
            stream.identifier = request.node.id or stream.peer
            stream.node = json_format.MessageToDict(request.node)
            log.info("xds stream %s opened by %s (%s)", stream.id, stream.identifier, stream.profile)
        type_url = request.type_url
        if type_url not in SHORT_NAMES:
            log.debug("xds stream %s: unsupported type %s", stream.id, type_url)
            return
        state = stream.types.setdefault(type_url, TypeState())
        nonce = request.response_nonce
        if nonce and nonce != state.nonce:
            return  # stale: a newer response is on its way
        if nonce:
            self._record_answer(stream, type_url, state, request)
        names = list(request.resource_names)
        if names and names != ["*"]:
            state.explicit = True
        if type_url in WILDCARD_TYPES and (not state.explicit or names == ["*"]):
            state.names = None
        else:
            state.names = sorted(set(names) - {"*"})
        first = not state.requested
        state.requested = True
        if first or state.names != state.sent_names:
            await self._send(stream, type_url, state, context, force=True)

    async def _authorized(self, profile: NodeProfile, who: str, context: Any) -> NodeProfile:
        """``profile`` if the caller may receive its namespace's configuration (else the stream
        ends PERMISSION_DENIED), with the credential Envoy's RateLimitService calls repeat."""
        if not self.auth.enabled:
            return profile
        refusal = self.auth.denial(self.auth.caller(), profile.namespace, Action.XDS)
        if refusal is not None:
            log.warning("xds stream of %s refused: %s", who, refusal)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, refusal)
        # The ratelimit filter calls the control plane on its own gRPC stream, which the port
        # authenticates too: it sends what this stream sent (a certificate needs nothing).
        header = authorization_header(context.invocation_metadata())
        if header is None:
            return profile
        return replace(profile, control_plane_metadata=((AUTHORIZATION, header),))

    def _record_answer(
        self, stream: XdsStream, type_url: str, state: TypeState, request: discovery_pb2.DiscoveryRequest
    ) -> None:
        short = SHORT_NAMES[type_url]
        if request.HasField("error_detail"):
            # Envoy's message dumps the rejected resource before its reason: keep the reason.
            message = _cut(_redacted(request.error_detail.message, stream.profile))
            state.parked = state.digest
            state.error = message
            log.warning(
                "xds client %s NACKed %s version %s: %s", stream.identifier, short, state.version, message
            )
            stream._answered(type_url, state.sources, message, request.error_detail.code or 13)
            return
        state.acked_version = state.version
        state.acked_at = time.time()
        state.parked = None
        state.error = ""
        stream._answered(type_url, state.sources, "", 0)

    # --- responses ---

    def _built(self, stream: XdsStream) -> Built:
        assert stream.profile is not None
        listeners: tuple[str, ...] = ()
        if not stream.profile.sidecar:
            lds = stream.types.get(LISTENER)
            listeners = tuple(lds.names or ()) if lds is not None else ()
        return self.builder.get(stream.profile, listeners)

    async def _push_changes(self, stream: XdsStream, context: Any) -> None:
        clusters_sent = False
        for type_url in SEND_ORDER:
            state = stream.types.get(type_url)
            if state is not None and state.requested:
                # An updated cluster warms until endpoints arrive for it, and Envoy does not ask
                # again for names it already has: after CDS, EDS is always sent.
                force = type_url == ENDPOINT and clusters_sent
                sent = await self._send(stream, type_url, state, context, force=force)
                clusters_sent = clusters_sent or (type_url == CLUSTER and sent)
        stream.settle(self._built(stream).sources)

    async def _send(
        self, stream: XdsStream, type_url: str, state: TypeState, context: Any, *, force: bool
    ) -> bool:
        """Send ``type_url`` when its content changed (or ``force``); True when something was."""
        try:
            built = self._built(stream)
        except Exception:
            log.exception("xds: cannot build the configuration of %s", stream.identifier)
            return False
        digest = built.digest(type_url, state.names)
        if not force and (digest == state.digest or digest == state.parked):
            return False
        resources = built.select(type_url, state.names)
        version = f"{self.snapshots.revision}.{digest.hex()[:8]}"
        nonce = str(next(stream._nonces))
        response = discovery_pb2.DiscoveryResponse(
            version_info=version,
            resources=resources,
            type_url=type_url,
            nonce=nonce,
            control_plane=self._identity,
        )
        state.nonce, state.version, state.digest = nonce, version, digest
        state.sent_names = state.names
        state.sent_at = time.time()
        state.sources = dict(built.sources)
        stream._sent(type_url, state.sources)
        try:
            await context.write(response)
        except (grpc.aio.AioRpcError, grpc.aio.UsageError, RuntimeError) as err:
            log.debug("xds stream %s: write failed: %s", stream.id, err)
        return True
