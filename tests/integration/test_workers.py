"""``--workers 2``: two processes serving one gRPC port (SO_REUSEPORT) on one shared SQLite file.

The kernel spreads connections over the processes by a hash of each connection's addresses, so
the tests open many connections and check both processes got some (the chance that 20 land on
one process is 2 in a million)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as ms_grpc

from opensergo.client import Backoff, OpenSergoClient
from opensergo.controlplane.metadata import REPLICA_LABEL
from opensergo.observability import names
from opensergo.proto.service_contract.v1 import service_contract_pb2 as sc
from opensergo.proto.service_contract.v1 import service_contract_pb2_grpc as sc_grpc
from tests.helpers import ControlPlaneProcess, put_object, spawn_python, wait_until
from tests.unit.dashboard.otlp_builders import counter, request, res

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

FT = "fault-tolerance.opensergo.io/v1alpha1"
RATE = f"{FT}/RateLimitStrategy"
INSTANCES = "discovery.opensergo.io/v1alpha1/namespaces/default/serviceinstances"
APP = "workers-app"
# Channels of one process to one address share one connection unless told otherwise: each client
# here gets its own, as the separate processes of real data planes would.
OWN_CONNECTION = (("grpc.use_local_subchannel_pool", 1),)


def rule(name: str, threshold: int) -> dict[str, Any]:
    return {
        "apiVersion": FT,
        "kind": "RateLimitStrategy",
        "metadata": {"name": name, "labels": {"app": APP}},
        "spec": {"threshold": threshold, "statDurationSeconds": 1},
    }


def workers_of(pid: int) -> set[int]:
    """The worker processes of primary ``pid``: its children started by multiprocessing's spawn
    (not its resource tracker), from /proc."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if parent == pid and b"spawn_main" in command:
                found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def connected(cp: ControlPlaneProcess) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = httpx.get(
        cp.http_url + "/api/v1/clients", params={"connected": "true"}, timeout=30
    ).json()["items"]
    return items


@pytest.fixture
def workers_cp(tmp_path: Path) -> Iterator[ControlPlaneProcess]:
    logs = tmp_path / "logs"
    logs.mkdir()
    cp = ControlPlaneProcess(tmp_path / "data", logs, ["--allow-loopback", "--workers", "2"])
    cp.start(timeout=60)
    try:
        yield cp
    finally:
        cp.stop()


def clients_of(cp: ControlPlaneProcess, count: int) -> list[OpenSergoClient]:
    clients = []
    for _ in range(count):
        client = OpenSergoClient(
            cp.grpc_address,
            app=APP,
            snapshot=None,
            heartbeat=None,
            backoff=Backoff(initial=0.1, maximum=1.0),
            channel_options=OWN_CONNECTION,
        )
        client.subscribe(RATE)
        client.start()
        clients.append(client)
    return clients


def report(cp: ControlPlaneProcess, i: int) -> None:
    """ReportMetadata of instance ``i`` (its own node identity) on a connection of its own."""
    request = sc.ReportMetadataRequest(app_name=APP)
    request.node.identifier.host_name = f"workers-host-{i}"
    request.node.identifier.pid = 1000 + i
    request.service_metadata.add(protocols=["http"]).listening_addresses.add(
        address=f"10.0.0.{i}", port_value=80
    )
    with grpc.insecure_channel(cp.grpc_address, options=OWN_CONNECTION) as channel:
        sc_grpc.MetadataServiceStub(channel).ReportMetadata(request, timeout=10)


def thresholds(clients: list[OpenSergoClient]) -> list[list[int]]:
    return [[r.spec.threshold for r in c.cache.get(RATE)] for c in clients]


def test_two_processes_serve_one_port_one_store(workers_cp: ControlPlaneProcess) -> None:
    cp = workers_cp
    assert cp.proc is not None
    assert len(workers_of(cp.proc.pid)) >= 1, "the primary should have started a worker process"
    assert put_object(cp, rule("shared", 1)).status_code == 201
    clients = clients_of(cp, 20)
    try:
        wait_until(lambda: thresholds(clients) == [[1]] * 20, timeout=30, what="all 20 clients have the rule")
        # Both processes hold streams, and the primary's views show the worker's clients too.
        wait_until(lambda: len(connected(cp)) == 20, timeout=10, what="20 clients listed")
        replicas = {c["replica"] for c in connected(cp)}
        assert len(replicas) == 2, replicas
        # Instances registered through either process are stored and listed, each with the
        # process (replica) that registered it.
        for i in range(20):
            report(cp, i)
        listed = httpx.get(cp.http_url + "/api/v1/instances", params={"app": APP}, timeout=30).json()["items"]
        assert len(listed) == 20
        stored = httpx.get(f"{cp.http_url}/apis/{INSTANCES}", timeout=30).json()["items"]
        assert len({o["metadata"]["labels"][REPLICA_LABEL] for o in stored}) == 2
        # A change written through the primary's REST API reaches the worker's streams.
        assert put_object(cp, rule("shared", 2)).status_code == 200
        wait_until(lambda: thresholds(clients) == [[2]] * 20, timeout=10, what="all 20 clients updated")
    finally:
        for c in clients:
            c.stop()


def test_a_dead_worker_is_replaced_and_its_clients_come_back(workers_cp: ControlPlaneProcess) -> None:
    cp = workers_cp
    assert cp.proc is not None
    (worker,) = workers_of(cp.proc.pid)
    assert put_object(cp, rule("shared", 1)).status_code == 201
    clients = clients_of(cp, 20)
    try:
        wait_until(lambda: thresholds(clients) == [[1]] * 20, timeout=30, what="all 20 clients have the rule")
        os.kill(worker, signal.SIGKILL)
        replaced = wait_until(
            lambda: {p for p in workers_of(cp.proc.pid) if p != worker and alive(p)},  # type: ignore[union-attr]
            timeout=15,
            what="a new worker process",
        )
        assert put_object(cp, rule("shared", 3)).status_code == 200
        wait_until(lambda: thresholds(clients) == [[3]] * 20, timeout=20, what="every client reconnected")
        assert replaced
    finally:
        for c in clients:
            c.stop()


def test_workers_end_with_the_primary(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    for how in (signal.SIGTERM, signal.SIGKILL):
        cp = ControlPlaneProcess(tmp_path / f"data-{how.name}", logs, ["--allow-loopback", "--workers", "2"])
        cp.start(timeout=60)
        assert cp.proc is not None
        workers = workers_of(cp.proc.pid)
        assert workers
        cp.proc.send_signal(how)
        cp.proc.wait(timeout=30)
        # SIGTERM: the primary stops them; SIGKILL: each notices its primary is gone.
        wait_until(
            lambda w=workers: not any(alive(p) for p in w), timeout=15, what=f"workers gone after {how.name}"
        )


def test_otlp_exports_reaching_a_worker_show_on_the_dashboard(workers_cp: ControlPlaneProcess) -> None:
    cp = workers_cp
    apps = [f"relay-{i}" for i in range(20)]
    start = time.time()
    for app in apps:  # one connection each: about half of them reach the worker
        with grpc.insecure_channel(cp.grpc_address, options=OWN_CONNECTION) as channel:
            ms_grpc.MetricsServiceStub(channel).Export(
                request([counter(names.PASSED, [(res("GET:/relayed"), 5)], start, time.time())], app=app),
                timeout=10,
            )

    def seen() -> set[str]:
        body = httpx.get(cp.http_url + "/api/v1/metrics/apps", timeout=30).json()
        return {a["app"] for a in body["items"]} & set(apps)

    wait_until(lambda: seen() == set(apps), timeout=10, what="every app's metrics on the primary")


def test_global_limit_is_exact_across_workers(workers_cp: ControlPlaneProcess, tmp_path: Path) -> None:
    """A token key has one owner process; clients of the other are redirected to its own port."""
    from tests.integration.apps.cluster_runs import CLIENT, global_limit, judge, run_clients

    cp = workers_cp
    for body in global_limit("g60", 60, "GET:/x"):
        put_object(cp, body)
    time.sleep(2.5)  # both processes see each other's status document (published every second)
    logs = [tmp_path / f"client-{i}.log" for i in range(4)]
    run_clients([spawn_python(CLIENT, cp.grpc_address, "GET:/x", "25", "10", log=log) for log in logs])
    run = judge(logs)
    series, totals, judged, excluded = run.series, run.totals, run.judged, run.excluded
    print(f"\nadmitted per second by 4 clients through 2 processes (threshold 60): {series}")
    assert len(judged) >= 3, f"judged {judged}, excluded {excluded}; series {series}"
    # Were each process to grant 60 on its own, about 100 per second would pass.
    for second in judged:
        assert 54 <= totals[second] <= 66, series
