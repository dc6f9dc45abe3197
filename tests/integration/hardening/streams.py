"""A raw SubscribeConfig stream for the hardening tests (the requests an attacker can send)."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator

import grpc

from opensergo.proto.transport.v1 import protocol_pb2 as pb
from opensergo.proto.transport.v1 import protocol_pb2_grpc as pb_grpc


class RawStream:
    """A bidi stream driven by a queue, so a test can interleave sends and receives."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address)
        self.outbox: queue.Queue[pb.SubscribeRequest | None] = queue.Queue()
        self.inbox: queue.Queue[pb.SubscribeResponse] = queue.Queue()
        self.error: grpc.RpcError | None = None
        stub = pb_grpc.OpenSergoUniversalTransportServiceStub(self.channel)
        self.call = stub.SubscribeConfig(self._requests(), timeout=60)
        self.done = threading.Event()
        threading.Thread(target=self._pump, daemon=True).start()

    def _requests(self) -> Iterator[pb.SubscribeRequest]:
        while (item := self.outbox.get()) is not None:
            yield item

    def _pump(self) -> None:
        try:
            for response in self.call:
                self.inbox.put(response)
        except grpc.RpcError as err:
            self.error = err
        finally:
            self.done.set()

    def send(self, request: pb.SubscribeRequest) -> None:
        self.outbox.put(request)

    def recv(self, timeout: float = 10.0) -> pb.SubscribeResponse:
        return self.inbox.get(timeout=timeout)

    def recv_until(
        self, predicate: Callable[[pb.SubscribeResponse], bool], timeout: float = 10.0
    ) -> pb.SubscribeResponse:
        """The first response for which ``predicate(response)`` is true."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no matching response")
            response = self.recv(left)
            if predicate(response):
                return response

    def close(self) -> None:
        self.outbox.put(None)
        self.call.cancel()
        self.channel.close()


def subscribe(
    kinds: list[str], request_id: str, *, app: str = "foo-app", namespace: str = "default"
) -> pb.SubscribeRequest:
    return pb.SubscribeRequest(
        target=pb.SubscribeRequestTarget(namespace=namespace, app=app, kinds=kinds),
        op_type=pb.SUBSCRIBE,
        identifier="hardening-test-client",
        request_id=request_id,
    )
