"""Authentication and authorization of the gRPC port, with the tokens and roles of the HTTP API.

A wrapper around every method handler (put there once, at registration: handlers.py)
authenticates every call of every service on the port (SubscribeConfig,
ReportMetadata, the token service, the OTLP receiver, and whatever is added later) before the
service sees it; a call without a valid identity ends with ``UNAUTHENTICATED``. The identity is:

* the ``authorization: Bearer <token>`` call metadata, checked against the tokens file of
  ``--auth-tokens`` (or the generated admin token); a present but invalid token is refused even
  when a client certificate is also presented;
* otherwise, with ``--tls-client-ca``, the verified client certificate: the tokens-file entry whose
  ``certificates:`` list names its subject common name or one of its subject alternative names.

Each service then asks :meth:`GrpcAuth.denial` whether the caller may act in the namespace a
request names, and refuses with ``PERMISSION_DENIED`` (SubscribeConfig refuses per target instead,
see transport.py). Every data-plane action needs the role ``agent`` or ``admin`` in that
namespace: subscriptions carry secrets (DatabaseEndpoint passwords) in clear, which the HTTP API
redacts even for editors, and reports, leases and metrics write state others rely on. A viewer or
an editor is therefore not a data plane.

Auth is on for the gRPC port exactly when it is on for the HTTP port (``--auth``; ``auto`` means
on unless the control plane listens on loopback only). With auth off every caller is
:data:`ANONYMOUS` (every role) and no handler is wrapped for auth.

With auth on, the transport's per-peer stream limit (:class:`~opensergo.controlplane.limits.Limits`)
counts the authenticated caller's streams instead of its host's (:meth:`GrpcAuth.peer_identity`).
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextvars import ContextVar
from enum import StrEnum
from typing import Any

import grpc

from opensergo.controlplane.api.auth import ANONYMOUS, NOBODY, AuthConfig, Principal, Role
from opensergo.controlplane.handlers import HandlerWrapper

__all__ = ["DATA_PLANE_ROLES", "OPEN", "Action", "GrpcAuth", "authorization_header"]

AUTHORIZATION = "authorization"
DATA_PLANE_ROLES = frozenset({Role.AGENT, Role.ADMIN})

# The caller of the RPC this task serves: set by the auth wrapper before the service runs (each
# RPC runs in its own task, so its own context).
_caller: ContextVar[Principal] = ContextVar("opensergo_grpc_caller", default=NOBODY)


class Action(StrEnum):
    SUBSCRIBE = "subscribing"
    REPORT = "reporting metadata"
    LEASE = "leasing tokens"
    EXPORT = "exporting metrics"
    EXPORT_TRACES = "exporting traces"
    EXPORT_LOGS = "exporting logs"
    XDS = "receiving xDS configuration"
    RATE_LIMIT = "asking the RateLimitService"


class GrpcAuth:
    """The gRPC port's authentication (a handler wrapper) and authorization (namespace checks)."""

    def __init__(self, config: AuthConfig, *, client_certificates: bool = False) -> None:
        """``client_certificates``: the port verifies client certificates (--tls-client-ca), so
        their names may identify callers."""
        self.config = config
        self.client_certificates = client_certificates

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    def handler_wrapper(self) -> HandlerWrapper | None:
        """What wraps every method handler to authenticate its calls (see handlers.py); None with
        auth off."""
        return _Authenticator(self).guard if self.enabled else None

    def caller(self) -> Principal:
        """Who made the RPC being served: ANONYMOUS with auth off; NOBODY (no role) if the
        auth wrapper did not run, so that a wiring mistake fails closed."""
        return _caller.get() if self.enabled else ANONYMOUS

    def peer_identity(self, fallback: Callable[[Any], str]) -> Callable[[Any], str]:
        """Whom a call's streams are counted against (the transport's per-peer limit): the
        authenticated caller with auth on, so one caller cannot spread over many hosts nor two
        callers behind one NAT share a budget; ``fallback(context)`` (the peer's host) with auth off."""
        if not self.enabled:
            return fallback

        def caller_name(context: Any) -> str:
            return self.caller().name

        return caller_name

    def authenticate(
        self,
        metadata: Any,
        auth_context: Mapping[str, Iterable[bytes]] | Callable[[], Mapping[str, Iterable[bytes]]],
    ) -> Principal | str:
        """The caller's identity from call metadata and the TLS peer (``auth_context``, or what
        gives it: read only when no token came), or why there is none."""
        header = authorization_header(metadata)
        if header is not None:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                return "the authorization metadata must be 'Bearer <token>'"
            principal = self.config.tokens.authenticate(token.strip())
            return principal if principal is not None else "invalid token"
        if callable(auth_context):
            auth_context = auth_context()
        names = certificate_names(auth_context) if self.client_certificates else []
        if names:
            principal = self.config.tokens.by_certificate(names)
            if principal is not None:
                return principal
            return (
                f"the client certificate ({', '.join(names)}) is not listed under 'certificates:'"
                " in the tokens file"
            )
        return "authentication required: send 'authorization: Bearer <token>' call metadata"

    def denial(self, principal: Principal, namespace: str, action: Action) -> str | None:
        """Why ``principal`` may not act as a data plane in ``namespace``; None if it may."""
        role = principal.role_in(namespace)
        if role in DATA_PLANE_ROLES:
            return None
        have = f"has role {role.name.lower()}" if role is not None else "has no role"
        return f"{principal.name} {have} in namespace {namespace!r}; {action} needs agent or admin"


OPEN = GrpcAuth(AuthConfig(False))
"""Auth off: the default of services built without wiring (tests, embedding)."""


def authorization_header(metadata: Any) -> str | None:
    """The ``authorization`` call metadata as sent (``Bearer <token>``), or None."""
    value = next((value for key, value in metadata or () if key == AUTHORIZATION), None)
    return None if value is None else str(value)


def certificate_names(auth_context: Mapping[str, Iterable[bytes]]) -> list[str]:
    """The verified peer certificate's subject alternative names, then its common name."""
    names = [
        *auth_context.get("x509_subject_alternative_name", ()),
        *auth_context.get("x509_common_name", ()),
    ]
    return [n.decode("utf-8", "replace") for n in names]


Behavior = Callable[..., Any]


class _Authenticator:
    """Wraps a method handler: authenticate, remember the caller, then run the method."""

    def __init__(self, auth: GrpcAuth) -> None:
        self._auth = auth

    def guard(self, handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
        wrap = self._wrap
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                wrap(handler.unary_unary), handler.request_deserializer, handler.response_serializer
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                wrap(handler.unary_stream), handler.request_deserializer, handler.response_serializer
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                wrap(handler.stream_unary), handler.request_deserializer, handler.response_serializer
            )
        assert handler.stream_stream is not None
        return grpc.stream_stream_rpc_method_handler(
            wrap(handler.stream_stream), handler.request_deserializer, handler.response_serializer
        )

    async def _admit(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        # The TLS peer's properties are built only for a call that brought no token.
        found = self._auth.authenticate(context.invocation_metadata(), context.auth_context)
        if isinstance(found, str):
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, found)
        else:
            _caller.set(found)

    def _wrap(self, behavior: Behavior) -> Behavior:
        admit = self._admit
        if inspect.isasyncgenfunction(behavior):

            async def streaming(
                request: Any, context: grpc.aio.ServicerContext[Any, Any]
            ) -> AsyncIterator[Any]:
                await admit(context)
                async for response in behavior(request, context):
                    yield response

            return streaming

        async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            await admit(context)
            result = behavior(request, context)
            return await result if inspect.isawaitable(result) else result

        return call
