"""Service contracts through two control-plane replicas sharing an etcd store: reported to one,
stored once per version, served by the other, with the change between two deployments."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from opensergo.client import Heartbeat, OpenSergoClient, ServiceInfo, Snapshot
from opensergo.integrations.contracts import flask_contract
from tests.helpers import ControlPlaneProcess, EtcdCluster, wait_until

from .conftest import api

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

APP = "catalog"


@pytest.fixture
def replicas(tmp_path: Path, etcd: EtcdCluster) -> Iterator[list[ControlPlaneProcess]]:
    cps = [
        ControlPlaneProcess(tmp_path / f"cp{i}", tmp_path, ["--allow-loopback", "--store", etcd.url])
        for i in range(2)
    ]
    for cp in cps:
        cp.start()
    yield cps
    for cp in cps:
        cp.stop()


def flask_app(with_delete: bool) -> Flask:
    app = Flask("catalog")

    @app.get("/books/<int:book_id>")
    def book(book_id: int) -> str:
        return ""

    if with_delete:

        @app.delete("/books/<int:book_id>")
        def delete_book(book_id: int) -> str:
            return ""

    return app


def versions(cp: ControlPlaneProcess) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = api(cp, f"/api/v1/apps/default/{APP}/contracts")["versions"]
    return items


def test_contracts_are_stored_once_and_served_by_every_replica(
    tmp_path: Path, replicas: list[ControlPlaneProcess]
) -> None:
    reporting, other = replicas
    first = flask_contract(flask_app(with_delete=False))
    client = OpenSergoClient(
        reporting.grpc_address,
        app=APP,
        heartbeat=Heartbeat(interval=0.3),
        snapshot=Snapshot(tmp_path / "snap"),
        service_metadata=[
            ServiceInfo(protocols=["http"], listening_addresses=["127.0.0.1:8080"], service_contract=first)
        ],
    )
    client.start()
    try:
        [v1] = wait_until(lambda: versions(other), timeout=30, what="the contract on the other replica")
        assert v1["instances"] == 1 and v1["methods"] == 1
        endpoints = api(other, f"/api/v1/apps/default/{APP}/endpoints")["items"]
        assert [e["resource"] for e in endpoints] == ["GET:/books/<book_id>"]
        # Heartbeats carrying the same contract store nothing new.
        revision = v1["revision"]
        wait_until(
            lambda: client.reporter is not None and client.reporter.reports_ok >= 4, timeout=20, what="beats"
        )
        assert [v["revision"] for v in versions(other)] == [revision]

        # A new deployment: a route more. A second version, current; the first one kept.
        second = flask_contract(flask_app(with_delete=True))
        client.set_service_metadata(
            [ServiceInfo(protocols=["http"], listening_addresses=["127.0.0.1:8080"], service_contract=second)]
        )

        def two_versions() -> list[dict[str, Any]]:
            found = versions(other)
            return found if len(found) == 2 and found[1]["instances"] == 1 else []

        old, new = wait_until(two_versions, timeout=30, what="the second version")
        assert old["hash"] == v1["hash"] and old["instances"] == 0 and new["methods"] == 2
        change = api(
            other,
            f"/api/v1/apps/default/{APP}/contracts/diff",
            **{"from": old["hash"], "to": new["hash"][:12]},
        )
        assert change["added"] == ["catalog/delete_book"] and change["removed"] == []
        endpoints = {e["resource"] for e in api(reporting, f"/api/v1/apps/default/{APP}/endpoints")["items"]}
        assert endpoints == {"GET:/books/<book_id>", "DELETE:/books/<book_id>"}
    finally:
        client.stop()
