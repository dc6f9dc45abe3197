"""The universal-transport vocabulary both halves speak: subscription keys, ACK/NACK, status codes.

Codes follow upstream OpenSergo's ``OpenSergoTransportConstant`` (Java) and ``transport`` (Go)
values, so the control plane, our SDK and the official SDKs read each other's answers.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple

__all__ = [
    "ACK",
    "CODE_CHANGE_PUSH",
    "CODE_DECODE_ERROR",
    "CODE_HANDLER_ERROR",
    "CODE_PERMISSION_DENIED",
    "CODE_REQUEST_INVALID",
    "CODE_SUCCESS",
    "CODE_UNKNOWN_ERROR",
    "CODE_VERSION_OUTDATED",
    "ENCODING_LABEL",
    "NACK",
    "REPLY_CODES_END",
    "Encoding",
    "SubscriptionKey",
]


class SubscriptionKey(NamedTuple):
    """What one subscription is to: a (namespace, app, kind) group.

    ``kind`` is the full kind string, ``group/version/Kind`` (``KindInfo.full_kind``).
    """

    namespace: str
    app: str
    kind: str


ACK = "ACK"
NACK = "NACK"

CODE_SUCCESS = 1
CODE_CHANGE_PUSH = 200  # a push the control plane sends on its own, not a reply
CODE_UNKNOWN_ERROR = 4000
CODE_DECODE_ERROR = 4001
CODE_REQUEST_INVALID = 4002
CODE_PERMISSION_DENIED = 4003  # ours: the caller may not subscribe in the target's namespace
CODE_HANDLER_ERROR = 4007
CODE_VERSION_OUTDATED = 4010
REPLY_CODES_END = 4100  # codes in [CODE_UNKNOWN_ERROR, REPLY_CODES_END) are error replies


ENCODING_LABEL = "opensergo.io/encoding"
"""Target label asking our control plane for full-fidelity ``opensergo.ext.v1.Resource`` payloads."""


class Encoding(StrEnum):
    """How a snapshot's objects are packed into ``Any``; the value of :data:`ENCODING_LABEL`."""

    UPSTREAM = "upstream"  # the upstream proto message; what the Go and Java SDKs decode
    NATIVE = "native"  # opensergo.ext.v1.Resource: the full object, no information lost
