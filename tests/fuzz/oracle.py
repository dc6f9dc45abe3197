"""What every answer of the control plane must look like, whatever was sent.

HTTP: never a 5xx; a 4xx is a Kubernetes ``Status`` whose code is the HTTP status, and a 400 or
422 names what is wrong: a field path in ``details.causes`` (``spec.threshold``,
``query.start``), or the line and column of a syntax error, or the body as a whole.

gRPC: never UNKNOWN, INTERNAL, UNIMPLEMENTED or DEADLINE_EXCEEDED (a hang); a refusal is a
NACK with an error code and a message, or a status with a message.
"""

from __future__ import annotations

import re
from typing import Any

import grpc
import httpx

from opensergo.common.protocol import CODE_UNKNOWN_ERROR, REPLY_CODES_END

_LOCATION = re.compile(r"line \d+|column \d+|char \d+")
# A refusal of the request body as a whole (its root is the path).
_WHOLE_BODY = ("request body", "body must be JSON")
SERVER_FAULTS = {
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.DATA_LOSS,
}


def http_outcome(response: httpx.Response) -> str:
    """The tally outcome of one answer; AssertionError when it breaks the rules above."""
    code = response.status_code
    where = f"{response.request.method} {response.request.url} -> {code}: {response.text[:2000]}"
    assert code < 500, where
    if code < 300:
        return "accepted"
    if code < 400:
        return "redirected"  # e.g. a trailing slash
    body = response.json()
    assert isinstance(body, dict) and body.get("kind") == "Status", where
    assert body.get("code") == code and body.get("message") and body.get("reason"), where
    if code in (400, 422):
        causes = (body.get("details") or {}).get("causes") or []
        named = any(isinstance(c, dict) and c.get("field") for c in causes)
        located = _LOCATION.search(body["message"]) is not None
        whole = body["message"].startswith(_WHOLE_BODY)
        assert named or located or whole, f"a {code} that names no field: {where}"
    return str(code)


def validate_outcome(response: httpx.Response) -> str:
    """The dashboard's validate view answers 200 with located errors (or a 4xx as above)."""
    if response.status_code != 200:
        return http_outcome(response)
    body = response.json()
    assert isinstance(body.get("valid"), bool), response.text
    if body["valid"]:
        return "valid"
    assert body["errors"], response.text
    for error in body["errors"]:
        assert error["message"], response.text
        assert error["field"] or error["line"] is not None, f"an error that names no field: {response.text}"
    return "invalid"


def rpc_outcome(err: grpc.RpcError) -> str:
    """A call that ended with a status: never a server fault; a refusal says why."""
    code = err.code()  # type: ignore[attr-defined]
    assert code not in SERVER_FAULTS, f"{code}: {err.details()}"  # type: ignore[attr-defined]
    assert err.details(), f"{code} without a message"  # type: ignore[attr-defined]
    return code.name


def nack_is_well_formed(response: Any) -> bool:
    """A NACK carries an error code and a message."""
    return (
        response.ack == "NACK"
        and CODE_UNKNOWN_ERROR <= response.status.code < REPLY_CODES_END
        and bool(response.status.message)
    )
