"""Test doubles and helpers for the client tests: a scripted control plane on a real grpc.aio server.

The fake control plane is a test double implementing the OpenSergoUniversalTransportService and
MetadataService servicers on a real grpc.aio server bound to 127.0.0.1 port 0. It runs on its own
thread and event loop, so sync tests and asyncio tests can both drive it, and it lets each test craft
the exact wire sequence it needs (pushes, control-plane replies, malformed payloads, restarts), and
inspect every request the client sent.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import grpc
import grpc.aio
from google.protobuf import any_pb2, json_format, struct_pb2

from opensergo.client import OpenSergoClient
from opensergo.proto.ext.v1 import resource_pb2
from opensergo.proto.fault_tolerance.v1 import fault_tolerance_pb2 as ft
from opensergo.proto.service_contract.v1 import service_contract_pb2 as sc
from opensergo.proto.service_contract.v1 import service_contract_pb2_grpc as sc_grpc
from opensergo.proto.transport.v1 import protocol_pb2 as pb
from opensergo.proto.transport.v1 import protocol_pb2_grpc as pb_grpc
from opensergo.spec.base import Resource

T = TypeVar("T")

RLS = "fault-tolerance.opensergo.io/v1alpha1/RateLimitStrategy"
FTR = "fault-tolerance.opensergo.io/v1alpha1/FaultToleranceRule"
TR = "traffic.opensergo.io/v1alpha1/TrafficRouter"
NATIVE_TYPE_URL = "type.googleapis.com/opensergo.ext.v1.Resource"


# -- polling helpers (synchronise on conditions, never on bare sleeps) ---------------------------
def wait_until(predicate: Callable[[], T], timeout: float = 5.0, message: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(0.005)


async def await_until(predicate: Callable[[], T], timeout: float = 5.0, message: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        await asyncio.sleep(0.005)


# -- payload helpers -----------------------------------------------------------------------------
def native_any(
    name: str,
    spec: Mapping[str, Any] | None = None,
    *,
    kind: str = "RateLimitStrategy",
    api_version: str = "fault-tolerance.opensergo.io/v1alpha1",
    namespace: str = "default",
    app: str = "foo-app",
    resource_version: int = 1,
) -> any_pb2.Any:
    """A full-fidelity ``opensergo.ext.v1.Resource`` payload, as our control plane sends it."""
    spec_struct = struct_pb2.Struct()
    spec_struct.update(dict(spec or {"threshold": 10}))
    message = resource_pb2.Resource(
        api_version=api_version,
        kind=kind,
        name=name,
        namespace=namespace,
        labels={"app": app},
        resource_version=resource_version,
        spec=spec_struct,
    )
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def upstream_rls_any(name: str, threshold: int = 10) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(ft.RateLimitStrategy(name=name, threshold=threshold, stat_duration=1))
    return packed


def bad_any() -> any_pb2.Any:
    return any_pb2.Any(type_url="type.googleapis.com/no.such.Message", value=b"\x01\x02")


def push(
    kind: str,
    version: int | None,
    items: list[any_pb2.Any] | None = None,
    *,
    namespace: str = "default",
    app: str = "foo-app",
    response_id: str = "",
    ack: str = "",
    code: int = 1,
) -> pb.SubscribeResponse:
    """A SubscribeResponse; ``version=None`` leaves out dataWithVersion entirely."""
    response = pb.SubscribeResponse(
        status=pb.Status(code=code, message="Get and send rule success"),
        ack=ack,
        namespace=namespace,
        app=app,
        kind=kind,
        control_plane=pb.ControlPlaneDesc(identifier="osg-test"),
        response_id=response_id,
    )
    if version is not None:
        response.dataWithVersion.CopyFrom(pb.DataWithVersion(data=items or [], version=version))
    return response


def fake_decoder(any_: any_pb2.Any, /, *, kind: Any, namespace: str, app: str, index: int = 0) -> Resource:
    """A stand-in for opensergo.spec.codec.decode, so these tests do not depend on the spec package."""
    if any_.type_url == NATIVE_TYPE_URL:
        native = resource_pb2.Resource()
        if not any_.Unpack(native):
            raise ValueError("cannot unpack opensergo.ext.v1.Resource")
        return Resource(
            apiVersion=native.api_version,
            kind=native.kind,
            metadata={
                "name": native.name,
                "namespace": native.namespace or namespace,
                "labels": dict(native.labels),
            },
            spec=json_format.MessageToDict(native.spec),
        )
    if any_.type_url.endswith("/io.opensergo.proto.fault_tolerance.v1.RateLimitStrategy"):
        rls = ft.RateLimitStrategy()
        if not any_.Unpack(rls):
            raise ValueError("cannot unpack RateLimitStrategy")
        return Resource(
            apiVersion="fault-tolerance.opensergo.io/v1alpha1",
            kind="RateLimitStrategy",
            metadata={"name": rls.name, "namespace": namespace, "labels": {"app": app}},
            spec={"threshold": rls.threshold},
        )
    raise ValueError(f"unsupported payload type {any_.type_url!r}")


def fake_parser(data: Mapping[str, Any]) -> Resource:
    return Resource.model_validate(dict(data))


# -- the fake control plane ---------------------------------------------------------------------
class FakeStream:
    def __init__(self, index: int, loop: asyncio.AbstractEventLoop) -> None:
        self.index = index
        self.received: list[pb.SubscribeRequest] = []
        self.outbox: asyncio.Queue[pb.SubscribeResponse | None] = asyncio.Queue()
        self.closed = False
        self._loop = loop

    @property
    def subscribes(self) -> list[pb.SubscribeRequest]:
        return [r for r in list(self.received) if not r.response_ack]

    @property
    def replies(self) -> list[pb.SubscribeRequest]:
        return [r for r in list(self.received) if r.response_ack]


class _Transport(pb_grpc.OpenSergoUniversalTransportServiceServicer):
    def __init__(self, cp: FakeControlPlane) -> None:
        self.cp = cp

    async def SubscribeConfig(self, request_iterator: Any, context: Any) -> None:
        stream = self.cp._new_stream()

        async def read() -> None:
            async for request in request_iterator:
                stream.received.append(request)
                hook = self.cp.on_subscribe
                if hook is not None and not request.response_ack:
                    for response in hook(request):
                        stream.outbox.put_nowait(response)

        reader = asyncio.ensure_future(read())
        getter: asyncio.Future[pb.SubscribeResponse | None] | None = None
        try:
            while True:
                getter = asyncio.ensure_future(stream.outbox.get())
                done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    return
                response = getter.result()
                if response is None:
                    return
                await context.write(response)
        finally:
            stream.closed = True
            for task in (getter, reader):
                if task is not None:
                    task.cancel()
            await asyncio.gather(*(t for t in (getter, reader) if t is not None), return_exceptions=True)


class _Metadata(sc_grpc.MetadataServiceServicer):
    def __init__(self, cp: FakeControlPlane) -> None:
        self.cp = cp

    async def ReportMetadata(self, request: sc.ReportMetadataRequest, context: Any) -> sc.ReportMetadataReply:
        self.cp.reports.append((time.monotonic(), request))
        return sc.ReportMetadataReply()


class FakeControlPlane:
    def __init__(self, *, metadata: bool = True) -> None:
        self.metadata = metadata
        self.streams: list[FakeStream] = []
        self.reports: list[tuple[float, sc.ReportMetadataRequest]] = []
        self.on_subscribe: Callable[[pb.SubscribeRequest], list[pb.SubscribeResponse]] | None = None
        self.port: int | None = None
        self._server: grpc.aio.Server | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-control-plane", daemon=True)
        self._thread.start()

    # thread-safe entry points
    def _call(self, coro: Awaitable[T], timeout: float = 10.0) -> T:
        async def wrapper() -> T:
            return await coro

        return asyncio.run_coroutine_threadsafe(wrapper(), self._loop).result(timeout)

    @property
    def endpoint(self) -> str:
        assert self.port is not None
        return f"127.0.0.1:{self.port}"

    def start(self, port: int = 0) -> int:
        self.port = self._call(self._start(port))
        return self.port

    async def _start(self, port: int) -> int:
        server = grpc.aio.server()
        pb_grpc.add_OpenSergoUniversalTransportServiceServicer_to_server(_Transport(self), server)  # type: ignore[no-untyped-call]
        if self.metadata:
            sc_grpc.add_MetadataServiceServicer_to_server(_Metadata(self), server)  # type: ignore[no-untyped-call]
        bound = server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        self._server = server
        return bound

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            self._call(server.stop(None))

    def close(self) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()

    def _new_stream(self) -> FakeStream:
        stream = FakeStream(len(self.streams), self._loop)
        self.streams.append(stream)
        return stream

    def push(self, response: pb.SubscribeResponse, stream: int = -1) -> None:
        target = self.streams[stream]
        self._loop.call_soon_threadsafe(target.outbox.put_nowait, response)

    def end_stream(self, stream: int = -1) -> None:
        target = self.streams[stream]
        self._loop.call_soon_threadsafe(target.outbox.put_nowait, None)

    # queries
    def wait_stream(self, count: int = 1, timeout: float = 5.0) -> FakeStream:
        wait_until(lambda: len(self.streams) >= count, timeout, f"{count} stream(s)")
        return self.streams[count - 1]

    def wait_subscribes(
        self, stream: FakeStream, count: int, timeout: float = 5.0
    ) -> list[pb.SubscribeRequest]:
        def enough() -> list[pb.SubscribeRequest]:
            found = stream.subscribes
            return found if len(found) >= count else []

        return wait_until(enough, timeout, f"{count} subscribe(s)")

    def wait_reply(self, stream: FakeStream, request_id: str, timeout: float = 5.0) -> pb.SubscribeRequest:
        def find() -> pb.SubscribeRequest | None:
            for reply in stream.replies:
                if reply.request_id == request_id:
                    return reply
            return None

        found = wait_until(find, timeout, f"a reply with request_id {request_id!r}")
        assert found is not None
        return found


ClientFactory = Callable[..., OpenSergoClient]
