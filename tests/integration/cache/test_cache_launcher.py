"""``opensergo-run`` governs the redis-py clients of an unmodified program: a CachePolicy applied
on a real control plane reaches them and hot reads stop reaching Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT, ControlPlaneProcess, put_object
from tests.integration.cache.redis_server import RedisServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

# Plain redis-py code. It reads the governed client's figures through duck typing only to
# report them; the reads themselves are ordinary redis-py calls.
PROGRAM = """
import asyncio, json, sys, time
import redis, redis.asyncio

port = int(sys.argv[1])
r = redis.Redis(port=port, client_name="products")
r.set("hot", "v")
deadline = time.monotonic() + 30
near = None
while time.monotonic() < deadline:  # until the pushed policy serves the hot key locally
    assert r.get("hot") == b"v"
    governor = getattr(r, "governor", None)
    near = governor.policy.near if governor is not None else None
    if near is not None and near.hits > 100:
        break
admin = redis.Redis(port=port)
before = admin.info("commandstats").get("cmdstat_get", {}).get("calls", 0)
for _ in range(5000):
    assert r.get("hot") == b"v"
after = admin.info("commandstats").get("cmdstat_get", {}).get("calls", 0)
async def async_type():
    client = redis.asyncio.Redis(port=port)
    await client.aclose()
    return type(client).__name__
print(json.dumps({
    "type": type(r).__name__, "asyncType": asyncio.run(async_type()),
    "isRedis": isinstance(r, redis.client.Redis), "issued": 5000, "serverGets": after - before,
    "nearHits": near.hits if near is not None else 0,
}))
"""

POLICY = {
    "apiVersion": "cache.opensergo.io/v1alpha1",
    "kind": "CachePolicy",
    "metadata": {"name": "products-policy", "namespace": "default", "labels": {"app": "shop"}},
    "spec": {
        "cacheNames": ["products"],
        "hotKey": {"threshold": 20, "window": "1s"},
        "nearCache": {"maxEntries": 100, "ttl": "30s"},
    },
}


def test_launcher_governs_redis_clients_without_code_change(
    control_plane: ControlPlaneProcess, redis_server: RedisServer
) -> None:
    assert put_object(control_plane, POLICY).status_code in (200, 201)
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "OPENSERGO_BOOTSTRAP_CONFIG": json.dumps({"endpoint": control_plane.grpc_address}),
        "OPENSERGO_METRICS": "0",
        "OPENSERGO_TRACES": "0",
    }
    done = subprocess.run(
        [sys.executable, "-m", "opensergo.launcher", "--app", "shop", "--",
         sys.executable, "-c", PROGRAM, str(redis_server.port)],
        capture_output=True, text=True, timeout=90, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["type"] == "AutoGovernedRedis" and report["isRedis"]
    assert report["asyncType"] == "AutoAsyncGovernedRedis"
    assert report["nearHits"] > 100
    assert report["serverGets"] <= report["issued"] * 0.10, report
