"""SubscribeConfig semantics with a raw gRPC stream: several kinds, UNSUBSCRIBE, ACK/NACK records."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import pytest

from opensergo.common.protocol import ENCODING_LABEL, Encoding
from opensergo.proto.ext.v1 import resource_pb2
from opensergo.proto.transport.v1 import protocol_pb2 as pb
from opensergo.proto.transport.v1 import protocol_pb2_grpc as pb_grpc
from tests.helpers import ControlPlaneProcess, put_object, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

FT = "fault-tolerance.opensergo.io/v1alpha1"
RATE = f"{FT}/RateLimitStrategy"
CONC = f"{FT}/ConcurrencyLimitStrategy"


class RawStream:
    """A bidi stream driven by a queue, so a test can interleave sends and receives."""

    def __init__(self, address: str, *, read: bool = True) -> None:
        """``read=False``: receive nothing until :meth:`start_reading` (a slow client; BDP
        probing off, so the HTTP/2 window stays at its initial 64 KiB and the server's writes
        block once it is full)."""
        self.channel = grpc.insecure_channel(address, options=[("grpc.http2.bdp_probe", 0)])
        self.outbox: queue.Queue[pb.SubscribeRequest | None] = queue.Queue()
        self.inbox: queue.Queue[pb.SubscribeResponse] = queue.Queue()
        stub = pb_grpc.OpenSergoUniversalTransportServiceStub(self.channel)
        self.call = stub.SubscribeConfig(self._requests(), timeout=60)
        if read:
            self.start_reading()

    def start_reading(self) -> None:
        threading.Thread(target=self._pump, daemon=True).start()

    def _requests(self) -> Iterator[pb.SubscribeRequest]:
        while (item := self.outbox.get()) is not None:
            yield item

    def _pump(self) -> None:
        try:
            for response in self.call:
                self.inbox.put(response)
        except grpc.RpcError:
            pass

    def send(self, request: pb.SubscribeRequest) -> None:
        self.outbox.put(request)

    def recv(self, timeout: float = 5.0) -> pb.SubscribeResponse:
        return self.inbox.get(timeout=timeout)

    def close(self) -> None:
        self.outbox.put(None)
        self.call.cancel()
        self.channel.close()


def subscribe(kinds: list[str], request_id: str, op: int = pb.SUBSCRIBE) -> pb.SubscribeRequest:
    return pb.SubscribeRequest(
        target=pb.SubscribeRequestTarget(namespace="default", app="foo-app", kinds=kinds),
        op_type=op,
        identifier="raw-test-client",
        request_id=request_id,
    )


def put(cp: ControlPlaneProcess, kind: str, name: str, spec: dict[str, Any]) -> int:
    body = {
        "apiVersion": FT,
        "kind": kind,
        "metadata": {"name": name, "labels": {"app": "foo-app"}},
        "spec": spec,
    }
    response = put_object(cp, body)
    assert response.status_code in (200, 201), response.text
    return int(response.json()["metadata"]["resourceVersion"])


def subscription_state(cp: ControlPlaneProcess, kind: str) -> dict[str, Any]:
    clients = httpx.get(cp.http_url + "/api/v1/clients", params={"connected": "true"}).json()["items"]
    [client] = [c for c in clients if c["identifier"] == "raw-test-client"]
    [state] = [s for s in client["subscriptions"] if s["kind"] == kind]
    return dict(state)


def test_several_kinds_unsubscribe_and_answers(control_plane: ControlPlaneProcess) -> None:
    stream = RawStream(control_plane.grpc_address)
    try:
        stream.send(subscribe([RATE, CONC], "1"))
        first = {stream.recv().kind, stream.recv().kind}
        assert first == {RATE, CONC}

        version = put(control_plane, "RateLimitStrategy", "rl", {"threshold": 5, "statDurationSeconds": 1})
        push = stream.recv()
        assert (push.kind, push.dataWithVersion.version, push.status.code) == (RATE, version, 200)
        assert push.response_id  # non-empty so that the ACK can be matched to this push
        stream.send(
            pb.SubscribeRequest(
                response_ack="ACK",
                request_id=push.response_id,
                status=pb.Status(code=1),
                identifier="raw-test-client",
            )
        )
        wait_until(
            lambda: subscription_state(control_plane, RATE)["ackedVersion"] == version, what="ACK recorded"
        )

        # A NACK (the Java SDK's form: no request_id) is recorded with its message.
        version = put(control_plane, "RateLimitStrategy", "rl", {"threshold": 6, "statDurationSeconds": 1})
        assert stream.recv().dataWithVersion.version == version
        stream.send(pb.SubscribeRequest(response_ack="NACK", status=pb.Status(code=4000, message="boom")))
        state = wait_until(
            lambda: (s := subscription_state(control_plane, RATE))["state"] == "nacked" and s,
            what="NACK recorded",
        )
        assert state["nacks"][-1] == {"version": version, "code": 4000, "message": "boom"}

        # UNSUBSCRIBE stops pushes for that kind only.
        stream.send(subscribe([RATE], "2", op=pb.UNSUBSCRIBE))
        wait_until(lambda: len(_kinds(control_plane)) == 1, what="unsubscribed")
        put(control_plane, "RateLimitStrategy", "rl", {"threshold": 7, "statDurationSeconds": 1})
        conc_version = put(control_plane, "ConcurrencyLimitStrategy", "cl", {"maxConcurrency": 3})
        push = stream.recv()
        assert (push.kind, push.dataWithVersion.version) == (CONC, conc_version)
        with pytest.raises(queue.Empty):
            stream.recv(timeout=0.5)
    finally:
        stream.close()


def _kinds(cp: ControlPlaneProcess) -> list[str]:
    clients = httpx.get(cp.http_url + "/api/v1/clients", params={"connected": "true"}).json()["items"]
    return [s["kind"] for c in clients if c["identifier"] == "raw-test-client" for s in c["subscriptions"]]


def test_two_anonymous_streams_both_get_change_pushes(control_plane: ControlPlaneProcess) -> None:
    # Go SDK streams carry no identifier; upstream registers only the first of them.
    streams = [RawStream(control_plane.grpc_address) for _ in range(2)]
    try:
        for s in streams:
            s.send(
                pb.SubscribeRequest(
                    target=pb.SubscribeRequestTarget(namespace="default", app="foo-app", kinds=[RATE])
                )
            )
            assert s.recv().kind == RATE
        version = put(
            control_plane, "RateLimitStrategy", "shared", {"threshold": 1, "statDurationSeconds": 1}
        )
        for s in streams:
            assert s.recv().dataWithVersion.version == version
    finally:
        for s in streams:
            s.close()


def test_a_slow_subscriber_gets_the_newest_snapshot_not_a_backlog(control_plane: ControlPlaneProcess) -> None:
    # Each push carries a 200 KB annotation (native encoding: the whole object), so the first one
    # fills the stream's 64 KiB window of a client that reads nothing, and the writer waits.
    annotations = {"padding": "x" * 200_000}

    def update(threshold: int) -> int:
        body = {
            "apiVersion": FT,
            "kind": "RateLimitStrategy",
            "metadata": {"name": "big", "labels": {"app": "foo-app"}, "annotations": annotations},
            "spec": {"threshold": threshold, "statDurationSeconds": 1},
        }
        response = put_object(control_plane, body)
        assert response.status_code in (200, 201), response.text
        return int(response.json()["metadata"]["resourceVersion"])

    first = update(0)
    stream = RawStream(control_plane.grpc_address, read=False)
    try:
        native = pb.SubscribeLabelKV(key=ENCODING_LABEL, value=Encoding.NATIVE.value)
        request = subscribe([RATE], "1")
        request.target.labels.append(native)
        stream.send(request)
        wait_until(lambda: subscription_state(control_plane, RATE)["pushedVersion"] == first, what="1st push")
        versions = [update(threshold) for threshold in range(1, 11)]  # ten snapshots, none read
        stream.start_reading()

        pushes = []
        while not pushes or pushes[-1][0] != versions[-1]:
            push = stream.recv(timeout=20)
            message = resource_pb2.Resource()
            [data] = push.dataWithVersion.data
            assert data.Unpack(message)
            pushes.append((push.dataWithVersion.version, message.spec["threshold"]))
        with pytest.raises(queue.Empty):  # and nothing queued behind the newest
            stream.recv(timeout=1)
        print(f"\nslow subscriber: 11 snapshots, {len(pushes)} pushes received: {pushes}")
        assert pushes[0] == (first, 0) and pushes[-1] == (versions[-1], 10)
        assert len(pushes) <= 3  # the initial push, at most one written before the window filled, the newest
    finally:
        stream.close()
