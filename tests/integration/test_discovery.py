"""Registration through ReportMetadata, ServiceInstance snapshots over the transport, expiry."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from opensergo.client import Heartbeat, OpenSergoClient, ServiceInfo
from opensergo.spec.base import Resource
from tests.helpers import ControlPlaneProcess, spawn_python, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

INSTANCE_KIND = "discovery.opensergo.io/v1alpha1/ServiceInstance"
APP_SCRIPT = Path(__file__).parent / "apps" / "instance.py"


def instances(cp: ControlPlaneProcess, app: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = httpx.get(cp.http_url + "/api/v1/instances", params={"app": app}).json()[
        "items"
    ]
    return items


def test_register_discover_and_expire_on_stream_break(
    control_plane: ControlPlaneProcess, tmp_path: Path
) -> None:
    procs = [
        spawn_python(APP_SCRIPT, control_plane.grpc_address, "provider", str(8000 + i), f"version=v{i + 1}",
                     log=tmp_path / f"provider-{i}.log")
        for i in range(2)
    ]  # fmt: skip
    seen: list[list[Resource]] = []
    try:
        with OpenSergoClient(
            control_plane.grpc_address, app="consumer", snapshot=None, heartbeat=None
        ) as consumer:
            consumer.subscribe(
                INSTANCE_KIND, app="provider", callback=lambda items, version: seen.append(items)
            )
            wait_until(
                lambda: len(seen) > 0 and len(seen[-1]) == 2, timeout=20, what="two provider instances"
            )
            by_version = {r.spec.labels["version"]: r for r in seen[-1]}
            assert set(by_version) == {"v1", "v2"}
            assert [a.url for a in by_version["v1"].spec.addresses] == ["http://127.0.0.1:8000"]
            assert by_version["v1"].spec.app == "provider" and by_version["v1"].spec.pid == procs[0].pid

            listed = instances(control_plane, "provider")
            assert len(listed) == 2 and all(i["healthy"] for i in listed)

            # kill -9: the stream breaks and the instance is expired at once, without waiting for the TTL.
            procs[1].send_signal(signal.SIGKILL)
            wait_until(
                lambda: [r.spec.labels["version"] for r in seen[-1]] == ["v1"], timeout=5, what="v2 expired"
            )
            assert [i["labels"]["version"] for i in instances(control_plane, "provider")] == ["v1"]
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_ttl_expiry_without_stream(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    cp = ControlPlaneProcess(tmp_path / "data", logs, ["--allow-loopback", "--instance-ttl", "1.5"])
    cp.start()
    try:
        # Metadata only (no subscribe stream): only the TTL can expire it.
        client = OpenSergoClient(
            cp.grpc_address,
            app="lonely",
            heartbeat=Heartbeat(interval=0.3),
            snapshot=None,
            service_metadata=[ServiceInfo(protocols=["grpc"], listening_addresses=["127.0.0.1:9000"])],
        )
        client.start()
        wait_until(lambda: len(instances(cp, "lonely")) == 1, what="registered")
        client.stop()
        wait_until(lambda: instances(cp, "lonely") == [], timeout=5, what="expired after the TTL")
        stored = httpx.get(
            f"{cp.http_url}/apis/discovery.opensergo.io/v1alpha1/namespaces/default/serviceinstances"
        )
        assert stored.json()["items"] == []
    finally:
        cp.stop()


def test_loopback_address_is_rejected_by_default(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    cp = ControlPlaneProcess(tmp_path / "data", logs, extra_args=[])
    cp.start()
    try:
        client = OpenSergoClient(
            cp.grpc_address,
            app="local",
            snapshot=None,
            service_metadata=[ServiceInfo(protocols=["http"], listening_addresses=["127.0.0.1:8080"])],
        )
        with client:
            reporter = client.reporter
            assert reporter is not None
            wait_until(lambda: reporter.reports_failed > 0, what="report rejected")
            assert "INVALID_ARGUMENT" in (reporter.last_error or "")
            assert "127.0.0.1" in (reporter.last_error or "")
        assert instances(cp, "local") == []
    finally:
        cp.stop()
