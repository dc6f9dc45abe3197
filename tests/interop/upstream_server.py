"""A scripted SubscribeConfig server that sends exactly what the test tells it to.

Why scripted and not our control plane: these tests must reproduce the *upstream Go* control
plane's wire behaviour (protocol.md §2.3-2.5: status 1 on the initial push, status 200 and an
empty response_id on change pushes, no initial push for a kind's first subscriber after a
restart, versions that restart from 1 with an unchanged identifier, its conversion bugs in the
payloads). Our control plane deliberately does none of that, and the upstream server (a Go
program needing Kubernetes) is not available here. A real grpc.aio server on a real socket keeps
the client's transport, reconnect and ACK path under test, unlike a mocked stream.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import grpc.aio

from opensergo.proto.transport.v1 import protocol_pb2 as pb
from opensergo.proto.transport.v1 import protocol_pb2_grpc as pb_grpc

_END = object()


class ScriptedStream:
    """One SubscribeConfig call as the server sees it."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.requests: list[pb.SubscribeRequest] = []
        self.lock = threading.Lock()
        self.outbox: asyncio.Queue[object] = asyncio.Queue()
        self.loop = loop
        self.ended = False

    def received(self) -> list[pb.SubscribeRequest]:
        with self.lock:
            return list(self.requests)

    def subscribes(self) -> list[pb.SubscribeRequest]:
        return [r for r in self.received() if not r.response_ack]

    def answers(self) -> list[pb.SubscribeRequest]:
        return [r for r in self.received() if r.response_ack]


class _Servicer(pb_grpc.OpenSergoUniversalTransportServiceServicer):
    def __init__(self, owner: ScriptedControlPlane) -> None:
        self.owner = owner

    async def SubscribeConfig(
        self, request_iterator: AsyncIterator[pb.SubscribeRequest], context: Any
    ) -> AsyncIterator[pb.SubscribeResponse]:
        stream = ScriptedStream(asyncio.get_running_loop())
        self.owner._add(stream)

        async def read() -> None:
            try:
                async for request in request_iterator:
                    with stream.lock:
                        stream.requests.append(request)
            except (grpc.aio.AioRpcError, asyncio.CancelledError):
                pass

        reader = asyncio.get_running_loop().create_task(read())
        try:
            while True:
                item = await stream.outbox.get()
                if item is _END:
                    return
                assert isinstance(item, pb.SubscribeResponse)
                yield item
        finally:
            stream.ended = True
            reader.cancel()


class ScriptedControlPlane:
    """A grpc.aio server on its own thread and event loop; restartable on the same port."""

    def __init__(self, identifier: str = "osg-upstream-host") -> None:
        self.identifier = identifier
        self.port: int | None = None
        self.streams: list[ScriptedStream] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: grpc.aio.Server | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _add(self, stream: ScriptedStream) -> None:
        with self._lock:
            self.streams.append(stream)

    def start(self, port: int = 0) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="scripted-control-plane", daemon=True)
        self._thread.start()

        async def serve() -> int:
            server = grpc.aio.server()
            pb_grpc.add_OpenSergoUniversalTransportServiceServicer_to_server(  # type: ignore[no-untyped-call]
                _Servicer(self), server
            )
            bound = server.add_insecure_port(f"127.0.0.1:{port}")
            await server.start()
            self._server = server
            return bound

        self.port = asyncio.run_coroutine_threadsafe(serve(), loop).result(10)

    def stop(self) -> None:
        """Stop the server (streams are cancelled, as when the process dies) and its loop."""
        loop, server = self._loop, self._server
        if loop is None or server is None:
            return
        asyncio.run_coroutine_threadsafe(server.stop(None), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        assert self._thread is not None
        self._thread.join(10)
        loop.close()
        self._loop = self._server = None

    # --- scripting -------------------------------------------------------------------------------

    def send(self, response: pb.SubscribeResponse, stream: ScriptedStream) -> None:
        stream.loop.call_soon_threadsafe(stream.outbox.put_nowait, response)

    def wait_stream(self, count: int = 1, timeout: float = 10.0) -> ScriptedStream:
        wait_for(lambda: len(self.streams) >= count, timeout, f"{count} stream(s)")
        return self.streams[count - 1]

    def wait_subscribe(self, stream: ScriptedStream, kind: str, timeout: float = 10.0) -> pb.SubscribeRequest:
        def found() -> pb.SubscribeRequest | None:
            for request in stream.subscribes():
                if kind in request.target.kinds:
                    return request
            return None

        request: pb.SubscribeRequest = wait_for(found, timeout, f"a subscribe for {kind}")
        return request

    def wait_answer(
        self, stream: ScriptedStream, count: int, timeout: float = 10.0
    ) -> list[pb.SubscribeRequest]:
        """Wait until the client has answered ``count`` pushes on ``stream``; returns all answers."""
        wait_for(lambda: len(stream.answers()) >= count, timeout, f"{count} ACK/NACK(s)")
        return stream.answers()

    def push(
        self,
        stream: ScriptedStream,
        *,
        kind: str,
        version: int,
        data: list[Any],
        status: int,
        response_id: str = "",
        namespace: str = "default",
        app: str = "foo-app",
    ) -> None:
        """A push shaped like the Go control plane's (status 1 initial, 200 on change)."""
        response = pb.SubscribeResponse(
            status=pb.Status(code=status, message="Get and send rule success"),
            ack="",
            namespace=namespace,
            app=app,
            kind=kind,
            dataWithVersion=pb.DataWithVersion(data=data, version=version),
            control_plane=pb.ControlPlaneDesc(identifier=self.identifier),
            response_id=response_id,
        )
        self.send(response, stream)


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
