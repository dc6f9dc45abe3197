"""Fan-out over real gRPC (in-process): a change push is one bytes object shared by every stream,
its response_id names the push and ACKs map back to (group, version); a burst of store events is
one push per stream; a mass disconnect triggers one memory reclaim."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from opensergo.common.protocol import Encoding
from opensergo.controlplane.reclaim import MemoryReclaimer
from opensergo.controlplane.snapshots import SnapshotCache
from opensergo.controlplane.store.base import EventType, StoredObject, WatchEvent
from opensergo.proto.transport.v1 import protocol_pb2 as pb
from tests.unit.controlplane.test_transport_bounds import RATE, Client, Server, _event

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]


def subscribe(request_id: str) -> pb.SubscribeRequest:
    target = pb.SubscribeRequestTarget(namespace="default", app="foo-app", kinds=[RATE])
    return pb.SubscribeRequest(target=target, identifier=f"c-{request_id}", request_id=request_id)


def ack(response: pb.SubscribeResponse) -> pb.SubscribeRequest:
    return pb.SubscribeRequest(response_ack="ACK", request_id=response.response_id, status=pb.Status(code=1))


async def test_a_change_push_is_one_shared_message_and_acks_map_back() -> None:
    async with Server() as server:
        clients = [Client(server.port) for _ in range(3)]
        for i, client in enumerate(clients):
            await client.send(subscribe(str(i)))
            initial = await client.recv()
            assert initial.response_id == str(i) and initial.status.code == 1  # the client's own id
        rendered: list[bytes] = []
        render = server.transport._render

        def spy(stream: Any, key: Any, request_id: str | None) -> bytes | None:
            data = render(stream, key, request_id)
            assert data is not None
            rendered.append(data)
            return data

        for stream in server.transport.clients():
            stream._render = spy
        server.snapshots.apply(_event(RATE, "r1", {"threshold": 5}, 7))
        pushes = [await client.recv() for client in clients]
        assert {p.dataWithVersion.version for p in pushes} == {7}
        assert len({p.response_id for p in pushes}) == 1 and pushes[0].response_id
        assert len(rendered) == 3 and all(r is rendered[0] for r in rendered)  # the same object
        for client, push in zip(clients, pushes, strict=True):
            await client.send(ack(push))

        async def acked() -> bool:
            while True:
                states = [s.subscriptions for s in server.transport.clients()]
                if all(next(iter(sub.values())).acked_version == 7 for sub in states):
                    return True
                await asyncio.sleep(0.02)

        assert await asyncio.wait_for(acked(), 10)
        for client in clients:
            await client.close()


async def test_a_burst_of_store_events_is_one_push_per_stream() -> None:
    async with Server() as server:
        client = Client(server.port)
        await client.send(subscribe("1"))
        await client.recv()

        class Burst:
            revision = 0

            async def watch(self, since: int) -> Any:
                for n in range(1, 201):
                    yield _event(RATE, f"r{n}", {"threshold": n}, n)
                await asyncio.sleep(3600)

        follow = asyncio.create_task(server.snapshots.follow(Burst()))  # type: ignore[arg-type]
        push = await client.recv()
        assert push.dataWithVersion.version == 200 and len(push.dataWithVersion.data) == 200
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(client.call.read(), 0.3)  # nothing for the 199 before it
        follow.cancel()
        await client.close()


def test_snapshots_encode_an_unchanged_object_once() -> None:
    cache = SnapshotCache()
    cache.apply(_event(RATE, "a", {"threshold": 1}, 1))
    first = cache.groups()[0].encoded(Encoding.UPSTREAM)
    cache.apply(_event(RATE, "b", {"threshold": 2}, 2))
    second = cache.groups()[0].encoded(Encoding.UPSTREAM)
    assert second[0] is first[0]  # "a" is not encoded again
    body = {"apiVersion": "x", "kind": "RateLimitStrategy", "metadata": {"name": "a"}, "spec": {}}
    cache.apply(WatchEvent(EventType.DELETED, StoredObject(RATE, "default", "a", body, 3), 3))
    assert len(cache._any) == 1  # the deleted object's encodings are dropped


async def test_a_mass_departure_is_reclaimed_once_after_a_pause() -> None:
    reclaimer = MemoryReclaimer(threshold=10, quiet=0.05)
    reclaimer.released(9)
    await asyncio.sleep(0.1)
    assert reclaimer.runs == 0  # too few to matter
    for _ in range(20):
        reclaimer.released()
        await asyncio.sleep(0.01)  # still departing: no collection in the middle
    assert reclaimer.runs == 0
    await asyncio.sleep(0.2)
    assert reclaimer.runs == 1
