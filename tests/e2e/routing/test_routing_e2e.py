"""End-to-end routing with real processes: a control plane, 3 providers, 2 backends and a consumer.

Every app registers through the SDK (ReportMetadata) and routes its outbound calls through the
httpx routing transport: provider instances v1-a, v1-b (version v1) and v2-gray (version v2, tag
gray); backend instances base and gray (tag gray); a consumer app. The test itself is a client
app ("e2e-client") with a ServiceDirectory and the httpx transport. Rules are applied with REST
PUT. The processes are shared by the tests of this module, which run in order (v2 is killed
last).
"""

from __future__ import annotations

import collections
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from opensergo.client import OpenSergoClient
from opensergo.governance.routing import ServiceDirectory
from opensergo.integrations.httpx import RoutingTransport
from tests.helpers import ControlPlaneProcess, spawn_python, stop_processes, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

APP = Path(__file__).parent / "apps" / "service.py"
TRAFFIC = "traffic.opensergo.io/v1alpha1"
ROUTER_KIND = f"{TRAFFIC}/TrafficRouter"
PROVIDER = "service-provider"


class Cluster:
    """The control plane and the app processes; stops exactly what it started."""

    def __init__(self, root: Path) -> None:
        self.logs = root / "logs"
        self.logs.mkdir()
        self.cp = ControlPlaneProcess(root / "data", self.logs)
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def spawn(self, app: str, name: str, *labels: str) -> None:
        self.procs[name] = spawn_python(
            APP, self.cp.grpc_address, app, name, *labels, log=self.logs / f"{name}.log"
        )

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def stop(self) -> None:
        stop_processes(self.procs.values())
        self.cp.stop()

    def dump_logs(self) -> str:
        parts = [self.cp.logs()]
        for name in self.procs:
            path = self.logs / f"{name}.log"
            if path.exists():
                parts.append(f"--- {name} ---\n{path.read_text(errors='replace')}")
        return "\n".join(parts)

    def instances(self, app: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.cp.http_url}/api/v1/instances", params={"app": app}, timeout=5)
        items: list[dict[str, Any]] = response.json()["items"]
        return items

    def put(self, plural: str, name: str, app: str, spec: dict[str, Any], kind: str) -> int:
        body = {
            "apiVersion": TRAFFIC,
            "kind": kind,
            "metadata": {"name": name, "labels": {"app": app}},
            "spec": spec,
        }
        url = f"{self.cp.http_url}/apis/{TRAFFIC}/namespaces/default/{plural}/{name}"
        response = httpx.put(url, json=body, timeout=5)
        assert response.status_code in (200, 201), response.text
        return int(response.json()["metadata"]["resourceVersion"])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path_factory.mktemp("routing-e2e"))
    try:
        cluster.cp.start()
        cluster.spawn(PROVIDER, "v1-a", "version=v1")
        cluster.spawn(PROVIDER, "v1-b", "version=v1")
        cluster.spawn(PROVIDER, "v2-gray", "version=v2", "tag=gray")
        cluster.spawn("backend", "backend-base", "version=v1")
        cluster.spawn("backend", "backend-gray", "version=v1", "tag=gray")
        cluster.spawn("consumer", "consumer", "version=v1")
        expected = {PROVIDER: 3, "backend": 2, "consumer": 1}
        for app, count in expected.items():
            wait_until(lambda app=app, count=count: len(cluster.instances(app)) == count, timeout=60,
                       interval=0.2, what=f"{count} instance(s) of {app}")  # fmt: skip
        yield cluster
    except BaseException:
        print(cluster.dump_logs())
        raise
    finally:
        cluster.stop()


@pytest.fixture(autouse=True)
def _logs_on_failure(request: pytest.FixtureRequest, cluster: Cluster) -> Iterator[None]:
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(cluster.dump_logs())


@pytest.fixture(scope="module")
def sdk(cluster: Cluster) -> Iterator[tuple[OpenSergoClient, ServiceDirectory, httpx.Client]]:
    client = OpenSergoClient(cluster.cp.grpc_address, app="e2e-client", heartbeat=None, snapshot=None)
    client.start()
    directory = ServiceDirectory(client, initial_wait=10)
    http = httpx.Client(transport=RoutingTransport(directory), timeout=10)
    try:
        assert directory.prepare(PROVIDER, "consumer", timeout=20)
        wait_until(lambda: len(directory.instances(PROVIDER)) == 3, timeout=20, what="3 providers in the SDK")
        yield client, directory, http
    finally:
        http.close()
        directory.close()
        client.stop()


def call(http: httpx.Client, service: str, hops: str = "", **headers: str) -> dict[str, Any]:
    response = http.get(f"http://{service}/call", params={"hops": hops}, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def apply_router(cluster: Cluster, client: OpenSergoClient, http: list[dict[str, Any]]) -> None:
    version = cluster.put(
        "trafficrouters", PROVIDER, PROVIDER, {"hosts": [PROVIDER], "http": http}, "TrafficRouter"
    )
    assert client.wait_for_version(ROUTER_KIND, version, 10, app=PROVIDER), "router not delivered"


CANONICAL = [
    {
        "match": [{"headers": {"tag": {"exact": "v2"}}}],
        "route": [
            {
                "destination": {
                    "host": PROVIDER,
                    "subset": "v2",
                    "fallback": {"host": PROVIDER, "subset": "v1"},
                }
            }
        ],
    },
    {"route": [{"destination": {"host": PROVIDER, "subset": "v1"}}]},
]


def test_gray_lane_keeps_its_lane_across_two_hops(cluster: Cluster, sdk: Any) -> None:
    _, _, http = sdk
    # No router yet: lane routing alone. The request enters the consumer in the gray lane.
    chain = call(http, "consumer", "service-provider,backend", **{"x-opensergo-traffic": "gray"})
    assert chain["name"] == "consumer" and chain["lane"] == "gray"
    provider = chain["next"]
    assert provider["name"] == "v2-gray"
    assert provider["lane"] == "gray" and "x-opensergo-traffic=gray" in provider["baggage"]
    backend = provider["next"]
    assert backend["name"] == "backend-gray"
    assert backend["lane"] == "gray" and "x-opensergo-traffic=gray" in backend["baggage"]
    # Unlaned traffic stays on untagged instances at every hop.
    for _ in range(5):
        chain = call(http, "consumer", "service-provider,backend")
        assert chain["next"]["name"] in ("v1-a", "v1-b") and chain["next"]["lane"] is None
        assert chain["next"]["next"]["name"] == "backend-base"


def test_lane_coloured_by_rule_at_the_consumer(cluster: Cluster, sdk: Any) -> None:
    _, _, http = sdk
    cluster.put(
        "trafficlanes",
        "consumer-gray",
        "consumer",
        {
            "selector": {"app": "consumer"},
            "rules": {"traffic": {"http": {"headers": {"x-user-id": {"exact": "12345"}}}}},
            "lane": {"name": "Gray"},
        },
        "TrafficLane",
    )

    def coloured() -> dict[str, Any] | None:
        chain = call(http, "consumer", "service-provider,backend", **{"x-user-id": "12345"})
        return chain if chain["context_lane"] == "Gray" else None

    chain = wait_until(coloured, timeout=10, interval=0.1, what="the consumer colours x-user-id 12345")
    assert chain["lane"] is None  # coloured inside the consumer, not by the caller
    assert chain["next"]["name"] == "v2-gray" and chain["next"]["lane"] == "Gray"
    assert chain["next"]["next"]["name"] == "backend-gray" and chain["next"]["next"]["lane"] == "Gray"
    assert call(http, "consumer", "service-provider", **{"x-user-id": "1"})["next"]["name"] in (
        "v1-a",
        "v1-b",
    )


def test_header_routing(cluster: Cluster, sdk: Any) -> None:
    client, _, http = sdk
    apply_router(cluster, client, CANONICAL)
    assert {call(http, PROVIDER, tag="v2")["name"] for _ in range(20)} == {"v2-gray"}
    assert {call(http, PROVIDER)["name"] for _ in range(20)} == {"v1-a", "v1-b"}
    assert {call(http, PROVIDER, tag="V2")["name"] for _ in range(10)} <= {"v1-a", "v1-b"}


def test_weighted_split_80_20(cluster: Cluster, sdk: Any) -> None:
    client, _, http = sdk
    weighted = [
        {
            "route": [
                {"destination": {"host": PROVIDER, "subset": "v1"}, "weight": 80},
                {"destination": {"host": PROVIDER, "subset": "v2"}, "weight": 20},
            ]
        }
    ]
    apply_router(cluster, client, weighted)
    counts = collections.Counter(call(http, PROVIDER)["labels"]["version"] for _ in range(2000))
    share = counts["v2"] / 2000
    assert abs(share - 0.20) <= 0.05, counts
    assert counts["v1"] + counts["v2"] == 2000


def test_fallback_to_v1_when_v2_is_killed(cluster: Cluster, sdk: Any) -> None:
    client, directory, http = sdk
    apply_router(cluster, client, CANONICAL)
    assert call(http, PROVIDER, tag="v2")["name"] == "v2-gray"
    killed = time.monotonic()
    cluster.kill("v2-gray")

    def fell_back() -> bool:
        try:
            return call(http, PROVIDER, tag="v2")["name"] in ("v1-a", "v1-b")
        except httpx.HTTPError:
            return False  # a call to the dead instance before the push arrived

    wait_until(fell_back, timeout=10, interval=0.05, what="tag v2 traffic falls back to v1")
    elapsed = time.monotonic() - killed
    assert elapsed < 5, f"fallback took {elapsed:.1f}s"
    assert [i.name for i in directory.instances(PROVIDER) if i.labels.get("version") == "v2"] == []
    assert {call(http, PROVIDER, tag="v2")["name"] for _ in range(20)} == {"v1-a", "v1-b"}
    # The gray lane has no gray provider left: it falls back to untagged instances.
    chain = call(http, "consumer", "service-provider", **{"x-opensergo-traffic": "gray"})
    assert chain["next"]["name"] in ("v1-a", "v1-b") and chain["next"]["lane"] == "gray"
