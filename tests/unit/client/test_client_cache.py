"""Cache, on-disk snapshot, backoff and push handling without a network."""

from __future__ import annotations

import asyncio
import json
import random
import threading
from pathlib import Path
from typing import Any

import pytest

from opensergo.client import Backoff
from opensergo.client._spec import KindLike, RawKind, resolve_kind
from opensergo.client.cache import RuleCache
from opensergo.client.snapshot import SnapshotFile, default_snapshot_dir
from opensergo.client.subscriber import Callback, PushHandler, is_control_plane_reply
from opensergo.common.protocol import SubscriptionKey
from opensergo.proto.transport.v1 import protocol_pb2 as pb
from opensergo.spec.base import Resource
from tests.unit.client.client_fakes import RLS, bad_any, fake_decoder, fake_parser, native_any, push

pytestmark = [pytest.mark.unit, pytest.mark.timeout(10)]

KEY = SubscriptionKey("default", "foo-app", RLS)


def resource(name: str, threshold: int = 1) -> Resource:
    return Resource(
        apiVersion="fault-tolerance.opensergo.io/v1alpha1",
        kind="RateLimitStrategy",
        metadata={"name": name, "labels": {"app": "foo-app"}},
        spec={"threshold": threshold},
    )


def test_cache_queries() -> None:
    cache = RuleCache(namespace="default", app="foo-app")
    assert cache.get(RLS) == [] and cache.version(RLS) is None
    cache.put(KEY, 3, [resource("a"), resource("b")])
    assert [r.name for r in cache.get(RLS)] == ["a", "b"]
    assert [r.name for r in cache.get(RLS, namespace="default", app="foo-app")] == ["a", "b"]
    assert cache.get(RLS, app="other") == []
    assert cache.version(RLS) == 3
    assert cache.keys() == [KEY] and KEY in cache and len(cache) == 1
    entry = cache.entry(KEY)
    assert entry is not None and entry.live
    with pytest.raises(ValueError, match="required"):
        RuleCache().get(RLS)
    with pytest.raises(ValueError, match="unknown kind"):
        cache.get("NoSuchKind")


def test_snapshot_roundtrip_and_atomic_write(tmp_path: Path) -> None:
    cache = RuleCache(namespace="default", app="foo-app")
    cache.put(KEY, 4, [resource("a", 5)])
    cache.put(SubscriptionKey("prod", "bar", RLS), 1, [])
    snapshot = SnapshotFile(tmp_path, namespace="default", app="foo-app")
    snapshot.save(cache.to_snapshot())
    assert snapshot.path == tmp_path / "default" / "foo-app.json"
    assert sorted(p.name for p in snapshot.path.parent.iterdir()) == ["foo-app.json"]

    loaded = RuleCache(namespace="default", app="foo-app")
    document = snapshot.load()
    assert document is not None
    assert loaded.load_snapshot(document, fake_parser) == 2
    entry = loaded.entry(KEY)
    assert entry is not None and not entry.live and entry.version == 4
    assert entry.items[0].spec == {"threshold": 5}
    assert loaded.version(RLS, namespace="prod", app="bar") == 1


def test_snapshot_file_names_are_sanitised(tmp_path: Path) -> None:
    snapshot = SnapshotFile(tmp_path, namespace="..", app="a/b")
    assert snapshot.path.parent.parent == tmp_path
    assert snapshot.path.name == "a_b.json"


def test_corrupt_snapshot_is_logged_and_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    snapshot = SnapshotFile(tmp_path, namespace="default", app="foo-app")
    assert snapshot.load() is None  # nothing there yet
    snapshot.path.parent.mkdir(parents=True)
    snapshot.path.write_text("{truncated")
    assert snapshot.load() is None
    assert "corrupt snapshot" in caplog.text
    snapshot.path.write_text("[]")
    assert snapshot.load() is None


def test_bad_snapshot_entries_are_skipped(caplog: pytest.LogCaptureFixture) -> None:
    good = {"namespace": "default", "app": "foo-app", "kind": RLS, "version": 2, "items": []}
    document: dict[str, Any] = {
        "format": 1,
        "entries": [good, {"namespace": "x"}, {**good, "kind": "k/v/K", "items": [{"kind": 1}]}],
    }
    cache = RuleCache()
    assert cache.load_snapshot(document, fake_parser) == 1
    assert cache.keys() == [KEY]
    assert "snapshot entry 1 ignored" in caplog.text and "snapshot entry 2 ignored" in caplog.text
    with pytest.raises(ValueError, match="format"):
        cache.load_snapshot({"format": 99, "entries": []}, fake_parser)


def test_default_snapshot_dir(tmp_path: Path) -> None:
    assert default_snapshot_dir({"OPENSERGO_SNAPSHOT_DIR": str(tmp_path)}) == tmp_path
    assert default_snapshot_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "opensergo" / "snapshots"
    assert default_snapshot_dir({}) == Path.home() / ".cache" / "opensergo" / "snapshots"


def test_backoff_full_jitter() -> None:
    backoff = Backoff(initial=0.2, maximum=10.0, rng=random.Random(7))
    assert [backoff.ceiling(n) for n in range(8)] == [0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0]
    assert backoff.ceiling(10_000) == 10.0
    delays = [backoff.delay(3) for _ in range(200)]
    assert all(0 <= d <= 1.6 for d in delays) and max(delays) > 0.8 and min(delays) < 0.4
    with pytest.raises(ValueError):
        Backoff(initial=0)


def test_wait_until_wakes_threads_and_coroutines() -> None:
    cache = RuleCache(namespace="default", app="foo-app")
    results: list[bool] = []
    waiter = threading.Thread(target=lambda: results.append(cache.wait_until(lambda: KEY in cache, 5)))
    waiter.start()

    async def main() -> bool:
        task = asyncio.ensure_future(cache.wait_until_async(lambda: KEY in cache, 5))
        await asyncio.sleep(0)
        threading.Thread(target=cache.put, args=(KEY, 1, [])).start()
        return await task

    assert asyncio.run(main())
    waiter.join(5)
    assert results == [True]
    assert not cache.wait_until(lambda: False, 0.01)


def test_resolve_kind() -> None:
    assert resolve_kind(RLS).full_kind == RLS
    raw = RawKind("example.io/v1/Custom")
    assert resolve_kind(raw) is raw
    assert isinstance(raw, KindLike)
    with pytest.raises(ValueError, match="unknown kind"):
        resolve_kind("definitely-not-a-kind")


class Hooks:
    """PushHandler hooks recording what the handler asks for."""

    def __init__(self, callbacks: list[Callback] | None = None) -> None:
        self.callbacks = callbacks or []
        self.persisted = 0

    def resolve_push_kind(self, name: str) -> KindLike | None:
        return RawKind(name) if name == RLS else None

    def callbacks_for(self, key: SubscriptionKey) -> list[Callback]:
        return self.callbacks

    def persist(self) -> None:
        self.persisted += 1

    def describe_request(self, request_id: str) -> str:
        return "subscribe"


def handler(cache: RuleCache, hooks: Hooks) -> PushHandler:
    return PushHandler(cache=cache, identifier="me", decoder=fake_decoder, hooks=hooks)


def test_first_live_push_replaces_snapshot_data_even_with_lower_version() -> None:
    cache = RuleCache()
    cache.put(KEY, 9, [resource("from-snapshot")], live=False)
    hooks = Hooks()
    reply = handler(cache, hooks).handle(push(RLS, 2, [native_any("live")], response_id="r"))
    assert reply is not None and (reply.response_ack, reply.status.code, reply.request_id) == ("ACK", 1, "r")
    entry = cache.entry(KEY)
    assert entry is not None and entry.live and entry.version == 2
    assert [r.name for r in entry.items] == ["live"]
    assert hooks.persisted == 1
    # from now on the usual version check applies
    reply = handler(cache, hooks).handle(push(RLS, 1, [native_any("older")]))
    assert reply is not None and reply.status.code == 4010


def test_handler_replies() -> None:
    cache = RuleCache()
    hooks = Hooks()
    h = handler(cache, hooks)
    assert h.handle(pb.SubscribeResponse(ack="NACK", status=pb.Status(code=4002), response_id="1")) is None
    assert h.handle(pb.SubscribeResponse(ack="ACK", status=pb.Status(code=1))) is None
    reply = h.handle(push(RLS, 1, [bad_any()], response_id="x"))
    assert reply is not None and (reply.response_ack, reply.status.code) == ("NACK", 4001)
    assert not reply.HasField("target") and reply.identifier == "me"
    assert hooks.persisted == 0 and KEY not in cache
    reply = h.handle(push("other.io/v1/Thing", 1, []))
    assert reply is not None and (reply.response_ack, reply.status.code) == ("NACK", 4000)


def test_is_control_plane_reply() -> None:
    def response(ack: str, code: int) -> pb.SubscribeResponse:
        return pb.SubscribeResponse(ack=ack, status=pb.Status(code=code))

    assert is_control_plane_reply(response("NACK", 4002))
    assert is_control_plane_reply(response("ACK", 1))
    assert is_control_plane_reply(response("NACK", 4099))
    assert not is_control_plane_reply(response("NACK", 4100))
    assert not is_control_plane_reply(response("NACK", 500))
    assert not is_control_plane_reply(response("", 4002))


def test_snapshot_document_is_json(tmp_path: Path) -> None:
    cache = RuleCache()
    cache.put(KEY, 1, [resource("a")])
    text = json.dumps(cache.to_snapshot())
    assert json.loads(text)["entries"][0]["items"][0]["metadata"]["name"] == "a"
