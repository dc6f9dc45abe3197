"""A ``grpc.aio`` client interceptor guarding outbound calls with the fault-tolerance engine.

::

    channel = grpc.aio.insecure_channel(target, interceptors=[AioGuardClientInterceptor()])

The asyncio twin of :class:`~opensergo.integrations.grpc_guard.GuardClientInterceptor`, with the
same semantics: one outbound entry of resource ``/package.Service/Method`` per call; a blocked
call raises :class:`~opensergo.governance.BlockedError` (when the call is awaited or iterated)
before anything is sent; the entry ends when the call does, a non-OK status counting as an error
(every code but OK, or only ``error_codes``). ``skip(method)`` True: the call is not guarded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

from opensergo.governance.api import default_engine
from opensergo.governance.faulttolerance.engine import Engine, Entry
from opensergo.integrations.grpc_guard import status_error

__all__ = ["AioGuardClientInterceptor"]


if TYPE_CHECKING:  # the stubs make them generic; the runtime classes are not subscriptable
    _Bases = (
        grpc.aio.UnaryUnaryClientInterceptor[Any, Any],
        grpc.aio.UnaryStreamClientInterceptor[Any, Any],
        grpc.aio.StreamUnaryClientInterceptor[Any, Any],
        grpc.aio.StreamStreamClientInterceptor[Any, Any],
    )
_BASES = (
    grpc.aio.UnaryUnaryClientInterceptor,
    grpc.aio.UnaryStreamClientInterceptor,
    grpc.aio.StreamUnaryClientInterceptor,
    grpc.aio.StreamStreamClientInterceptor,
)


class AioGuardClientInterceptor(*_BASES):  # type: ignore[misc]
    """Guards every call of the channels it is given to; see the module documentation."""

    def __init__(
        self,
        *,
        engine: Engine | None = None,
        resource: Callable[[str], str] | None = None,
        error_codes: Collection[grpc.StatusCode] | None = None,
        skip: Callable[[str], bool] | None = None,
    ) -> None:
        self.engine = engine if engine is not None else default_engine()
        self.skip = skip
        self.resource = resource
        self.error_codes = frozenset(error_codes) if error_codes is not None else None
        self._exits: set[asyncio.Task[None]] = set()

    async def _call(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        raw = details.method
        method = raw.decode() if isinstance(raw, bytes) else str(raw)
        if self.skip is not None and self.skip(method):
            return await continuation(details, request)
        name = self.resource(method) if self.resource is not None else method
        entry = self.engine.entry(name, inbound=False)
        try:
            call = await continuation(details, request)
        except BaseException as exc:
            entry.exit(exc)
            raise
        call.add_done_callback(lambda done: self._exit_when_settled(done, entry, name))
        return call

    def _exit_when_settled(self, call: Any, entry: Entry, name: str) -> None:
        # An aio call's status is read with a coroutine (ready at once: the call is done).
        task = asyncio.get_running_loop().create_task(self._exit(call, entry, name))
        self._exits.add(task)
        task.add_done_callback(self._exits.discard)

    async def _exit(self, call: Any, entry: Entry, name: str) -> None:
        try:
            code = await call.code()
        except BaseException:  # cancelled before a status: no error to count
            code = None
        entry.exit(status_error(code, name, self.error_codes))

    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await self._call(continuation, client_call_details, request)

    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return await self._call(continuation, client_call_details, request)

    async def intercept_stream_unary(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        return await self._call(continuation, client_call_details, request_iterator)

    async def intercept_stream_stream(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        return await self._call(continuation, client_call_details, request_iterator)
