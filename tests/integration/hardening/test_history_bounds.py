"""Finding 9 on a real control plane's store: heartbeats that change nothing visible are not new
revisions, and the history of changes is compacted (per object, and by age)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import grpc
import httpx
import pytest

from opensergo.proto.service_contract.v1 import service_contract_pb2 as sc
from opensergo.proto.service_contract.v1 import service_contract_pb2_grpc as sc_grpc
from tests.helpers import ControlPlaneProcess
from tests.integration.hardening.conftest import StartControlPlane

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

FT = "fault-tolerance.opensergo.io/v1alpha1"
RL = f"/apis/{FT}/namespaces/default/ratelimitstrategies"
INSTANCES = "/apis/discovery.opensergo.io/v1alpha1/namespaces/default/serviceinstances"


def report(methods: list[str], description: str) -> sc.ReportMetadataRequest:
    request = sc.ReportMetadataRequest(app_name="beat-app")
    request.node.identifier.host_name = "beat-host"
    request.node.identifier.pid = 4242
    request.node.identifier.start_timestamp.seconds = 1_700_000_000
    metadata = request.service_metadata.add(protocols=["http"])
    metadata.listening_addresses.add(address="10.1.2.3", port_value=8080)
    service = metadata.service_contract.services.add(name="beat.Service", description=description)
    for method in methods:
        service.methods.add(name=method)
    return request


def revision(cp: ControlPlaneProcess) -> int:
    return int(httpx.get(f"{cp.http_url}/healthz").json()["revision"])


def test_heartbeats_that_change_nothing_visible_are_not_new_revisions(
    control_plane: ControlPlaneProcess,
) -> None:
    """Every heartbeat used to be a new history row; now only a change of what a user sees is: the
    ServiceInstance object, and a service contract (stored once per version, see
    docs/observability.md) the first time it is reported."""
    cp = control_plane
    with grpc.insecure_channel(cp.grpc_address) as channel:
        stub = sc_grpc.MetadataServiceStub(channel)
        stub.ReportMetadata(report(["Get"], "v1"), timeout=10)
        first = revision(cp)
        for _ in range(5):
            stub.ReportMetadata(report(["Get"], "v1"), timeout=10)
        assert revision(cp) == first
        # A new deployment (another contract): its version and the instance's contract hash are
        # stored once, however many heartbeats then repeat it.
        stub.ReportMetadata(report(["Get", "Extra"], "described"), timeout=10)
        deployed = revision(cp)
        assert deployed > first
        for _ in range(5):
            stub.ReportMetadata(report(["Get", "Extra"], "described"), timeout=10)
        assert revision(cp) == deployed
    [instance] = httpx.get(f"{cp.http_url}{INSTANCES}").json()["items"]
    history = httpx.get(f"{cp.http_url}{INSTANCES}/{instance['metadata']['name']}/history").json()
    assert len(history["items"]) == 2  # registered, then its one contract change


def rule(threshold: int, name: str = "rl") -> dict[str, object]:
    return {
        "apiVersion": FT,
        "kind": "RateLimitStrategy",
        "metadata": {"name": name, "labels": {"app": "foo-app"}},
        "spec": {"threshold": threshold, "statDuration": "1s"},
    }


def test_history_per_object_is_bounded(control_plane: ControlPlaneProcess) -> None:
    """The events table was never compacted: 110 changes of one object left 110 rows. By default
    an object keeps its newest 100 changes (--history-per-object)."""
    url = f"{control_plane.http_url}{RL}/rl"
    with httpx.Client(timeout=30) as client:
        for i in range(110):
            assert client.put(url, json=rule(i + 1)).status_code in (200, 201)
        items = client.get(f"{url}/history").json()["items"]
    assert len(items) == 100
    assert items[0]["current"] and items[0]["object"]["spec"]["threshold"] == 110


def test_history_older_than_the_retention_is_dropped(start_cp: StartControlPlane, tmp_path: Path) -> None:
    """Changes that are no object's current state go after --history-retention, deleted objects'
    history included; a watch from before a dropped deletion gets a 410 ERROR event."""
    data = tmp_path / "data"
    cp = start_cp(data=data)
    url = f"{cp.http_url}{RL}"
    assert httpx.put(f"{url}/gone", json=rule(1, "gone")).status_code == 201
    assert httpx.put(f"{url}/kept", json=rule(1, "kept")).status_code == 201
    assert httpx.put(f"{url}/kept", json=rule(2, "kept")).status_code == 200
    before_delete = revision(cp)
    assert httpx.delete(f"{url}/gone").status_code == 200
    cp.stop()
    time.sleep(1.5)
    cp = start_cp("--history-retention", "1", data=data)  # compaction runs at start
    base = f"{cp.http_url}{RL}"
    assert httpx.get(f"{base}/gone/history").status_code == 404
    kept = httpx.get(f"{base}/kept/history").json()["items"]
    assert [i["object"]["spec"]["threshold"] for i in kept] == [2]
    with httpx.stream(
        "GET", base, params={"watch": "true", "resourceVersion": before_delete}, timeout=10
    ) as w:
        first = json.loads(next(w.iter_lines()))
    assert first["type"] == "ERROR" and first["object"]["code"] == 410
