"""The sidecar data plane: rule propagation to many Envoys, and the cost of the sidecar per request.

Part 1, propagation: a real control plane and N real Envoys (``--disable-hot-restart
--concurrency 1``, each with an inbound listener for app ``bench``). Each round PUTs a new
RateLimitStrategy threshold; latency = the moment the last Envoy's ACK is recorded minus the
moment just before the PUT (ACK times as the control plane records them).

Part 2, per-request cost on one FastAPI app (examples/fastapi_app.py under uvicorn), the same
rule (a rate limit far above the load) enforced three ways:

  direct   the app without governance;
  sdk      the app with the SDK's in-process guard (OpenSergoMiddleware, rules from the control plane);
  sidecar  the app without governance behind ``opensergo sidecar`` (Envoy's local_ratelimit);
  sidecar-ext_proc  the same with ``--engine ext_proc``: Envoy asks the SDK engine in the sidecar.

Load: C keep-alive client threads for D seconds each, round-robin over the modes, best of R.
Reported: requests/s and p50/p99 latency as the clients see them. The clients, the app, Envoy and
the control plane share the machine's cores.

Usage: python benchmarks/sidecar.py [--envoys 10,100] [--rounds 5] [--duration 5] [--clients 4]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from opensergo.sidecar.bootstrap import SidecarNode, envoy_bootstrap  # noqa: E402
from opensergo.sidecar.runner import find_envoy  # noqa: E402
from tests.helpers import ControlPlaneProcess, free_port, stop_processes, wait_until  # noqa: E402

FT = "fault-tolerance.opensergo.io/v1alpha1"
RATE_KIND = f"{FT}/RateLimitStrategy"


def rules(app: str, threshold: int) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": FT,
            "kind": "RateLimitStrategy",
            "metadata": {"name": "bench", "labels": {"app": app}},
            "spec": {"threshold": threshold, "statDurationSeconds": 1},
        },
        {
            "apiVersion": FT,
            "kind": "FaultToleranceRule",
            "metadata": {"name": "bench", "labels": {"app": app}},
            "spec": {"targets": [{"targetResourceName": "GET:/hello"}], "strategies": [{"name": "bench"}]},
        },
    ]


def put(cp: ControlPlaneProcess, body: dict[str, Any]) -> int:
    plural = {"RateLimitStrategy": "ratelimitstrategies", "FaultToleranceRule": "faulttolerancerules"}[
        body["kind"]
    ]
    url = f"{cp.http_url}/apis/{FT}/namespaces/default/{plural}/{body['metadata']['name']}"
    response = httpx.put(url, json=body, timeout=30)
    response.raise_for_status()
    return int(response.json()["metadata"]["resourceVersion"])


def envoy_acks(cp: ControlPlaneProcess, version: int) -> list[float]:
    items = httpx.get(f"{cp.http_url}/api/v1/clients", params={"connected": "true"}, timeout=30).json()[
        "items"
    ]
    return [
        float(s["ackedAt"])
        for c in items
        if c.get("protocol") == "xds"
        for s in c["subscriptions"]
        if s["kind"] == RATE_KIND and s["app"] == "bench" and (s["ackedVersion"] or 0) >= version
    ]


def propagation(count: int, rounds: int, tmp: Path) -> dict[str, Any]:
    cp = ControlPlaneProcess(
        tmp / f"cp-{count}", tmp, extra_args=("--allow-loopback", "--log-level", "warning")
    )
    cp.start()
    envoy = find_envoy()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for model in rules("bench", 1_000_000):
            put(cp, model)
        started = time.monotonic()
        for i in range(count):
            node = SidecarNode(app="bench", app_port=9, inbound_port=free_port(), inbound_host="127.0.0.1",
                               node_id=f"bench-{i}")  # fmt: skip
            path = tmp / f"envoy-{count}-{i}.json"
            path.write_text(json.dumps(envoy_bootstrap(node, cp.grpc_address, free_port())))
            procs.append(
                subprocess.Popen(
                    [envoy, "-c", str(path), "--disable-hot-restart", "--concurrency", "1", "-l", "error"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        wait_until(
            lambda: len(envoy_acks(cp, 1)) >= count, timeout=60 + count, interval=0.2, what="Envoys up"
        )
        boot = time.monotonic() - started
        rss = sum(_rss(p.pid) for p in procs) / count
        latencies = []
        for n in range(rounds):
            time.sleep(0.3)
            before = time.time()
            version = put(cp, rules("bench", 1_000_000 + n + 1)[0])
            acks = wait_until(
                lambda v=version: a if len(a := envoy_acks(cp, v)) >= count else None,  # type: ignore[misc]
                timeout=60,
                interval=0.1,  # ACK times are recorded by the server: polling slowly loses nothing
                what="every Envoy ACKed",
            )
            latencies.append(max(acks) - before)
        return {
            "envoys": count,
            "boot_seconds": round(boot, 1),
            "rss_mb_per_envoy": round(rss / 2**20, 1),
            "ack_all_ms_median": round(statistics.median(latencies) * 1000, 1),
            "ack_all_ms_max": round(max(latencies) * 1000, 1),
        }
    finally:
        stop_processes(procs)
        cp.stop()


def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def load(url: str, clients: int, duration: float) -> dict[str, float]:
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    deadline = time.monotonic() + duration

    def worker() -> None:
        mine: list[float] = []
        with httpx.Client(timeout=5) as http:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                response = http.get(url)
                mine.append(time.perf_counter() - started)
                if response.status_code != 200:
                    errors[0] += 1
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    latencies.sort()
    return {
        "rps": round(len(latencies) / elapsed),
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2),
        "errors": errors[0],
    }


def per_request(duration: float, clients: int, repeats: int, tmp: Path) -> dict[str, dict[str, float]]:
    cp = ControlPlaneProcess(tmp / "cp-load", tmp, extra_args=("--allow-loopback", "--log-level", "warning"))
    cp.start()
    procs: dict[str, subprocess.Popen[bytes]] = {}
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
    app_script = str(ROOT / "examples" / "fastapi_app.py")
    try:
        for app in ("bench-sdk", "bench-sidecar"):
            for model in rules(app, 10**9):
                put(cp, model)
        ports = {"direct": free_port(), "sdk": free_port()}
        procs["direct"] = subprocess.Popen(
            [sys.executable, app_script, "--port", str(ports["direct"])],
            env={k: v for k, v in env.items() if not k.startswith("OPENSERGO_BOOTSTRAP")},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        procs["sdk"] = subprocess.Popen(
            [sys.executable, app_script, "--port", str(ports["sdk"])],
            env={**env, "OPENSERGO_APP": "bench-sdk",
                 "OPENSERGO_BOOTSTRAP_CONFIG": json.dumps({"endpoint": cp.grpc_address})},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        inbound, admin = free_port(), free_port()
        procs["sidecar"] = subprocess.Popen(
            [sys.executable, "-m", "opensergo.cli", "sidecar", "--app", "bench-sidecar", "--app-port",
             str(ports["direct"]), "--inbound-port", str(inbound), "--inbound-host", "127.0.0.1",
             "--admin-port", str(admin), "--control-plane", cp.grpc_address, "--no-register"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        extproc_inbound = free_port()
        procs["sidecar-ext_proc"] = subprocess.Popen(
            [sys.executable, "-m", "opensergo.cli", "sidecar", "--app", "bench-sidecar", "--app-port",
             str(ports["direct"]), "--inbound-port", str(extproc_inbound), "--inbound-host", "127.0.0.1",
             "--admin-port", str(free_port()), "--control-plane", cp.grpc_address, "--no-register",
             "--engine", "ext_proc"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        urls = {
            "direct": f"http://127.0.0.1:{ports['direct']}/hello",
            "sdk": f"http://127.0.0.1:{ports['sdk']}/hello",
            "sidecar": f"http://127.0.0.1:{inbound}/hello",
            "sidecar-ext_proc": f"http://127.0.0.1:{extproc_inbound}/hello",
        }
        for url in urls.values():
            wait_until(lambda u=url: _ok(u), timeout=60, interval=0.2, what=url)  # type: ignore[misc]
        status = f"http://127.0.0.1:{ports['sdk']}/opensergo/status"
        wait_until(lambda: "bench" in httpx.get(status, timeout=5).text, timeout=30, what="SDK rules")
        wait_until(lambda: envoy_local_limit(admin), timeout=30, what="Envoy rules")
        best: dict[str, dict[str, float]] = {}
        for _ in range(repeats):
            for mode, url in urls.items():
                result = load(url, clients, duration)
                if mode not in best or result["rps"] > best[mode]["rps"]:
                    best[mode] = result
        return best
    finally:
        stop_processes(procs.values())
        cp.stop()


def envoy_local_limit(admin: int) -> bool:
    dump = httpx.get(f"http://127.0.0.1:{admin}/config_dump", timeout=5).text
    return "local_ratelimit" in dump and "GET:/hello" in dump


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--envoys", default="10,100", help="comma-separated Envoy counts (0: skip part 1)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-load", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="opensergo-bench-sidecar-") as tmp:
        for count in (int(c) for c in args.envoys.split(",") if c.strip() and int(c) > 0):
            print(json.dumps(propagation(count, args.rounds, Path(tmp))), flush=True)
        if not args.skip_load:
            results = per_request(args.duration, args.clients, args.repeats, Path(tmp))
            for mode, result in results.items():
                print(json.dumps({"mode": mode, "clients": args.clients, **result}), flush=True)


if __name__ == "__main__":
    main()
