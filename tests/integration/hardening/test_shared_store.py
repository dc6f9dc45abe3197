"""What replicas share through a real etcd: the session key (a session opened on one replica works
on the other, its logout ends it on both), server values created once, and history reads and
replays that survive etcd's own compaction."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aetcd
import httpx
import pytest
import yaml

from opensergo.controlplane.store.base import Bookmark, WatchEvent
from opensergo.controlplane.store.etcd import EtcdStore, parse_endpoints
from tests.helpers import EtcdCluster
from tests.integration.hardening.conftest import StartControlPlane

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

FT = "fault-tolerance.opensergo.io/v1alpha1"
KIND = f"{FT}/RateLimitStrategy"
RL = f"/apis/{FT}/namespaces/default/ratelimitstrategies"
TOKENS = {"tokens": [{"name": "ops", "token": "ops-token-123", "roles": {"*": "admin"}}]}


def test_sessions_work_across_replicas_and_logout_ends_them_everywhere(
    etcd: EtcdCluster, start_cp: StartControlPlane, tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(yaml.safe_dump(TOKENS))
    flags = ("--store", etcd.url, "--auth", "on", "--auth-tokens", str(tokens))
    a, b = start_cp(*flags), start_cp(*flags)
    assert (a.data_dir / "session-key").read_text() == (b.data_dir / "session-key").read_text()
    login = httpx.post(f"{a.http_url}/api/v1/login", json={"token": "ops-token-123"})
    assert login.status_code == 200
    cookie = {"Cookie": f"osg_session={login.cookies['osg_session']}"}
    assert httpx.get(f"{b.http_url}{RL}", headers=cookie).status_code == 200
    csrf = {**cookie, "X-CSRF-Token": login.json()["csrfToken"]}
    assert httpx.post(f"{b.http_url}/api/v1/logout", headers=csrf).status_code == 200
    for replica in (a, b):
        assert httpx.get(f"{replica.http_url}{RL}", headers=cookie).status_code == 401


def body(threshold: int) -> dict[str, Any]:
    return {
        "apiVersion": FT,
        "kind": "RateLimitStrategy",
        "metadata": {"name": "rl", "labels": {"app": "a"}},
        "spec": {"threshold": threshold},
    }


async def test_server_values_and_compacted_history(etcd: EtcdCluster) -> None:
    endpoints = parse_endpoints(etcd.url)
    one, two = EtcdStore(endpoints), EtcdStore(endpoints)
    await one.open()
    await two.open()
    try:
        assert await one.get_or_create_value("k", "first") == "first"
        assert await two.get_or_create_value("k", "second") == "first"
        assert await two.get_value("k") == "first" and await two.get_value("missing") is None
        for i in range(5):
            await one.put(KIND, "default", "rl", body(i))
        latest = await one.get(KIND, "default", "rl")
        assert latest is not None
        async with aetcd.Client(*endpoints[0]) as client:
            await client.compact(latest.revision - 1)
        history = await one.history(KIND, "default", "rl")
        assert [e.object.body["spec"]["threshold"] for e in history] == [3, 4]
        replayed: list[WatchEvent] = []
        async for event in two.watch(0):
            if isinstance(event, Bookmark):
                break
            replayed.append(event)
        assert [(e.object.name, e.object.body["spec"]["threshold"]) for e in replayed] == [("rl", 4)]
    finally:
        await one.close()
        await two.close()
