"""Exact Sentinel semantics behind Envoy: an ``ext_proc`` service running the SDK's engine.

With ``opensergo sidecar --engine ext_proc`` the inbound listener sends every request's headers
and response headers to this service (one gRPC stream per request) instead of enforcing the
rules with Envoy's own filters:

* request headers: the request is named as the SDK names it (``METHOD:/path``; a rule target
  with ``{x}``/``<x>`` segments names every path it matches) and admitted by ``Engine.aentry``:
  sliding-window rate limits, throttling (queueing), concurrency, circuit breakers with their
  open/half-open states and slow-request ratios, adaptive protection. A blocked request gets the
  rule's fallback response (or the SDK's default 429) as an ImmediateResponse.
* response headers: the entry exits, a status >= 500 counting as an error, as the ASGI
  middleware counts it. A stream that ends before the response (a reset) exits without error.

The engine is fed by the same subscriptions as an SDK app (governance.runtime.attach).
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as ep

from opensergo.governance.blocking import DEFAULT_BLOCK_RESPONSE, ErrorStatus, block_response
from opensergo.governance.errors import BlockedError
from opensergo.governance.faulttolerance.engine import Engine
from opensergo.spec.faulttolerance import FaultToleranceRule

log = logging.getLogger(__name__)

_TEMPLATE = re.compile(r"\{[^/{}]*\}|<[^/<>]*>")
RULE_KIND = "fault-tolerance.opensergo.io/v1alpha1/FaultToleranceRule"


class ResourceNames:
    """Request (method, path) -> the resource name a rule targets, else ``METHOD:path``."""

    def __init__(self, rules: Callable[[], list[Any]]) -> None:
        self._rules = rules
        self._seen: tuple[int, ...] = ()
        self._templates: list[tuple[str, re.Pattern[str], str]] = []

    def _refresh(self) -> None:
        rules = self._rules()
        identity = tuple(id(r) for r in rules)
        if identity == self._seen:
            return
        templates = []
        for rule in rules:
            if not isinstance(rule, FaultToleranceRule):
                continue
            for target in rule.spec.targets:
                method, sep, path = target.targetResourceName.partition(":")
                if sep and path.startswith("/") and _TEMPLATE.search(path):
                    regex = "[^/]+".join(re.escape(p) for p in _TEMPLATE.split(path))
                    templates.append((method.upper(), re.compile(regex), target.targetResourceName))
        self._templates, self._seen = templates, identity

    def name(self, method: str, path: str) -> str:
        self._refresh()
        for wanted, pattern, resource in self._templates:
            if wanted == method and pattern.fullmatch(path):
                return resource
        if path.count("/") >= 2 and path[1:].split("/", 1)[0].count("."):
            return path  # a gRPC method, named as the gRPC server interceptor names it
        return f"{method}:{path}"


def _headers(message: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for header in message.headers.headers:
        out[header.key] = header.raw_value.decode(errors="replace") if header.raw_value else header.value
    return out


class EngineProcessor:
    """The ``envoy.service.ext_proc.v3.ExternalProcessor`` service."""

    def __init__(self, engine: Engine, names: ResourceNames) -> None:
        self.engine = engine
        self.names = names
        self.requests = 0
        self.blocked = 0

    def rpc_handler(self) -> grpc.GenericRpcHandler[Any, Any]:
        method = grpc.stream_stream_rpc_method_handler(
            self.Process,
            request_deserializer=ep.ProcessingRequest.FromString,
            response_serializer=ep.ProcessingResponse.SerializeToString,
        )
        return grpc.method_handlers_generic_handler(
            "envoy.service.ext_proc.v3.ExternalProcessor", {"Process": method}
        )

    async def Process(
        self, requests: AsyncIterator[ep.ProcessingRequest], context: Any
    ) -> AsyncIterator[ep.ProcessingResponse]:
        entry = None
        resource = ""
        try:
            async for request in requests:
                kind = request.WhichOneof("request")
                if kind == "request_headers":
                    headers = _headers(request.request_headers)
                    path = headers.get(":path", "/").split("?", 1)[0]
                    resource = self.names.name(headers.get(":method", "GET").upper(), path)
                    self.requests += 1
                    try:
                        entry = await self.engine.aentry(resource)
                    except BlockedError as blocked:
                        self.blocked += 1
                        yield _immediate(blocked)
                        return
                    yield ep.ProcessingResponse(request_headers=ep.HeadersResponse())
                elif kind == "response_headers":
                    status = int(_headers(request.response_headers).get(":status", "0") or 0)
                    if entry is not None:
                        entry.exit(ErrorStatus(status, resource) if status >= 500 else None)
                        entry = None
                    yield ep.ProcessingResponse(response_headers=ep.HeadersResponse())
        finally:
            if entry is not None:
                entry.exit(None)


def _immediate(blocked: BlockedError) -> ep.ProcessingResponse:
    response = block_response(blocked, DEFAULT_BLOCK_RESPONSE)
    immediate = ep.ImmediateResponse(body=response.body_bytes)
    immediate.status.code = response.status
    for key, value in (("content-type", "text/plain; charset=utf-8"), *response.headers):
        immediate.headers.set_headers.append(
            base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=key.lower(), raw_value=value.encode()))
        )
    return ep.ProcessingResponse(immediate_response=immediate)


class EngineServer:
    """The processor on its own thread and event loop, listening on 127.0.0.1:``port`` (0: any)."""

    def __init__(self, processor: EngineProcessor, port: int = 0) -> None:
        self.processor = processor
        self.port = port
        self._loop = asyncio.new_event_loop()
        self._server: grpc.aio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="opensergo-ext-proc", daemon=True)

    def start(self) -> int:
        self._thread.start()
        return asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=10)

    async def _start(self) -> int:
        self._server = grpc.aio.server()
        self._server.add_generic_rpc_handlers((self.processor.rpc_handler(),))
        self.port = self._server.add_insecure_port(f"127.0.0.1:{self.port}")
        await self._server.start()
        return self.port

    def stop(self) -> None:
        if self._server is not None:
            asyncio.run_coroutine_threadsafe(self._server.stop(0.5), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
