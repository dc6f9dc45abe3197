"""``envoy.service.ratelimit.v3.RateLimitService`` backed by the token service.

A sidecar's inbound route for a resource under a Global RateLimitStrategy sends one descriptor
per strategy, with the entries ``namespace``, ``app``, ``resource`` and ``strategy`` (inbound.py).
Each descriptor is one lease of ``hits_addend`` tokens (1 by default) from the same sliding
window that SDK clients lease from (tokens.GlobalLimits), so Envoys and SDK instances of one app
share one cluster-wide threshold. A descriptor without a Global rule is OK (nothing to limit).

With auth on, the caller (the Envoy's credential: the ``authorization`` metadata the control
plane put in the filter's ``initial_metadata``, copied from its ADS stream, or its client
certificate) must be ``agent`` or ``admin`` in every descriptor's namespace; otherwise the call
ends ``PERMISSION_DENIED`` and nothing is leased (Envoy then fails open, as on any error).

With several control-plane replicas the window used is that of the replica the Envoy is
connected to (the SDK's token client is redirected to the key's owner; Envoy cannot be).
"""

from __future__ import annotations

from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.ratelimit.v3 import rls_pb2

from opensergo.controlplane.grpcauth import OPEN, Action, GrpcAuth
from opensergo.controlplane.tokens import GlobalLimits
from opensergo.controlplane.xds.inbound import BLOCKED_HEADER
from opensergo.proto.flowcontrol.v1 import token_pb2 as tk

_ENTRY_KEYS = ("namespace", "app", "resource", "strategy")
Response = rls_pb2.RateLimitResponse


class RateLimitService:
    def __init__(self, limits: GlobalLimits, auth: GrpcAuth = OPEN) -> None:
        self.limits = limits
        self.auth = auth

    def refusal(self, request: rls_pb2.RateLimitRequest) -> str | None:
        """Why the caller may not lease from some descriptor's namespace; None if it may."""
        if not self.auth.enabled:
            return None
        caller = self.auth.caller()
        namespaces = {
            entry.value for d in request.descriptors for entry in d.entries if entry.key == "namespace"
        }
        for namespace in sorted(namespaces):
            reason = self.auth.denial(caller, namespace, Action.RATE_LIMIT)
            if reason is not None:
                return reason
        return None

    def decide(self, request: rls_pb2.RateLimitRequest) -> rls_pb2.RateLimitResponse:
        hits = request.hits_addend or 1
        response = Response(overall_code=Response.OK)
        for descriptor in request.descriptors:
            entries = {entry.key: entry.value for entry in descriptor.entries}
            key = tuple(entries.get(name, "") for name in _ENTRY_KEYS)
            status = response.statuses.add(code=Response.OK)
            if not all(key):
                continue
            lease = self.limits.lease((key[0], key[1], key[2], key[3]), hits)
            if lease.code != tk.TokenResponse.OK:
                continue
            status.current_limit.requests_per_unit = lease.threshold
            status.current_limit.unit = Response.RateLimit.SECOND
            if lease.granted < hits:
                status.code = Response.OVER_LIMIT
                response.overall_code = Response.OVER_LIMIT
                response.response_headers_to_add.append(
                    base_pb2.HeaderValue(key=BLOCKED_HEADER, value=f"RateLimitStrategy/{key[3]}")
                )
        return response

    def rpc_handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        method = grpc.unary_unary_rpc_method_handler(
            self.ShouldRateLimit,
            request_deserializer=rls_pb2.RateLimitRequest.FromString,
            response_serializer=rls_pb2.RateLimitResponse.SerializeToString,
        )
        return grpc.method_handlers_generic_handler(
            "envoy.service.ratelimit.v3.RateLimitService", {"ShouldRateLimit": method}
        )

    async def ShouldRateLimit(
        self,
        request: rls_pb2.RateLimitRequest,
        context: grpc.aio.ServicerContext[rls_pb2.RateLimitRequest, rls_pb2.RateLimitResponse],
    ) -> rls_pb2.RateLimitResponse:
        refusal = self.refusal(request)
        if refusal is not None:
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, refusal)
        return self.decide(request)
