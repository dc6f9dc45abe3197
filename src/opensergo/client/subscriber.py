"""Handling of SubscribeConfig responses (protocol.md §2.6, §6) and the requests the client sends.

Decisions, in the order the checks run:

1. ``ack`` non-empty and status code 1 or in [4000, 4100): a control-plane reply to one of our
   requests, not a push. Ignored; a NACK is logged. (Any other code is treated as a push, like the
   official SDKs do.)
2. Unknown ``kind`` -> NACK 4000.
3. Versions are compared only between pushes received on the same stream. The first push of a key
   on a stream is the control plane's state of the world and is applied even when its version is
   lower than the cached one (a "version reset", counted in ``version_resets`` and logged); after
   it, a push whose version is lower than the cached one -> ACK 4010 "outdated version", data
   discarded. An equal version is re-applied. Data from the on-disk snapshot is never compared.

   Why: version numbers are only comparable within one control-plane incarnation. The upstream Go
   control plane counts versions in memory from 1 after every restart, keeps the same identifier
   ("osg-" + host name) and, when it is the kind's first subscriber, sends no status-1 reply at all,
   only a burst of status-200 pushes with versions 1, 2, ...; so neither the identifier nor the
   status can tell a restart, and rejecting lower versions would keep stale rules until the new
   counter passes the old one (forever if it never does). Within one stream a lower version is
   genuinely out of order (upstream can write one stream from two goroutines) and is refused. With
   our control plane versions are store revisions and never go backwards, so the rule changes
   nothing there, except that a stream to a lagging replica sets the rules back to that replica's
   (consistent, slightly older) state until it catches up and pushes the newer version: a bounded
   staleness, where refusing would risk unbounded staleness against an upstream control plane.
   A push without ``dataWithVersion`` carries no state and never resets a version. The stream is
   identified by the hooks' optional ``streams_opened`` counter; without it every push counts as
   the same stream (the official SDKs' behaviour).
4. Every Any is decoded; any failure -> NACK 4001 with the reason, cache unchanged.
5. The cache entry is replaced, a snapshot write scheduled (the owner writes it off the loop,
   coalescing bursts), every callback of the key called. A failing callback -> NACK 4007 with the
   error text (the cache keeps the new data; the other callbacks still run); otherwise ACK 1.

A push without ``dataWithVersion`` is version 0 with an empty list. Every ACK/NACK carries
``request_id = response_id`` and the client identifier, and no target.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Protocol

from opensergo.client._spec import Decoder, KindLike
from opensergo.client.cache import RuleCache
from opensergo.common.protocol import (
    ACK,
    CODE_DECODE_ERROR,
    CODE_HANDLER_ERROR,
    CODE_SUCCESS,
    CODE_UNKNOWN_ERROR,
    CODE_VERSION_OUTDATED,
    NACK,
    REPLY_CODES_END,
    SubscriptionKey,
)
from opensergo.proto.transport.v1 import protocol_pb2 as pb
from opensergo.spec.base import Resource

__all__ = [
    "Callback",
    "PushHandler",
    "ack_request",
    "is_control_plane_reply",
    "subscribe_request",
    "unsubscribe_request",
]

_log = logging.getLogger("opensergo.client.subscriber")

Callback = Callable[[list[Resource], int], None]
"""``callback(resources, version)``; called on the client's event loop thread."""


def _target(
    namespace: str, app: str, kind: str, labels: Sequence[tuple[str, str]]
) -> pb.SubscribeRequestTarget:
    return pb.SubscribeRequestTarget(
        namespace=namespace,
        app=app,
        kinds=[kind],
        labels=[pb.SubscribeLabelKV(key=k, value=v) for k, v in labels],
    )


def subscribe_request(
    key: SubscriptionKey, *, identifier: str, request_id: str, labels: Sequence[tuple[str, str]] = ()
) -> pb.SubscribeRequest:
    """SUBSCRIBE for one kind (op_type SUBSCRIBE is the default and so omitted on the wire)."""
    return pb.SubscribeRequest(
        target=_target(key.namespace, key.app, key.kind, labels),
        op_type=pb.SUBSCRIBE,
        identifier=identifier,
        request_id=request_id,
    )


def unsubscribe_request(
    key: SubscriptionKey, *, identifier: str, request_id: str, labels: Sequence[tuple[str, str]] = ()
) -> pb.SubscribeRequest:
    return pb.SubscribeRequest(
        target=_target(key.namespace, key.app, key.kind, labels),
        op_type=pb.UNSUBSCRIBE,
        identifier=identifier,
        request_id=request_id,
    )


def ack_request(
    *, ack: str, code: int, message: str = "", request_id: str, identifier: str
) -> pb.SubscribeRequest:
    """The reply to a push: no target, ``request_id`` = the push's ``response_id``."""
    return pb.SubscribeRequest(
        response_ack=ack,
        status=pb.Status(code=code, message=message),
        request_id=request_id,
        identifier=identifier,
    )


def is_control_plane_reply(response: pb.SubscribeResponse) -> bool:
    """True for a reply to one of our requests (non-empty ack, code 1 or in [4000, 4100))."""
    if not response.ack:
        return False
    code = response.status.code
    return code == CODE_SUCCESS or CODE_UNKNOWN_ERROR <= code < REPLY_CODES_END


class _Hooks(Protocol):
    def resolve_push_kind(self, name: str) -> KindLike | None: ...

    def callbacks_for(self, key: SubscriptionKey) -> Sequence[Callback]: ...

    def persist(self) -> None: ...

    def describe_request(self, request_id: str) -> str: ...


class PushHandler:
    """Turns one SubscribeResponse into cache updates, callbacks and the ACK/NACK to send back."""

    def __init__(self, *, cache: RuleCache, identifier: str, decoder: Decoder, hooks: _Hooks) -> None:
        self._cache = cache
        self._identifier = identifier
        self._decoder = decoder
        self._hooks = hooks
        self.pushes_applied = 0
        self.version_resets = 0
        """How many pushes were applied although their version was lower (first push on a new stream)."""

    def _reply(
        self, response: pb.SubscribeResponse, ack: str, code: int, message: str = ""
    ) -> pb.SubscribeRequest:
        return ack_request(
            ack=ack, code=code, message=message, request_id=response.response_id, identifier=self._identifier
        )

    def handle(self, response: pb.SubscribeResponse) -> pb.SubscribeRequest | None:
        """Process ``response``; returns the reply to send, or None for a control-plane reply."""
        if is_control_plane_reply(response):
            self._log_reply(response)
            return None
        try:
            return self._handle_push(response)
        except Exception as exc:  # a bug here must not break the stream
            _log.exception(
                "error handling a push for %s/%s %s", response.namespace, response.app, response.kind
            )
            return self._reply(response, NACK, CODE_UNKNOWN_ERROR, f"{type(exc).__name__}: {exc}")

    def _log_reply(self, response: pb.SubscribeResponse) -> None:
        if response.ack == NACK:
            _log.warning(
                "control plane rejected request %s (%s): code %d %s",
                response.response_id or "<no id>",
                self._hooks.describe_request(response.response_id),
                response.status.code,
                response.status.message,
            )
        else:
            _log.debug(
                "control plane reply %r code %d to request %s",
                response.ack,
                response.status.code,
                response.response_id,
            )

    def _handle_push(self, response: pb.SubscribeResponse) -> pb.SubscribeRequest:
        kind = self._hooks.resolve_push_kind(response.kind)
        if kind is None:
            _log.warning(
                "push for unknown kind %r (namespace %r, app %r) rejected",
                response.kind,
                response.namespace,
                response.app,
            )
            return self._reply(response, NACK, CODE_UNKNOWN_ERROR, f"unknown kind {response.kind!r}")

        key = SubscriptionKey(response.namespace, response.app, response.kind)
        has_data = response.HasField("dataWithVersion")
        version = response.dataWithVersion.version if has_data else 0
        payloads = list(response.dataWithVersion.data) if has_data else []

        stream = self._stream_id()
        current = self._cache.entry(key)
        reset = False
        if current is not None and current.live and version < current.version:
            if not has_data or current.stream == stream:
                _log.info(
                    "discarding outdated push for %s: version %d < cached %d",
                    _fmt(key),
                    version,
                    current.version,
                )
                return self._reply(response, ACK, CODE_VERSION_OUTDATED, "outdated version")
            reset = True

        try:
            items = [
                self._decoder(any_, kind=kind, namespace=response.namespace, app=response.app, index=index)
                for index, any_ in enumerate(payloads)
            ]
        except Exception as exc:
            reason = f"cannot decode {response.kind} payload: {exc}"
            _log.warning("NACK push for %s version %d: %s", _fmt(key), version, reason)
            return self._reply(response, NACK, CODE_DECODE_ERROR, reason)

        if reset:
            assert current is not None
            self.version_resets += 1
            _log.warning(
                "control plane %r restarted its version counter for %s? first push on this stream has "
                "version %d < cached %d: applied as the new baseline",
                response.control_plane.identifier,
                _fmt(key),
                version,
                current.version,
            )
        self._cache.put(key, version, items, stream=stream)
        self.pushes_applied += 1
        _log.debug("applied %s version %d (%d items)", _fmt(key), version, len(items))
        try:
            self._hooks.persist()
        except Exception:
            _log.exception("cannot write the rule snapshot")

        errors: list[str] = []
        for callback in self._hooks.callbacks_for(key):
            try:
                callback(list(items), version)
            except Exception as exc:
                _log.exception("subscriber callback for %s failed", _fmt(key))
                errors.append(f"{type(exc).__name__}: {exc}")
        if errors:
            return self._reply(response, NACK, CODE_HANDLER_ERROR, "; ".join(errors))
        return self._reply(response, ACK, CODE_SUCCESS)

    def _stream_id(self) -> int | None:
        """The current stream's number from the hooks (``streams_opened``), or None if they lack it."""
        value = getattr(self._hooks, "streams_opened", None)
        return value if isinstance(value, int) and not isinstance(value, bool) else None


def _fmt(key: SubscriptionKey) -> str:
    return f"{key.namespace}/{key.app} {key.kind}"
