"""The access token the SDK sends to the control plane: ``authorization: Bearer <token>`` on every call.

::

    client = OpenSergoClient("cp.example:10246", app="foo-app", token="s3cr3t...")
    client = OpenSergoClient("cp.example:10246", app="foo-app", token=BearerToken(file="/var/run/token"))

A control plane with auth on (``--auth on``, or ``auto`` beyond loopback) refuses calls without a
token of role ``agent`` (or ``admin``) in the app's namespace. A token file is read when a call
starts and again whenever it changes (checked at most once a second), so a rotated token (a
Kubernetes projected service-account token, a mounted Secret) is picked up without a restart.
The token travels in the clear on a plaintext channel: use TLS beyond loopback.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import grpc
import grpc.aio

__all__ = ["AUTHORIZATION", "BearerToken", "TokenError", "as_bearer_token"]

_log = logging.getLogger("opensergo.client.credentials")

AUTHORIZATION = "authorization"
_RECHECK_S = 1.0


class TokenError(ValueError):
    """The token setting is unusable: empty, or a token file that cannot be read or is empty."""


class BearerToken:
    """A token given as text, or read from ``file`` (stripped of surrounding whitespace)."""

    def __init__(self, token: str | None = None, *, file: str | os.PathLike[str] | None = None) -> None:
        if (token is None) == (file is None):
            raise TokenError("give either a token or a token file")
        if token is not None and not token.strip():
            raise TokenError("the token is empty")
        self._token = token.strip() if token is not None else None
        self.file = os.fspath(file) if file is not None else None
        self._lock = threading.Lock()
        self._read_at = 0.0
        self._mtime: float | None = None
        self._cached = ""
        if self.file is not None:
            self.value()  # a missing or empty file fails when the client is created

    def value(self) -> str:
        """The token now (a file's content, re-read when the file changed)."""
        if self._token is not None:
            return self._token
        assert self.file is not None
        with self._lock:
            now = time.monotonic()
            if self._cached and now - self._read_at < _RECHECK_S:
                return self._cached
            self._read_at = now
            try:
                mtime = os.stat(self.file).st_mtime
                if mtime != self._mtime or not self._cached:
                    with open(self.file, encoding="utf-8") as fh:
                        text = fh.read().strip()
                    if not text:
                        raise TokenError(f"the token file {self.file!r} is empty")
                    self._cached, self._mtime = text, mtime
            except OSError as exc:
                if not self._cached:
                    raise TokenError(
                        f"cannot read the token file {self.file!r}: {exc.strerror or exc}"
                    ) from exc
                _log.warning("keeping the previous token: cannot read %s: %s", self.file, exc)
            return self._cached

    def interceptors(self) -> list[grpc.aio.ClientInterceptor]:
        """Client interceptors that add the token to every call of a channel."""
        kinds = (_UnaryUnaryToken, _UnaryStreamToken, _StreamUnaryToken, _StreamStreamToken)
        return [cast(grpc.aio.ClientInterceptor, kind(self)) for kind in kinds]

    def __repr__(self) -> str:  # never the token itself
        return f"BearerToken(file={self.file!r})" if self.file is not None else "BearerToken(<token>)"


def as_bearer_token(token: str | BearerToken | None) -> BearerToken | None:
    """``token`` as a BearerToken (a string is the token itself)."""
    if token is None or isinstance(token, BearerToken):
        return token
    return BearerToken(token)


Continuation = Callable[[grpc.aio.ClientCallDetails, Any], Any]

if TYPE_CHECKING:  # the stubs make these generic; the runtime classes are not subscriptable
    _UnaryUnary = grpc.aio.UnaryUnaryClientInterceptor[Any, Any]
    _UnaryStream = grpc.aio.UnaryStreamClientInterceptor[Any, Any]
    _StreamUnary = grpc.aio.StreamUnaryClientInterceptor[Any, Any]
    _StreamStream = grpc.aio.StreamStreamClientInterceptor[Any, Any]
else:
    _UnaryUnary = grpc.aio.UnaryUnaryClientInterceptor
    _UnaryStream = grpc.aio.UnaryStreamClientInterceptor
    _StreamUnary = grpc.aio.StreamUnaryClientInterceptor
    _StreamStream = grpc.aio.StreamStreamClientInterceptor


class _AddToken:
    """Adds the token to a call's metadata. grpc.aio files each interceptor under the first of
    the four call types it is an instance of, so there is one subclass per type."""

    def __init__(self, token: BearerToken) -> None:
        self._token = token

    def _details(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*(details.metadata or ()))
        metadata.add(AUTHORIZATION, f"Bearer {self._token.value()}")
        return grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )


class _UnaryUnaryToken(_AddToken, _UnaryUnary):
    async def intercept_unary_unary(
        self, continuation: Continuation, client_call_details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await continuation(self._details(client_call_details), request)


class _UnaryStreamToken(_AddToken, _UnaryStream):
    async def intercept_unary_stream(
        self, continuation: Continuation, client_call_details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await continuation(self._details(client_call_details), request)


class _StreamUnaryToken(_AddToken, _StreamUnary):
    async def intercept_stream_unary(
        self,
        continuation: Continuation,
        client_call_details: grpc.aio.ClientCallDetails,
        request_iterator: Any,
    ) -> Any:
        return await continuation(self._details(client_call_details), request_iterator)


class _StreamStreamToken(_AddToken, _StreamStream):
    async def intercept_stream_stream(
        self,
        continuation: Continuation,
        client_call_details: grpc.aio.ClientCallDetails,
        request_iterator: Any,
    ) -> Any:
        return await continuation(self._details(client_call_details), request_iterator)
