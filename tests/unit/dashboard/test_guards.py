"""The request guard (Host names, body size) and the failed-login throttle."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI, Request

from opensergo.controlplane.api.guards import HostPolicy, RequestGuard
from opensergo.controlplane.api.throttle import FailureThrottle

pytestmark = pytest.mark.unit


def test_host_policy() -> None:
    policy = HostPolicy.of(["cp.example.org", "*.corp.example"], "0.0.0.0")
    for host in ("localhost:80", "LOCALHOST", "a.localhost", "127.0.0.1:10247", "[::1]:1", "10.0.0.9", "",
                 "cp.example.org:443", "cp.example.org.", "x.corp.example", "a.b.corp.example"):  # fmt: skip
        assert policy.allows(host), host
    for host in ("evil.example", "cp.example.org.evil.example", "corp.example.evil", "localhost.evil"):
        assert not policy.allows(host), host
    assert HostPolicy.of([], "cp.internal").allows("cp.internal:10247")


@pytest.fixture
async def guarded() -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    wrapped = RequestGuard(app, HostPolicy.of([]), max_body_bytes=100)  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=wrapped)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        yield client


async def test_guard_refuses_foreign_hosts_and_large_bodies(guarded: httpx.AsyncClient) -> None:
    assert (await guarded.post("/echo", content=b"x" * 100)).json() == {"size": 100}
    assert (await guarded.post("/echo", content=b"x" * 101)).status_code == 413

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(5):
            yield b"x" * 30

    assert (await guarded.post("/echo", content=chunks())).status_code == 413

    async def small() -> AsyncIterator[bytes]:
        yield b"x" * 30
        yield b"y" * 30

    assert (await guarded.post("/echo", content=small())).json() == {"size": 60}
    evil = await guarded.post("/echo", content=b"x", headers={"Host": "evil.example"})
    assert evil.status_code == 400 and "evil.example" in evil.json()["message"]


def test_throttle_is_a_token_bucket_per_source() -> None:
    now = [0.0]
    throttle = FailureThrottle(burst=3, window=30.0, clock=lambda: now[0], max_sources=2)
    for _ in range(3):
        assert throttle.retry_after("a") == 0
        throttle.failed("a")
    assert throttle.retry_after("a") == pytest.approx(10.0)
    assert throttle.retry_after("b") == 0  # another source is not affected
    now[0] = 10.0
    assert throttle.retry_after("a") == 0
    throttle.failed("b")
    throttle.failed("c")  # the table keeps two sources: "a" (least recent) is forgotten
    assert throttle.retry_after("a") == 0
