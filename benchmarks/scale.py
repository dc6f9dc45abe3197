"""`make bench-scale`: one control-plane replica with 1,000 / 5,000 / 10,000 subscriber streams.

For each size: memory per stream (control-plane RSS growth / streams), the time from one rule
change (REST PUT) until every stream received it (p50, p99, max), and the CPU time the control
plane (and, for comparison, the load generators: they share the machine) spent per change.
Load generators are separate processes multiplexing many streams over a few HTTP/2 connections
each.
Usage: python benchmarks/scale.py [SIZES...]   (default: 1000 5000 10000)
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers import ControlPlaneProcess, wait_until  # noqa: E402

PATH = "/apis/fault-tolerance.opensergo.io/v1alpha1/namespaces/default/ratelimitstrategies/scale"
STREAMS_PER_CONNECTION = 100
LOADGENS = 2
ROUNDS = 5


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def body(threshold: int) -> dict[str, object]:
    return {
        "apiVersion": "fault-tolerance.opensergo.io/v1alpha1",
        "kind": "RateLimitStrategy",
        "metadata": {"name": "scale", "labels": {"app": "scale-app"}},
        "spec": {"threshold": threshold, "statDurationSeconds": 1},
    }


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))]


def measure(size: int, tmp: Path) -> dict[str, float]:
    logs = tmp / f"logs-{size}"
    logs.mkdir()
    # Every load generator connects from 127.0.0.1: lift the per-peer stream bound.
    cp = ControlPlaneProcess(
        tmp / f"data-{size}", logs, ["--allow-loopback", "--max-streams-per-peer", "100000"]
    )
    cp.start()
    assert cp.proc is not None
    pid = cp.proc.pid
    gens: list[subprocess.Popen[str]] = []
    try:
        httpx.put(cp.http_url + PATH, json=body(0))
        time.sleep(0.5)
        base_rss = rss_kb(pid)
        per_gen = size // LOADGENS
        env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"}
        for g in range(LOADGENS):
            channels = max(1, per_gen // STREAMS_PER_CONNECTION)
            out = tmp / f"gen-{size}-{g}.json"
            gens.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        str(ROOT / "benchmarks" / "scale_loadgen.py"),
                        cp.grpc_address,
                        str(per_gen),
                        str(channels),
                        str(out),
                    ],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                    env=env,
                )
            )
        for gen in gens:
            assert gen.stdout is not None
            assert gen.stdout.readline().strip() == "ready"
        wait_until(lambda: httpx.get(cp.http_url + "/healthz").json()["clients"] >= size, timeout=60)
        time.sleep(1.0)
        per_stream_kb = (rss_kb(pid) - base_rss) / size
        latencies: list[float] = []
        cpu: list[float] = []
        gen_cpu: list[float] = []
        for n in range(1, ROUNDS + 1):
            cpu_before = cpu_seconds(pid)
            gens_before = sum(cpu_seconds(gen.pid) for gen in gens)
            started = time.time()
            version = int(httpx.put(cp.http_url + PATH, json=body(n)).json()["metadata"]["resourceVersion"])
            times: list[float] = []
            deadline = time.monotonic() + 60
            while len(times) < size and time.monotonic() < deadline:
                time.sleep(0.2)
                times = []
                for g, gen in enumerate(gens):
                    assert gen.stdin is not None and gen.stdout is not None
                    gen.stdin.write("dump\n")
                    gen.stdin.flush()
                    assert gen.stdout.readline().strip() == "dumped"
                    times += json.loads((tmp / f"gen-{size}-{g}.json").read_text()).get(str(version), [])
            if len(times) < size:
                raise RuntimeError(f"only {len(times)} of {size} streams received version {version}")
            latencies += [t - started for t in times]
            cpu.append(cpu_seconds(pid) - cpu_before)
            gen_cpu.append(sum(cpu_seconds(gen.pid) for gen in gens) - gens_before)
            print(
                f"  {size} streams, round {n}/{ROUNDS}: all received in {max(times) - started:.3f}s",
                file=sys.stderr,
            )
        return {
            "streams": size,
            "kb_per_stream": per_stream_kb,
            "p50_ms": statistics.median(latencies) * 1000,
            "p99_ms": percentile(latencies, 0.99) * 1000,
            "max_ms": max(latencies) * 1000,
            "cpu_s_per_change": statistics.median(cpu),
            "gen_cpu_s_per_change": statistics.median(gen_cpu),
            "rss_mb": rss_kb(pid) / 1024,
        }
    finally:
        for gen in gens:
            if gen.poll() is None:
                assert gen.stdin is not None
                gen.stdin.write("quit\n")
                gen.stdin.flush()
        for gen in gens:
            try:
                gen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                gen.kill()
        cp.stop()


def main() -> None:
    sizes = [int(a) for a in sys.argv[1:]] or [1000, 5000, 10000]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            rows.append(measure(size, Path(tmp)))
    columns = ("streams", "KB/stream", "p50 ms", "p99 ms", "max ms", "CPU s/change", "loadgen CPU", "RSS MB")
    print(" ".join(f"{c:>12}" for c in columns))
    for r in rows:
        values = (
            "streams",
            "kb_per_stream",
            "p50_ms",
            "p99_ms",
            "max_ms",
            "cpu_s_per_change",
            "gen_cpu_s_per_change",
            "rss_mb",
        )
        print(" ".join(f"{r[v]:>12.0f}" if v == "streams" else f"{r[v]:>12.2f}" for v in values))


if __name__ == "__main__":
    main()
