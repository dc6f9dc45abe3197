"""Findings 8 and 9 on the gRPC port of a real control plane: one group that cannot be served
never stops a stream, and what one stream or peer can make the control plane hold is bounded."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from opensergo.controlplane.store.sqlite import SqliteStore
from opensergo.proto.transport.v1 import protocol_pb2 as pb
from tests.helpers import wait_until
from tests.integration.hardening.conftest import StartControlPlane
from tests.integration.hardening.streams import RawStream, subscribe

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

FT = "fault-tolerance.opensergo.io/v1alpha1"
RATE = f"{FT}/RateLimitStrategy"
CONC = f"{FT}/ConcurrencyLimitStrategy"


def _object(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": FT,
        "kind": kind,
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "foo-app"}},
        "spec": spec,
    }


async def _seed(data: Path) -> None:
    """What an older control plane accepted and stored: a window too long for the wire."""
    store = SqliteStore(data)
    await store.open()
    bad = _object("RateLimitStrategy", "too-long", {"threshold": 1, "statDuration": "99999999999999999999d"})
    await store.put(RATE, "default", "too-long", bad)
    good = _object("ConcurrencyLimitStrategy", "conc", {"maxConcurrency": 7})
    await store.put(CONC, "default", "conc", good)
    await store.close()


def test_a_group_that_cannot_be_encoded_does_not_stop_the_stream(
    start_cp: StartControlPlane, tmp_path: Path
) -> None:
    """Finding 8: encoding the rate-limit group failed, the stream's writer task died and the
    stream never got any other kind. Now the stored object is reported invalid (with its field)
    and every other group is still delivered."""
    data = tmp_path / "seeded"
    asyncio.run(_seed(data))
    cp = start_cp(data=data)
    stream = RawStream(cp.grpc_address)
    try:
        stream.send(subscribe([RATE, CONC], "1"))
        conc = stream.recv_until(lambda r: r.kind == CONC, timeout=15)
        assert conc.status.code in (1, 200) and len(conc.dataWithVersion.data) == 1
        # The stream still serves new subscriptions afterwards.
        stream.send(subscribe([CONC], "2", app="other-app"))
        other = stream.recv_until(lambda r: r.app == "other-app", timeout=15)
        assert other.kind == CONC
    finally:
        stream.close()
    invalid = httpx.get(f"{cp.http_url}/api/v1/snapshots").json()["invalid"]
    assert [i["name"] for i in invalid] == ["too-long"] and "spec.statDuration" in invalid[0]["error"]


def test_subscriptions_per_stream_are_bounded(start_cp: StartControlPlane) -> None:
    """Finding 9: 3,800 subscriptions were accepted on one stream. The default bound is 256:
    the rest get NACK 4002 and are not recorded."""
    cp = start_cp()
    stream = RawStream(cp.grpc_address)
    try:
        for i in range(300):
            stream.send(subscribe([CONC], str(i + 1), app=f"app-{i}"))
        answers = [stream.recv(timeout=20) for _ in range(300)]
    finally:
        stream.close()
    refused = [a for a in answers if a.ack == "NACK"]
    assert len(refused) == 300 - 256
    assert all(a.status.code == 4002 and "at most 256" in a.status.message for a in refused)
    metrics = httpx.get(f"{cp.http_url}/metrics").text
    assert "opensergo_subscriptions_refused_total 44.0" in metrics


def test_streams_per_peer_are_bounded(start_cp: StartControlPlane) -> None:
    """Finding 9: nothing bounded the streams one peer could hold open. Beyond
    --max-streams-per-peer a stream is refused with RESOURCE_EXHAUSTED; closing one frees a slot."""
    cp = start_cp("--max-streams-per-peer", "3")
    streams = [RawStream(cp.grpc_address) for _ in range(3)]
    try:
        for i, stream in enumerate(streams):
            stream.send(subscribe([CONC], "1", app=f"app-{i}"))
            stream.recv(timeout=15)
        extra = RawStream(cp.grpc_address)
        extra.send(subscribe([CONC], "1"))
        assert extra.done.wait(15)
        assert extra.error is not None and extra.error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        extra.close()
        streams.pop().close()
        again = RawStream(cp.grpc_address)
        streams.append(again)
        again.send(subscribe([CONC], "1"))
        assert again.recv(timeout=15).kind == CONC
    finally:
        for stream in streams:
            stream.close()


def test_nack_messages_are_cut_when_stored_and_logged(start_cp: StartControlPlane) -> None:
    """Finding 9: a 3 MB NACK message was stored (10 per subscription) and logged whole."""
    cp = start_cp()
    stream = RawStream(cp.grpc_address)
    huge = "x" * (3 << 20)
    try:
        stream.send(subscribe([CONC], "1"))
        push = stream.recv(timeout=15)
        for _ in range(3):
            stream.send(
                pb.SubscribeRequest(
                    response_ack="NACK",
                    request_id=push.response_id,
                    status=pb.Status(code=4000, message=huge),
                )
            )

        def recorded() -> dict[str, Any] | None:
            for client in httpx.get(f"{cp.http_url}/api/v1/clients").json()["items"]:
                for sub in client["subscriptions"]:
                    if len(sub["nacks"]) == 3:
                        return dict(sub)
            return None

        sub = wait_until(recorded, timeout=20, what="three NACKs recorded")
    finally:
        stream.close()
    assert all(len(n["message"]) < 1200 for n in sub["nacks"]) and len(sub["message"]) < 1200
    assert "more characters" in sub["message"]
    assert len(cp.logs()) < 200_000
