"""Fixtures for the client tests (the test doubles live in client_fakes.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from opensergo.client import Backoff, Codec, OpenSergoClient, Snapshot
from tests.unit.client.client_fakes import ClientFactory, FakeControlPlane, fake_decoder, fake_parser


@pytest.fixture
def cp() -> Iterator[FakeControlPlane]:
    plane = FakeControlPlane()
    plane.start()
    try:
        yield plane
    finally:
        plane.close()


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[ClientFactory]:
    """Build clients with fast backoff, the fake decoder and a per-test snapshot dir; stops them all."""
    created: list[OpenSergoClient] = []

    def factory(endpoint: str | list[str], **kwargs: Any) -> OpenSergoClient:
        kwargs.setdefault("app", "foo-app")
        kwargs.setdefault("identifier", "test-client")
        kwargs.setdefault("snapshot", Snapshot(tmp_path / "snapshots"))
        kwargs.setdefault("codec", Codec(decoder=fake_decoder, parser=fake_parser))
        kwargs.setdefault("backoff", Backoff(initial=0.02, maximum=0.2))
        kwargs.setdefault("heartbeat", None)
        client = OpenSergoClient(endpoint, **kwargs)
        created.append(client)
        return client

    yield factory
    for client in created:
        if client.running and client._loop.owns_thread:
            client.stop()
