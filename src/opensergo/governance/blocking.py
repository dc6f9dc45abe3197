"""How a blocked request is answered, and how a failed response counts: shared by the HTTP and gRPC
integrations, and free of gRPC and of the client so that a middleware imports only what it uses.

- :data:`DEFAULT_BLOCK_RESPONSE`: what a blocked HTTP request gets when its rule has no fallback
  action (Sentinel's 429);
- :func:`block_response`: the response for a :class:`~opensergo.governance.errors.BlockedError`,
  with an optional :data:`BlockHandler` that renders it first;
- :class:`ErrorStatus`: the error reported to circuit breakers for a 5xx response or a non-OK gRPC
  status (a response that failed without raising).
"""

from __future__ import annotations

from collections.abc import Callable

from opensergo.governance.errors import BlockedError
from opensergo.governance.faulttolerance.fallback import FallbackResponse

__all__ = ["DEFAULT_BLOCK_BODY", "DEFAULT_BLOCK_RESPONSE", "BlockHandler", "ErrorStatus", "block_response"]

DEFAULT_BLOCK_BODY = "Blocked by OpenSergo (flow limiting)"
DEFAULT_BLOCK_RESPONSE = FallbackResponse(
    status=429,
    body=DEFAULT_BLOCK_BODY,
    headers=(("content-type", "text/plain; charset=utf-8"),),
    name="default",
)
"""What a blocked HTTP request gets when its rule has no fallback action (Sentinel's default)."""

BlockHandler = Callable[[BlockedError], FallbackResponse | None]
"""Renders a block: return the response to send, or None for the default rendering."""


def block_response(
    error: BlockedError,
    default: FallbackResponse = DEFAULT_BLOCK_RESPONSE,
    handler: BlockHandler | None = None,
) -> FallbackResponse:
    """The response for a blocked HTTP request: ``handler``'s, else the rule's fallback action,
    else ``default``."""
    if handler is not None:
        chosen = handler(error)
        if chosen is not None:
            return chosen
    return error.fallback if error.fallback is not None else default


class ErrorStatus(Exception):
    """Reported to circuit breakers for a response that failed without raising: an HTTP status
    >= 500 or a non-OK gRPC status. ``status`` is the int status or the gRPC status code.

    It counts as an error under the engine's default ``errors=(Exception,)``; an engine
    configured with narrower ``errors`` must list it to count such responses.
    """

    def __init__(self, status: object, detail: str = "") -> None:
        self.status = status
        super().__init__(f"{status}: {detail}" if detail else str(status))
