"""TransportService over real gRPC (in-process, loopback): an encode failure is a NACK for that
group only and is logged once; subscriptions and streams are bounded; NACK messages are cut."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from opensergo.common.protocol import Encoding
from opensergo.controlplane import snapshots as snapshots_module
from opensergo.controlplane.limits import Limits
from opensergo.controlplane.snapshots import SnapshotCache
from opensergo.controlplane.store.base import EventType, StoredObject, WatchEvent
from opensergo.controlplane.transport import TransportService, peer_host
from opensergo.proto.transport.v1 import protocol_pb2 as pb
from opensergo.proto.transport.v1 import protocol_pb2_grpc as pb_grpc
from opensergo.spec.base import Resource

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]

FT = "fault-tolerance.opensergo.io/v1alpha1"
RATE = f"{FT}/RateLimitStrategy"
CONC = f"{FT}/ConcurrencyLimitStrategy"


def _event(kind: str, name: str, spec: dict[str, Any], revision: int) -> WatchEvent:
    body = {
        "apiVersion": FT,
        "kind": kind.rsplit("/", 1)[1],
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "foo-app"}},
        "spec": spec,
    }
    return WatchEvent(EventType.ADDED, StoredObject(kind, "default", name, body, revision), revision)


class Server:
    def __init__(self, limits: Limits | None = None) -> None:
        self.snapshots = SnapshotCache()
        self.transport = TransportService(self.snapshots, "osg-unit", limits)
        self.server = grpc.aio.server()
        self.server.add_generic_rpc_handlers((self.transport.rpc_handler(),))
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    async def __aenter__(self) -> Server:
        await self.server.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.server.stop(None)


class Client:
    def __init__(self, port: int) -> None:
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        self.requests: asyncio.Queue[pb.SubscribeRequest | None] = asyncio.Queue()
        stub = pb_grpc.OpenSergoUniversalTransportServiceStub(self.channel)
        self.call = stub.SubscribeConfig(self._iterate())

    async def _iterate(self) -> AsyncIterator[pb.SubscribeRequest]:
        while (request := await self.requests.get()) is not None:
            yield request

    async def send(self, request: pb.SubscribeRequest) -> None:
        await self.requests.put(request)

    async def recv(self) -> pb.SubscribeResponse:
        response = await asyncio.wait_for(self.call.read(), 10)
        assert isinstance(response, pb.SubscribeResponse)
        return response

    async def close(self) -> None:
        await self.requests.put(None)
        self.call.cancel()
        await self.channel.close()


def subscribe(kinds: list[str], request_id: str, app: str = "foo-app") -> pb.SubscribeRequest:
    target = pb.SubscribeRequestTarget(namespace="default", app=app, kinds=kinds)
    return pb.SubscribeRequest(target=target, request_id=request_id, identifier="unit-client")


async def test_an_encode_failure_is_a_nack_for_its_group_only(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    encode = snapshots_module._encode

    def failing(resource: Resource, encoding: Encoding) -> Any:
        if resource.metadata.name == "bad":
            raise ValueError("Value out of range: 86400000000000000000000")
        return encode(resource, encoding)

    monkeypatch.setattr(snapshots_module, "_encode", failing)
    caplog.set_level(logging.ERROR, logger="opensergo.controlplane.snapshots")
    async with Server() as server:
        server.snapshots.apply(_event(RATE, "bad", {"threshold": 1, "statDurationSeconds": 1}, 1))
        server.snapshots.apply(_event(CONC, "good", {"maxConcurrency": 3}, 2))
        clients = [Client(server.port) for _ in range(2)]
        try:
            for client in clients:
                await client.send(subscribe([RATE, CONC], "1"))
                answers = {r.kind: r for r in [await client.recv(), await client.recv()]}
                failed, pushed = answers[RATE], answers[CONC]
                assert failed.ack == "NACK" and failed.status.code == 4000
                assert "(bad)" in failed.status.message and "out of range" in failed.status.message
                assert pushed.ack == "" and len(pushed.dataWithVersion.data) == 1
            # The streams go on: a later change of the good group is pushed.
            server.snapshots.apply(_event(CONC, "good2", {"maxConcurrency": 4}, 3))
            for client in clients:
                assert len((await client.recv()).dataWithVersion.data) == 2
        finally:
            for client in clients:
                await client.close()
        states = {
            s.key.kind: s.last_response for c in server.transport.clients() for s in c.subscriptions.values()
        }
        assert states == {RATE: "failed", CONC: "pending"}
    assert len([r for r in caplog.records if "cannot encode" in r.getMessage()]) == 1


async def test_subscriptions_per_stream_and_nack_messages_are_bounded() -> None:
    limits = Limits(subscriptions_per_stream=3, nack_message_chars=10)
    async with Server(limits) as server:
        client = Client(server.port)
        try:
            await client.send(subscribe([RATE, CONC], "1"))
            first = [await client.recv(), await client.recv()]
            await client.send(subscribe([RATE, CONC], "2", app="other"))  # 4 > 3: refused whole
            refused = await client.recv()
            assert (
                refused.ack == "NACK"
                and refused.status.code == 4002
                and "at most 3" in refused.status.message
            )
            await client.send(subscribe([RATE, CONC], "3"))  # nothing new: fine
            assert (await client.recv()).ack == ""
            await client.send(
                pb.SubscribeRequest(
                    response_ack="NACK",
                    request_id=first[0].response_id,
                    status=pb.Status(code=4000, message="y" * 50),
                )
            )
            await asyncio.sleep(0.2)
        finally:
            await client.close()
        [stream] = server.transport.clients()
        assert len(stream.subscriptions) == 2
        nacked = [s for s in stream.subscriptions.values() if s.last_response == "nacked"]
        assert nacked and nacked[0].last_message == "yyyyyyyyyy... (40 more characters)"
        assert server.transport.refused_subscriptions == 1


async def test_streams_per_peer_are_bounded() -> None:
    async with Server(Limits(streams_per_peer=2)) as server:
        clients: list[Client] = []
        try:
            for i in range(2):  # one after the other: the third must be the one refused
                clients.append(Client(server.port))
                await clients[-1].send(subscribe([CONC], "1", app=f"a{i}"))
                await clients[-1].recv()
            clients.append(Client(server.port))
            await clients[2].send(subscribe([CONC], "1"))
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await clients[2].recv()
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert server.transport.refused_streams == 1
        finally:
            for client in clients:
                await client.close()


class _Peer:
    def __init__(self, peer: str) -> None:
        self._peer = peer

    def peer(self) -> str:
        return self._peer


def test_peer_host() -> None:
    assert peer_host(_Peer("ipv4:10.0.0.7:51234")) == "10.0.0.7"
    assert peer_host(_Peer("ipv6:[::1]:51234")) == "::1"
    assert peer_host(_Peer("unix:/tmp/sock")) == "unix:/tmp/sock"
