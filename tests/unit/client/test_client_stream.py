"""The client against a scripted control plane over a real gRPC stream (see conftest.FakeControlPlane)."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from opensergo.client import Codec, Heartbeat, InstanceInfo, OpenSergoClient, ServiceInfo, Snapshot
from opensergo.common.protocol import Encoding
from opensergo.proto.transport.v1 import protocol_pb2 as pb
from opensergo.spec.base import Resource
from tests.helpers import free_port
from tests.unit.client.client_fakes import (
    FTR,
    RLS,
    TR,
    ClientFactory,
    FakeControlPlane,
    await_until,
    bad_any,
    fake_decoder,
    fake_parser,
    native_any,
    push,
    upstream_rls_any,
    wait_until,
)

pytestmark = [pytest.mark.unit, pytest.mark.timeout(30)]


class Recorder:
    """A subscription callback that records (names, version) and the thread it ran on."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.calls: list[tuple[list[str], int]] = []
        self.threads: set[str] = set()
        self.fail = fail

    def __call__(self, resources: list[Resource], version: int) -> None:
        self.calls.append(([r.name for r in resources], version))
        self.threads.add(threading.current_thread().name)
        if self.fail is not None:
            raise self.fail


def test_subscribe_message_shape(cp: FakeControlPlane, make_client: ClientFactory) -> None:
    client = make_client(cp.endpoint, identifier="host-1-abcdef12")
    client.subscribe(RLS)
    client.subscribe(FTR)
    with client:
        stream = cp.wait_stream()
        first, second = cp.wait_subscribes(stream, 2)[:2]
    assert [r.target.kinds[:] for r in (first, second)] == [[RLS], [FTR]]
    for request, rid in ((first, "1"), (second, "2")):
        assert request.identifier == "host-1-abcdef12"
        assert request.request_id == rid
        assert request.op_type == pb.SUBSCRIBE
        assert request.target.namespace == "default"
        assert request.target.app == "foo-app"
        assert [(kv.key, kv.value) for kv in request.target.labels] == [("opensergo.io/encoding", "native")]
        assert request.response_ack == ""
        assert not request.HasField("status")


def test_native_encoding_label_can_be_disabled(cp: FakeControlPlane, make_client: ClientFactory) -> None:
    client = make_client(
        cp.endpoint, codec=Codec(decoder=fake_decoder, parser=fake_parser, encoding=Encoding.UPSTREAM)
    )
    with client:
        client.subscribe(RLS)
        (request,) = cp.wait_subscribes(cp.wait_stream(), 1)
    assert list(request.target.labels) == []


def test_push_is_acked_with_response_id_and_applied(cp: FakeControlPlane, make_client: ClientFactory) -> None:
    recorder = Recorder()
    with make_client(cp.endpoint) as client:
        sub = client.subscribe(RLS, callback=recorder)
        stream = cp.wait_stream()
        (request,) = cp.wait_subscribes(stream, 1)
        cp.push(
            push(RLS, 3, [native_any("rls-a"), upstream_rls_any("rls-b")], response_id=request.request_id)
        )
        reply = cp.wait_reply(stream, request.request_id)
        assert reply.response_ack == "ACK"
        assert reply.status.code == 1
        assert reply.identifier == "test-client"
        assert not reply.HasField("target")
        assert [r.name for r in client.get(RLS)] == ["rls-a", "rls-b"]
        assert client.version(RLS) == 3
        assert sub.version == 3 and [r.name for r in sub.resources] == ["rls-a", "rls-b"]
        assert recorder.calls == [(["rls-a", "rls-b"], 3)]
        assert recorder.threads == {"opensergo-client-foo-app"}
        assert client.wait_synced(1)


def test_outdated_version_is_acked_4010_and_discarded(
    cp: FakeControlPlane, make_client: ClientFactory
) -> None:
    recorder = Recorder()
    with make_client(cp.endpoint) as client:
        client.subscribe(RLS, callback=recorder)
        stream = cp.wait_stream()
        cp.wait_subscribes(stream, 1)
        cp.push(push(RLS, 5, [native_any("new")], response_id="a"))
        cp.wait_reply(stream, "a")
        cp.push(push(RLS, 4, [native_any("old")], response_id="b"))
        reply = cp.wait_reply(stream, "b")
        assert (reply.response_ack, reply.status.code, reply.status.message) == (
            "ACK",
            4010,
            "outdated version",
        )
        assert [r.name for r in client.get(RLS)] == ["new"]
        assert client.version(RLS) == 5
        assert recorder.calls == [(["new"], 5)]


def test_equal_version_is_reapplied(cp: FakeControlPlane, make_client: ClientFactory) -> None:
    recorder = Recorder()
    with make_client(cp.endpoint) as client:
        client.subscribe(RLS, callback=recorder)
        stream = cp.wait_stream()
        cp.wait_subscribes(stream, 1)
        cp.push(push(RLS, 2, [native_any("first")], response_id="a"))
        cp.wait_reply(stream, "a")
        cp.push(push(RLS, 2, [native_any("second")], response_id="b"))
        reply = cp.wait_reply(stream, "b")
        assert (reply.response_ack, reply.status.code) == ("ACK", 1)
        assert [r.name for r in client.get(RLS)] == ["second"]
        assert recorder.calls == [(["first"], 2), (["second"], 2)]


def test_undecodable_payload_is_nacked_4001_cache_unchanged(
    cp: FakeControlPlane, make_client: ClientFactory
) -> None:
    recorder = Recorder()
    with make_client(cp.endpoint) as client:
        client.subscribe(RLS, callback=recorder)
        stream = cp.wait_stream()
        cp.wait_subscribes(stream, 1)
        cp.push(push(RLS, 1, [native_any("good")], response_id="a"))
        cp.wait_reply(stream, "a")
        cp.push(push(RLS, 2, [native_any("good-2"), bad_any()], response_id="b"))
        reply = cp.wait_reply(stream, "b")
        assert reply.response_ack == "NACK"
        assert reply.status.code == 4001
        assert "no.such.Message" in reply.status.message
        assert reply.request_id == "b" and reply.identifier == "test-client"
        assert [r.name for r in client.get(RLS)] == ["good"]
        assert client.version(RLS) == 1
        assert recorder.calls == [(["good"], 1)]


def test_failing_callback_is_nacked_4007_and_data_kept(
    cp: FakeControlPlane, make_client: ClientFactory
) -> None:
    good, bad = Recorder(), Recorder(fail=RuntimeError("engine rejected rule"))
    with make_client(cp.endpoint) as client:
        client.subscribe(RLS, callback=bad)
        client.subscribe(RLS, callback=good)
        stream = cp.wait_stream()
        cp.wait_subscribes(stream, 1)
        cp.push(push(RLS, 7, [native_any("r")], response_id="p"))
        reply = cp.wait_reply(stream, "p")
        assert (reply.response_ack, reply.status.code) == ("NACK", 4007)
        assert "engine rejected rule" in reply.status.message
        assert client.version(RLS) == 7 and [r.name for r in client.get(RLS)] == ["r"]
        assert good.calls == [(["r"], 7)] and bad.calls == [(["r"], 7)]
    # one SUBSCRIBE for the key even with two subscribers
    assert len(stream.subscribes) == 1


def test_control_plane_nack_reply_is_ignored(cp: FakeControlPlane, make_client: ClientFactory) -> None:
    with make_client(cp.endpoint) as client:
        client.subscribe(RLS)
        stream = cp.wait_stream()
        (request,) = cp.wait_subscribes(stream, 1)
        reply = pb.SubscribeResponse(
            status=pb.Status(code=4002, message="Request is invalid"),
            ack="NACK",
            response_id=request.request_id,
        )
        cp.push(reply)
        cp.push(pb.SubscribeResponse(status=pb.Status(code=1), ack="ACK", response_id="ok"))
        cp.push(push(RLS, 1, [native_any("r")], response_id="after"))
        cp.wait_reply(stream, "after")
        # The only reply the client sent is the ACK of the real push.
        assert [r.request_id for r in stream.replies] == ["after"]
        assert client.version(RLS) == 1


def test_nonempty_ack_with_other_code_is_treated_as_push(
    cp: FakeControlPlane, make_client: ClientFactory
) -> None:
    with make_client(cp.endpoint) as client:
        client.subscribe(RLS)
        stream = cp.wait_stream()
        cp.wait_subscribes(stream, 1)
        cp.push(push(RLS, 4, [native_any("r")], ack="NACK", code=200, response_id="x"))
        reply = cp.wait_reply(stream, "x")
        assert (reply.response_ack, reply.status.code) == ("ACK", 1)
        assert client.version(RLS) == 4


def test_push_without_data_with_version(cp: FakeControlPlane, make_client: ClientFactory) -> None:
    recorder = Recorder()
    with make_client(cp.endpoint) as client:
        client.subscribe(RLS, callback=recorder)
        stream = cp.wait_stream()
        cp.wait_subscribes(stream, 1)
        cp.push(push(RLS, None, code=500, response_id="a"))
        reply = cp.wait_reply(stream, "a")
        assert (reply.response_ack, reply.status.code) == ("ACK", 1)
        assert client.version(RLS) == 0 and client.get(RLS) == []
        assert recorder.calls == [([], 0)]
        # with something newer cached, the same push is outdated
        cp.push(push(RLS, 3, [native_any("r")], response_id="b"))
        cp.wait_reply(stream, "b")
        cp.push(push(RLS, None, code=500, response_id="c"))
        assert cp.wait_reply(stream, "c").status.code == 4010
        assert client.version(RLS) == 3


def test_unknown_kind_is_nacked_4000(cp: FakeControlPlane, make_client: ClientFactory) -> None:
    with make_client(cp.endpoint) as client:
        client.subscribe(RLS)
        stream = cp.wait_stream()
        cp.wait_subscribes(stream, 1)
        cp.push(push("RateLimitStrategy", 1, [native_any("r")], response_id="simple"))
        reply = cp.wait_reply(stream, "simple")
        assert (reply.response_ack, reply.status.code) == ("NACK", 4000)
        assert "RateLimitStrategy" in reply.status.message
        assert client.cache.keys() == []


def test_several_kinds_and_targets_on_one_stream(cp: FakeControlPlane, make_client: ClientFactory) -> None:
    rls, ftr, tr = Recorder(), Recorder(), Recorder()
    with make_client(cp.endpoint) as client:
        client.subscribe(RLS, callback=rls)
        client.subscribe(FTR, callback=ftr)
        client.subscribe(TR, app="service-provider", namespace="prod", callback=tr)
        stream = cp.wait_stream()
        requests = cp.wait_subscribes(stream, 3)
        targets = sorted((r.target.namespace, r.target.app, r.target.kinds[0]) for r in requests)
        assert targets == sorted(
            [("default", "foo-app", RLS), ("default", "foo-app", FTR), ("prod", "service-provider", TR)]
        )
        assert all(len(r.target.kinds) == 1 for r in requests)
        cp.push(push(RLS, 1, [native_any("a")], response_id="1"))
        cp.push(push(FTR, 2, [native_any("b", kind="FaultToleranceRule")], response_id="2"))
        tr_item = native_any("sp", kind="TrafficRouter", api_version="traffic.opensergo.io/v1alpha1")
        cp.push(push(TR, 9, [tr_item], namespace="prod", app="service-provider", response_id="3"))
        for rid in ("1", "2", "3"):
            assert cp.wait_reply(stream, rid).status.code == 1
        assert (rls.calls, ftr.calls, tr.calls) == ([(["a"], 1)], [(["b"], 2)], [(["sp"], 9)])
        assert client.get(TR, app="service-provider", namespace="prod")[0].name == "sp"
        assert client.get(TR) == []
        assert client.wait_synced(1)
    assert len(cp.streams) == 1


def test_unsubscribe_sends_unsubscribe(cp: FakeControlPlane, make_client: ClientFactory) -> None:
    with make_client(cp.endpoint) as client:
        first = client.subscribe(RLS)
        second = client.subscribe(RLS)
        stream = cp.wait_stream()
        cp.wait_subscribes(stream, 1)
        client.unsubscribe(first)  # another subscriber remains: nothing sent
        second.unsubscribe()
        requests = cp.wait_subscribes(stream, 2)
        assert len(requests) == 2
        unsub = requests[1]
        assert unsub.op_type == pb.UNSUBSCRIBE
        assert list(unsub.target.kinds) == [RLS]
        assert (unsub.target.namespace, unsub.target.app) == ("default", "foo-app")
        assert not first.active and not second.active
        second.unsubscribe()  # idempotent
        assert client.subscriptions() == []


def test_reconnect_with_backoff_resubscribes_every_key(
    cp: FakeControlPlane, make_client: ClientFactory
) -> None:
    recorder = Recorder()
    with make_client(cp.endpoint) as client:
        client.subscribe(RLS, callback=recorder)
        client.subscribe(TR, app="service-provider")
        stream = cp.wait_stream()
        cp.wait_subscribes(stream, 2)
        cp.push(push(RLS, 5, [native_any("before")], response_id="a"))
        cp.wait_reply(stream, "a")

        port = cp.port
        assert port is not None
        cp.stop()
        wait_until(lambda: not client.connected, message="the client to notice the outage")
        cp.start(port)
        new_stream = cp.wait_stream(2)
        requests = cp.wait_subscribes(new_stream, 2)
        assert sorted((r.target.app, r.target.kinds[0]) for r in requests) == [
            ("foo-app", RLS),
            ("service-provider", TR),
        ]
        assert all(r.identifier == "test-client" for r in requests)
        assert int(requests[0].request_id) > 2  # the request counter keeps counting across streams
        # the cache survived the reconnect...
        assert client.version(RLS) == 5 and [r.name for r in client.get(RLS)] == ["before"]
        # ...but the first push on the new stream is authoritative even with a lower version (a
        # restarted upstream control plane counts from 1 again); after it, an older version on the
        # same stream is refused and a newer one applied
        cp.push(push(RLS, 4, [native_any("reset")], response_id="b"), stream=1)
        assert cp.wait_reply(new_stream, "b").status.code == 1
        cp.push(push(RLS, 3, [native_any("stale")], response_id="c"), stream=1)
        assert cp.wait_reply(new_stream, "c").status.code == 4010
        cp.push(push(RLS, 6, [native_any("after")], response_id="d"), stream=1)
        assert cp.wait_reply(new_stream, "d").status.code == 1
        assert recorder.calls == [(["before"], 5), (["reset"], 4), (["after"], 6)]
        assert client.streams_opened >= 2


def test_server_ending_the_stream_triggers_reconnect(
    cp: FakeControlPlane, make_client: ClientFactory
) -> None:
    with make_client(cp.endpoint) as client:
        client.subscribe(RLS)
        stream = cp.wait_stream()
        cp.wait_subscribes(stream, 1)
        cp.end_stream()
        cp.wait_subscribes(cp.wait_stream(2), 1)
        assert client.streams_opened >= 2


def test_rotates_through_endpoints(cp: FakeControlPlane, make_client: ClientFactory) -> None:
    dead = f"127.0.0.1:{free_port()}"
    with make_client([dead, cp.endpoint]) as client:
        client.subscribe(RLS)
        cp.wait_subscribes(cp.wait_stream(), 1)
        wait_until(lambda: client.connected, message="connected")
        assert client.endpoints == [dead, cp.endpoint]


def test_snapshot_written_then_served_while_control_plane_is_down(
    cp: FakeControlPlane, make_client: ClientFactory, tmp_path: Any
) -> None:
    snapshots = tmp_path / "snap"
    port = cp.port
    assert port is not None
    with make_client(cp.endpoint, snapshot=Snapshot(snapshots)) as first:
        first.subscribe(RLS)
        stream = cp.wait_stream()
        cp.wait_subscribes(stream, 1)
        cp.push(push(RLS, 3, [native_any("cached", {"threshold": 7})], response_id="a"))
        cp.wait_reply(stream, "a")
        path = first.snapshot_path
    assert path is not None
    assert path == snapshots / "default" / "foo-app.json"
    document = json.loads(path.read_text())
    (entry,) = document["entries"]
    assert (entry["namespace"], entry["app"], entry["kind"], entry["version"]) == (
        "default",
        "foo-app",
        RLS,
        3,
    )
    assert entry["items"][0]["metadata"]["name"] == "cached"
    assert entry["items"][0]["spec"] == {"threshold": 7}
    assert [p.name for p in path.parent.iterdir()] == ["foo-app.json"]  # no temp files left

    cp.stop()
    recorder = Recorder()
    second = make_client(cp.endpoint, snapshot=Snapshot(snapshots))
    second.subscribe(RLS, callback=recorder)
    second.start()
    wait_until(lambda: recorder.calls, message="the snapshot delivery")
    assert recorder.calls == [(["cached"], 3)]
    assert second.version(RLS) == 3
    assert not second.wait_synced(0.05)  # snapshot data is not a live push
    late = Recorder()
    second.subscribe(RLS, callback=late)  # a later subscriber gets the cached data at once, too
    assert late.calls == [(["cached"], 3)]

    cp.start(port)
    stream = cp.wait_stream(2)
    cp.wait_subscribes(stream, 1)
    cp.push(push(RLS, 4, [native_any("live")], response_id="b"), stream=1)
    assert cp.wait_reply(stream, "b").status.code == 1
    assert recorder.calls[-1] == (["live"], 4)
    assert second.wait_synced(1)
    assert second.wait_for_version(RLS, 4, 1)
    second.stop()
    assert json.loads(path.read_text())["entries"][0]["version"] == 4


def test_corrupt_snapshot_is_ignored(cp: FakeControlPlane, make_client: ClientFactory, tmp_path: Any) -> None:
    snapshots = tmp_path / "snap"
    (snapshots / "default").mkdir(parents=True)
    (snapshots / "default" / "foo-app.json").write_text("{not json")
    recorder = Recorder()
    with make_client(cp.endpoint, snapshot=Snapshot(snapshots)) as client:
        client.subscribe(RLS, callback=recorder)
        stream = cp.wait_stream()
        cp.wait_subscribes(stream, 1)
        cp.push(push(RLS, 1, [native_any("r")], response_id="a"))
        cp.wait_reply(stream, "a")
        assert recorder.calls == [(["r"], 1)]
    assert json.loads((snapshots / "default" / "foo-app.json").read_text())["entries"][0]["version"] == 1


def test_wait_for_version_and_wait_synced(cp: FakeControlPlane, make_client: ClientFactory) -> None:
    with make_client(cp.endpoint) as client:
        client.subscribe(RLS)
        client.subscribe(FTR)
        stream = cp.wait_stream()
        cp.wait_subscribes(stream, 2)
        assert not client.wait_for_version(RLS, 1, 0.05)
        cp.push(push(RLS, 2, [native_any("a")]))
        assert client.wait_for_version(RLS, 2, 5)
        assert not client.wait_for_version(RLS, 3, 0.05)
        assert not client.wait_synced(0.05)
        cp.push(push(FTR, 1, []))
        assert client.wait_synced(5)


def test_sync_facade_lifecycle(cp: FakeControlPlane) -> None:
    client = OpenSergoClient(cp.endpoint, app="foo-app", snapshot=None, heartbeat=None)
    assert client.identifier.count("-") >= 2
    client.start()
    client.start()  # idempotent
    thread = client._loop.thread
    assert thread is not None and thread.is_alive() and thread.daemon
    client.subscribe(RLS)
    cp.wait_subscribes(cp.wait_stream(), 1)
    client.stop()
    client.stop()  # idempotent
    assert not thread.is_alive()
    wait_until(lambda: cp.streams[0].closed, message="the server to see the stream end")
    with pytest.raises(RuntimeError):
        client.start()
    with pytest.raises(RuntimeError):
        client.subscribe(RLS)


async def test_async_usage(cp: FakeControlPlane, tmp_path: Any) -> None:
    calls: list[tuple[list[str], int]] = []
    client = OpenSergoClient(
        cp.endpoint,
        app="foo-app",
        snapshot=Snapshot(tmp_path),
        codec=Codec(decoder=fake_decoder, parser=fake_parser),
        heartbeat=None,
    )
    async with client:
        assert client._loop.thread is None  # runs on this loop
        client.subscribe(
            RLS, callback=lambda items, version: calls.append(([r.name for r in items], version))
        )
        stream = await await_until(lambda: cp.streams[0] if cp.streams else None)
        assert stream is not None
        await await_until(lambda: stream.subscribes)
        cp.push(push(RLS, 1, [native_any("x")], response_id="r1"))
        assert await client.wait_for_version_async(RLS, 1, 5)
        assert await client.wait_synced_async(5)
        assert calls == [(["x"], 1)]
        await await_until(lambda: [r for r in stream.replies if r.request_id == "r1"])
        with pytest.raises(RuntimeError):
            client.wait_synced(0)  # would block the loop
    await await_until(lambda: stream.closed)
    assert not client.running


def test_report_metadata_at_start_and_on_heartbeat(cp: FakeControlPlane, make_client: ClientFactory) -> None:
    import os
    import socket

    service = ServiceInfo(protocols=["http"], listening_addresses=["10.0.0.5:8080", ("::1", 9090)])
    with make_client(
        cp.endpoint,
        heartbeat=Heartbeat(interval=0.2),
        service_metadata=[service],
        instance=InstanceInfo(tag="canary", cluster="c1", env="prod", region="r1", zone="z1"),
    ) as client:
        reporter = client.reporter
        assert reporter is not None
        # The server records a report before the client has read the reply: wait on both sides.
        wait_until(lambda: len(cp.reports) >= 2 and reporter.reports_ok >= 2, message="two reports")
    (t0, first), (t1, second) = cp.reports[:2]
    assert t1 - t0 >= 0.15
    assert first == second
    assert first.app_name == "foo-app"
    node = first.node
    assert node.identifier.host_name == socket.gethostname()
    assert node.identifier.pid == os.getpid()
    assert node.identifier.start_timestamp.seconds > 0
    assert (node.tag, node.cluster, node.env) == ("canary", "c1", "prod")
    assert (node.locality.region, node.locality.zone) == ("r1", "z1")
    (meta,) = first.service_metadata
    assert list(meta.protocols) == ["http"]
    assert [(a.address, a.port_value) for a in meta.listening_addresses] == [
        ("10.0.0.5", 8080),
        ("::1", 9090),
    ]


def test_report_metadata_failure_never_raises(make_client: ClientFactory) -> None:
    plane = FakeControlPlane(metadata=False)  # no MetadataService: UNIMPLEMENTED
    plane.start()
    try:
        with make_client(plane.endpoint, heartbeat=Heartbeat(interval=0.05)) as client:
            reporter = client.reporter
            assert reporter is not None
            wait_until(lambda: reporter.reports_failed >= 2, message="two failed reports")
            assert reporter.last_error is not None and "UNIMPLEMENTED" in reporter.last_error
            client.subscribe(RLS)
            plane.wait_subscribes(plane.wait_stream(), 1)
    finally:
        plane.close()


def test_subscribe_from_callback_does_not_deadlock(cp: FakeControlPlane, make_client: ClientFactory) -> None:
    nested: list[Any] = []
    with make_client(cp.endpoint) as client:

        def on_rls(items: list[Resource], version: int) -> None:
            nested.append(client.subscribe(FTR))

        client.subscribe(RLS, callback=on_rls)
        stream = cp.wait_stream()
        cp.wait_subscribes(stream, 1)
        cp.push(push(RLS, 1, [], response_id="a"))
        cp.wait_reply(stream, "a")
        requests = cp.wait_subscribes(stream, 2)
        assert requests[1].target.kinds[0] == FTR
        assert len(nested) == 1
