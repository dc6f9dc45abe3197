"""`make bench-scale`: what one control-plane replica sustains, driven by a Go load generator.

The generator (benchmarks/scale_load, grpc-go, built on first use into ~/.cache/opensergo) costs
less CPU than the control plane it drives, so the figures measure the control plane; every figure
is printed beside the generator's own CPU (getrusage) and the control plane's (/proc/<pid>/stat),
with the load average at the time (the machine is shared).

1. SQLite store (a fresh control plane for each figure):
   - registrations: ReportMetadata of a new instance each, at a target rate (issue 20: 2,500/s),
     with p50/p99 call latency, latency from when the call was due, and errors;
   - heartbeats: the same reports of already registered instances again (target 10,000/s);
   - token leases: Connect streams with one lease batch in flight each (the Global limit service).
2. Fan-out: a rule change (REST PUT by the generator) until every one of N SubscribeConfig streams
   received it, p50/p99/max over every stream and change; control-plane CPU per stream per change
   (idle CPU subtracted) and memory per stream, beside the generator's. N = 1k/5k/10k/20k.
3. The registrations and heartbeats again on a 3-member etcd cluster (Debian etcd-server).
4. A Markdown table of the fan-out figures for docs/scaling.md.

Every section runs once per worker count (``--workers 1,2``: the control plane's ``--workers``,
processes sharing its gRPC port; their CPU and memory are counted with the primary's).

Usage: python benchmarks/scale.py [--seconds 30] [--streams 1000,5000,10000,20000] [--quick]
       [--register-rate 2500] [--heartbeat-rate 10000] [--workers 1,2] [--no-etcd] [--auth]
       [--json OUT]
Environment: OPENSERGO_BENCH_QUICK=1 (as --quick: 5 s windows, 1k/5k streams, 3 changes),
OPENSERGO_BENCH_SECONDS, OPENSERGO_BENCH_STREAMS and OPENSERGO_BENCH_WORKERS (comma-separated),
OPENSERGO_BENCH_SRC (the
control plane's sources, e.g. another worktree's src/, for a before/after comparison).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers import ControlPlaneProcess, EtcdCluster  # noqa: E402

GO_SOURCES = ROOT / "benchmarks" / "scale_load"
GO_BINARY = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "opensergo" / "scale_load"
ADMIN_TOKEN = "scale-bench-admin-token-0c5f9d"
TOKEN_RULE = "scale-global"
TOKEN_APP = "scale-app"
# ReportMetadata load: 128 calls in flight at most (10,000/s at 12.8 ms per call) over 4 connections.
UNARY_LOAD = ("-conns", "4", "-concurrency", "128")
SECTIONS = ("register", "heartbeat", "tokens", "fanout", "etcd")
RATE_LIMITS = "/apis/fault-tolerance.opensergo.io/v1alpha1/namespaces/default/ratelimitstrategies"


def build_loadgen() -> Path:
    """Build the Go generator (again after a source change); returns the binary."""
    sources = [p for p in GO_SOURCES.iterdir() if p.suffix in {".go", ".mod", ".sum"}]
    if GO_BINARY.exists() and GO_BINARY.stat().st_mtime >= max(p.stat().st_mtime for p in sources):
        return GO_BINARY
    go = shutil.which("go") or "/usr/local/go/bin/go"
    GO_BINARY.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GOFLAGS": "-mod=readonly -buildvcs=false", "CGO_ENABLED": "0"}
    subprocess.run([go, "build", "-o", str(GO_BINARY), "."], cwd=GO_SOURCES, env=env, check=True)
    return GO_BINARY


def raise_file_limit() -> None:
    """One socket per connection: lift RLIMIT_NOFILE (the control plane inherits it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def control_plane_env() -> dict[str, str]:
    """OPENSERGO_BENCH_SRC=<dir>: run the control plane from other sources (another checkout's
    src/, to compare before and after with the same generator)."""
    src = os.environ.get("OPENSERGO_BENCH_SRC", "")
    return {"PYTHONPATH": src} if src else {}


def load_average() -> str:
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


class Bench:
    """Starts control planes (and etcd) under one temporary directory and runs the generator."""

    def __init__(self, base: Path, binary: Path, auth: bool) -> None:
        self.base = base
        self.binary = binary
        self.auth = auth
        self.runs = 0
        self.workers = 1  # the control planes' --workers

    @contextmanager
    def control_plane(self, store: str = "sqlite") -> Iterator[ControlPlaneProcess]:
        self.runs += 1
        run = self.base / f"cp-{self.runs}"
        (run / "logs").mkdir(parents=True)
        args = ["--allow-loopback", "--max-streams-per-peer", "1000000", "--log-level", "warning"]
        args += ["--store", store, "--workers", str(self.workers)]
        if self.auth:
            tokens = run / "tokens.yaml"
            tokens.write_text(
                f'tokens:\n  - name: bench\n    token: "{ADMIN_TOKEN}"\n    roles: {{"*": admin}}\n'
            )
            args += ["--auth", "on", "--auth-tokens", str(tokens)]
        cp = ControlPlaneProcess(run / "data", run / "logs", args, env=control_plane_env())
        cp.start(timeout=90)
        try:
            yield cp
        finally:
            cp.stop()

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {ADMIN_TOKEN}"} if self.auth else {}

    def generate(
        self, cp: ControlPlaneProcess, command: str, *args: str, timeout: float = 900
    ) -> dict[str, Any]:
        assert cp.proc is not None
        common = ["-addr", cp.grpc_address, "-rest", cp.http_url, "-cp-pid", str(cp.proc.pid)]
        if self.auth:
            common += ["-token", ADMIN_TOKEN]
        done = subprocess.run(
            [str(self.binary), *common, command, *args], stdout=subprocess.PIPE, text=True, timeout=timeout
        )
        if done.returncode != 0:
            log = cp.logs()[-3000:]
            raise RuntimeError(f"scale_load {command} failed ({done.returncode}); control plane log:\n{log}")
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    # -- the figures ------------------------------------------------------------------------------

    def registrations(self, store: str, rate: float, seconds: float) -> dict[str, Any]:
        with self.control_plane(store) as cp:
            return self.generate(cp, "register", "-rate", str(rate), "-duration", f"{seconds}s", *UNARY_LOAD)

    def heartbeats(self, store: str, rate: float, seconds: float, instances: int) -> dict[str, Any]:
        with self.control_plane(store) as cp:
            return self.generate(
                cp, "heartbeat", "-rate", str(rate), "-duration", f"{seconds}s", *UNARY_LOAD,
                "-instances", str(instances),
            )  # fmt: skip

    def token_leases(self, seconds: float) -> dict[str, Any]:
        with self.control_plane() as cp:
            rule = {
                "apiVersion": "fault-tolerance.opensergo.io/v1alpha1",
                "kind": "RateLimitStrategy",
                "metadata": {"name": TOKEN_RULE, "labels": {"app": TOKEN_APP}},
                "spec": {"threshold": 10**9, "statDurationSeconds": 1, "limitMode": "Global"},
            }
            path = f"{RATE_LIMITS}/{TOKEN_RULE}"
            httpx.put(cp.http_url + path, json=rule, headers=self.headers(), timeout=30).raise_for_status()
            return self.generate(
                cp, "tokens", "-streams", "8", "-batch", "10", "-duration", f"{seconds}s", "-conns", "2",
                "-app", TOKEN_APP, "-rule", TOKEN_RULE,
            )  # fmt: skip

    def fanout(self, streams: int, rounds: int) -> dict[str, Any]:
        with self.control_plane() as cp:
            print(f"  fan-out to {streams:,} streams (load {load_average()})", file=sys.stderr, flush=True)
            return self.generate(
                cp, "fanout", "-streams", str(streams), "-rounds", str(rounds), "-per-conn", "100"
            )

    @contextmanager
    def etcd(self) -> Iterator[str]:
        self.runs += 1
        cluster = EtcdCluster(self.base / f"etcd-{self.runs}", size=3)
        cluster.start()
        try:
            yield cluster.url
        finally:
            cluster.stop()


# -- printing ------------------------------------------------------------------------------------


def paced_line(name: str, r: dict[str, Any], target: float) -> str:
    cpu, call, answered = r["cpu"], r["call"], max(1, r["answered"])
    errors = f"{r['errors']} {r.get('error_codes')} first: {r.get('first_error')}" if r["errors"] else "0"
    met = r["achieved_per_s"] >= target * 0.98 and call["p99_ms"] <= 100 and not r["errors"]
    cp_us, gen_us = cpu["cp_cpu_s"] / answered * 1e6, cpu["gen_cpu_s"] / answered * 1e6
    return (
        f"{name:<14} {r['achieved_per_s']:>8,.0f}/s of {target:,.0f}/s target"
        f" ({'meets' if met else 'below'}) over {cpu['seconds']:.0f} s;"
        f" call p50 {call['p50_ms']:.1f} ms, p99 {call['p99_ms']:.1f} ms"
        f" (from due: p99 {r['from_due']['p99_ms']:.0f} ms); errors {errors}\n"
        f"{'':<14} CPU: control plane {cpu['cp_cores']:.2f} cores ({cp_us:.0f} µs/call),"
        f" generator {cpu['gen_cores']:.2f} cores ({gen_us:.0f} µs/call);"
        f" CP RSS {r['cp_rss_mb']:.0f} MB; load {cpu['load_average']}"
    )


def tokens_line(r: dict[str, Any]) -> str:
    cpu, trip = r["cpu"], r["batch_round_trip"]
    return (
        f"{'token leases':<14} {r['leases_per_s']:>8,.0f}/s ({r['streams']} streams x batches"
        f" of {r['batch']}, one batch in flight each); batch round trip p50 {trip['p50_ms']:.1f} ms,"
        f" p99 {trip['p99_ms']:.1f} ms; no-rule {r['no_rule']}, errors {r['errors']}\n"
        f"{'':<14} CPU: control plane {cpu['cp_cores']:.2f} cores, generator {cpu['gen_cores']:.2f} cores;"
        f" load {cpu['load_average']}"
    )


FANOUT_COLUMNS = (
    ("streams", "streams", "{:,}"),
    ("p50 ms", "p50", "{:.0f}"),
    ("p99 ms", "p99", "{:.0f}"),
    ("max ms", "max", "{:.0f}"),
    ("CP µs/stream/change", "cp_cpu_us_per_stream_change", "{:.1f}"),
    ("gen µs/stream/change", "gen_cpu_us_per_stream_change", "{:.1f}"),
    ("CP KB/stream", "cp_kb_per_stream", "{:.1f}"),
    ("gen KB/stream", "gen_kb_per_stream", "{:.1f}"),
    ("CP RSS MB", "cp_rss_mb", "{:.0f}"),
    ("load avg", "load_average_after", "{}"),
)


def fanout_cells(r: dict[str, Any]) -> list[str]:
    flat = {**r, "p50": r["latency"]["p50_ms"], "p99": r["latency"]["p99_ms"], "max": r["latency"]["max_ms"]}
    return [fmt.format(flat[key]) for _, key, fmt in FANOUT_COLUMNS]


def fanout_table(rows: Sequence[dict[str, Any]]) -> str:
    header = [name for name, _, _ in FANOUT_COLUMNS]
    cells = [fanout_cells(r) for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def fanout_markdown(rows: Sequence[dict[str, Any]]) -> str:
    header = [name for name, _, _ in FANOUT_COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---:|" * len(header)]
    lines += ["| " + " | ".join(fanout_cells(r)) + " |" for r in rows]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    quick = os.environ.get("OPENSERGO_BENCH_QUICK", "") not in {"", "0"}
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", default=quick, help="5 s windows, 1k/5k streams")
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("OPENSERGO_BENCH_SECONDS", 0)))
    parser.add_argument("--streams", default=os.environ.get("OPENSERGO_BENCH_STREAMS", ""))
    parser.add_argument("--rounds", type=int, default=0, help="rule changes per fan-out size (default 5)")
    parser.add_argument("--register-rate", type=float, default=2500)
    parser.add_argument("--heartbeat-rate", type=float, default=10000)
    parser.add_argument("--heartbeat-instances", type=int, default=2000)
    parser.add_argument(
        "--workers",
        default=os.environ.get("OPENSERGO_BENCH_WORKERS", "1,2"),
        help="comma-separated control-plane process counts, each measured (default 1,2)",
    )
    parser.add_argument("--no-etcd", action="store_true", help="skip the 3-member etcd figures")
    parser.add_argument("--only", default="", help=f"comma-separated, of: {','.join(SECTIONS)}")
    parser.add_argument("--auth", action="store_true", help="control planes with --auth on (a bearer token)")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    args = parser.parse_args(argv)
    args.seconds = args.seconds or (5.0 if args.quick else 30.0)
    args.streams = [int(s) for s in args.streams.split(",") if s] or (
        [1000, 5000] if args.quick else [1000, 5000, 10000, 20000]
    )
    args.rounds = args.rounds or (3 if args.quick else 5)
    args.workers = [int(w) for w in args.workers.split(",") if w] or [1]
    args.only = set(filter(None, args.only.split(","))) or set(SECTIONS)
    if args.no_etcd:
        args.only.discard("etcd")
    return args


def measure(bench: Bench, args: argparse.Namespace, processes: str) -> dict[str, Any]:
    """Every section of ``args.only`` with ``bench``'s control planes; prints as it goes."""
    seconds, rounds, only = args.seconds, args.rounds, args.only
    results: dict[str, Any] = {}
    if only & {"register", "heartbeat", "tokens"}:
        print(f"\n== SQLite store, {processes} ==", flush=True)
    if "register" in only:
        r = results["sqlite_register"] = bench.registrations("sqlite", args.register_rate, seconds)
        print(paced_line("registrations", r, args.register_rate), flush=True)
    if "heartbeat" in only:
        r = results["sqlite_heartbeat"] = bench.heartbeats(
            "sqlite", args.heartbeat_rate, seconds, args.heartbeat_instances
        )
        print(paced_line("heartbeats", r, args.heartbeat_rate), flush=True)
    if "tokens" in only:
        r = results["tokens"] = bench.token_leases(seconds)
        print(tokens_line(r), flush=True)
    if "fanout" in only:
        rows = results["fanout"] = [bench.fanout(size, rounds) for size in args.streams]
        print(
            f"\n== Fan-out, {processes}: one rule change until every stream received it"
            f" ({rounds} changes each) =="
        )
        print(fanout_table(rows), flush=True)
    if "etcd" in only:
        print(f"\n== 3-member etcd, {processes} (a fresh cluster for each figure) ==", flush=True)
        if "register" in only:
            with bench.etcd() as url:
                r = results["etcd_register"] = bench.registrations(url, args.register_rate, seconds)
            print(paced_line("registrations", r, args.register_rate), flush=True)
        if "heartbeat" in only:
            with bench.etcd() as url:
                r = results["etcd_heartbeat"] = bench.heartbeats(
                    url, args.heartbeat_rate, seconds, args.heartbeat_instances
                )
            print(paced_line("heartbeats", r, args.heartbeat_rate), flush=True)
    if "fanout" in only:
        print(f"\nFor docs/scaling.md (fan-out of one rule change, one replica of {processes}, SQLite):\n")
        print(fanout_markdown(results["fanout"]), flush=True)
    return results


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    seconds = args.seconds
    raise_file_limit()
    binary = build_loadgen()
    results: dict[str, Any] = {"seconds": seconds, "load_average_start": load_average()}
    source = os.environ.get("OPENSERGO_BENCH_SRC") or str(ROOT / "src")
    print(
        f"One control-plane replica ({source}), Go load generator ({binary}); {os.cpu_count()} cores shared,"
        f" load average {load_average()} at the start; windows of {seconds:.0f} s",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="opensergo-bench-scale-") as tmp:
        bench = Bench(Path(tmp), binary, args.auth)
        for workers in args.workers:
            bench.workers = workers
            results[f"workers_{workers}"] = measure(
                bench, args, f"{workers} process{'es' if workers > 1 else ''}"
            )
    results["load_average_end"] = load_average()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
