"""SubscribeConfig streams that watch what the control plane pushes while the fuzzers run."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import grpc

from opensergo.common.protocol import ENCODING_LABEL, Encoding
from opensergo.proto.transport.v1 import protocol_pb2 as pb
from opensergo.proto.transport.v1 import protocol_pb2_grpc as pb_grpc
from opensergo.spec import kinds


class Watcher:
    """One stream subscribed to every kind of (namespace, app), collecting every response."""

    def __init__(self, address: str, namespace: str, app: str, encoding: Encoding) -> None:
        self.channel = grpc.insecure_channel(address)
        self.outbox: queue.Queue[pb.SubscribeRequest | None] = queue.Queue()
        self.responses: list[pb.SubscribeResponse] = []
        self.error: grpc.RpcError | None = None
        stub = pb_grpc.OpenSergoUniversalTransportServiceStub(self.channel)
        self.call = stub.SubscribeConfig(self._requests())
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()
        labels = [pb.SubscribeLabelKV(key=ENCODING_LABEL, value=encoding.value)]
        target = pb.SubscribeRequestTarget(
            namespace=namespace, app=app, kinds=[k.full_kind for k in kinds.all_kinds()], labels=labels
        )
        self.outbox.put(
            pb.SubscribeRequest(
                target=target, op_type=pb.SUBSCRIBE, identifier=f"fuzz-watch-{encoding.value}"
            )
        )

    def _requests(self) -> Iterator[pb.SubscribeRequest]:
        while (item := self.outbox.get()) is not None:
            yield item

    def _pump(self) -> None:
        try:
            for response in self.call:
                self.responses.append(response)
                if response.dataWithVersion.version:  # ACK each push, as an SDK does
                    self.outbox.put(
                        pb.SubscribeRequest(
                            response_ack="ACK", request_id=response.response_id, status=pb.Status(code=1)
                        )
                    )
        except grpc.RpcError as err:
            self.error = err

    def close(self) -> None:
        self.outbox.put(None)
        self.call.cancel()
        self.channel.close()
        self._thread.join(timeout=10)
