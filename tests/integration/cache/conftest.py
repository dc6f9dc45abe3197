"""Fixtures: a private redis-server per test, its log printed when the test fails."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from opensergo.cache.rules import CacheRules
from tests.integration.cache.redis_server import RedisServer


@pytest.fixture
def redis_server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(server.logs())


@pytest.fixture
def cache_rules() -> CacheRules:
    """Rules private to the test (the process-wide ones stay untouched)."""
    return CacheRules()
