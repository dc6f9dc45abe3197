"""Load and faults on one control-plane replica (issue 12): heartbeat throughput, memory under each
class of hostile request, and /healthz latency while each attack runs.

1. **ReportMetadata/heartbeat throughput.** A Go load generator (``benchmarks/heartbeat_load``,
   built on first use into ~/.cache/opensergo; Python grpc.aio processes when Go is missing, or
   with ``--python-loadgen``) sends pre-serialized reports: each of 1,000 instances registers once,
   then all send their heartbeats (the same report again) as fast as the control plane answers.
   The figure is answered reports per second; the Go client leaves the cores to the server.
2. **Attacks.** For each class of issue 12's "Why" list, 10,000 hostile requests (in two halves),
   with the control plane's RSS before, after 5,000 and after 10,000: bounded growth means the
   second half adds (next to) nothing. Every answer must be the expected refusal (a 5xx or an
   unexpected answer is counted and shown).
3. **/healthz p50/p99/max** from a separate process polling every 10 ms while each attack runs
   (target: p99 < 50 ms).

The control plane runs with ``--auth on`` (what a replica reachable by others runs): an admin
token sets up, an attacker token with the agent role in its own namespace attacks. The machine's
load average is printed beside each figure: on a shared machine absolute figures are noisy.

Usage: python benchmarks/hardening.py [--seconds 10] [--loadgens 3] [--concurrency 64]
       [--requests 10000] [--only throughput|attacks] [--classes 3,4,...] [--json OUT]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as ms_pb  # noqa: E402
from opentelemetry.proto.common.v1 import common_pb2  # noqa: E402
from opentelemetry.proto.metrics.v1 import metrics_pb2  # noqa: E402

from opensergo.common import metric_names as names  # noqa: E402
from opensergo.proto.flowcontrol.v1 import token_pb2 as tk  # noqa: E402
from opensergo.proto.service_contract.v1 import service_contract_pb2 as sc  # noqa: E402
from opensergo.proto.transport.v1 import protocol_pb2 as pb  # noqa: E402
from opensergo.spec import kinds  # noqa: E402
from tests.helpers import ControlPlaneProcess, free_port  # noqa: E402

ADMIN = "bench-admin-token-5d1c7a0e9b"
ATTACKER = "bench-attacker-token-84f2c6"  # agent in namespace "attacker" only
TOKENS = f"""tokens:
  - name: bench-admin
    token: "{ADMIN}"
    roles: {{"*": admin}}
  - name: attacker
    token: "{ATTACKER}"
    roles: {{attacker: agent}}
"""
REPORT = "/opensergo.proto.service_contract.v1.MetadataService/ReportMetadata"
SUBSCRIBE = "/io.opensergo.proto.transport.v1.OpenSergoUniversalTransportService/SubscribeConfig"
CONNECT = "/opensergo.ext.flowcontrol.v1.TokenService/Connect"
EXPORT = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
RATE = kinds.lookup("RateLimitStrategy")
DB = kinds.lookup("DatabaseEndpoint")
ALL_KINDS = [k.full_kind for k in kinds.all_kinds()]
INSTANCES = 1000  # registered instances whose heartbeats the throughput figure counts


def _raw(data: bytes) -> bytes:
    return data


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load() -> str:
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))] if ordered else float("nan")


def start_control_plane(base: Path) -> ControlPlaneProcess:
    (base / "logs").mkdir(parents=True)
    tokens = base / "tokens.yaml"
    tokens.write_text(TOKENS)
    args = ("--allow-loopback", "--auth", "on", "--auth-tokens", str(tokens), "--log-level", "warning")
    cp = ControlPlaneProcess(base / "data", base / "logs", args)
    cp.start(timeout=60)
    return cp


# -- 1. heartbeat throughput -------------------------------------------------------------------------


def _report(worker: int, instance: int) -> bytes:
    request = sc.ReportMetadataRequest(
        app_name=f"bench-app-{instance % 10}",
        node=sc.Node(
            identifier=sc.NodeIdentifier(host_name=f"bench-{worker}-{instance}", pid=1000 + instance)
        ),
        service_metadata=[
            sc.ServiceMetadata(
                listening_addresses=[sc.SocketAddress(address="10.1.0.1", port_value=8080 + instance % 1000)],
                protocols=["http"],
            )
        ],
    )
    return request.SerializeToString()


async def _heartbeats(
    address: str, worker: int, instances: int, concurrency: int, warmup: float, seconds: float
) -> tuple[int, int]:
    metadata = (("authorization", f"Bearer {ADMIN}"), ("opensergo-namespace", "bench"))
    requests = [_report(worker, i) for i in range(instances)]
    # Several connections: one HTTP/2 connection serializes on one client thread.
    channels = [
        grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)]) for _ in range(4)
    ]
    calls = [ch.unary_unary(REPORT, request_serializer=_raw, response_deserializer=_raw) for ch in channels]
    for i, request in enumerate(requests):  # registrations: a store write each
        await calls[i % len(calls)](request, metadata=metadata, timeout=30)
    counted = errors = 0
    start = time.monotonic() + warmup
    end = start + seconds

    async def loop(index: int) -> None:
        nonlocal counted, errors
        call = calls[index % len(calls)]
        i = index
        while (now := time.monotonic()) < end:
            try:
                await call(requests[i % instances], metadata=metadata, timeout=30)
            except grpc.aio.AioRpcError:
                errors += 1
            if now >= start:
                counted += 1
            i += concurrency

    await asyncio.gather(*(loop(i) for i in range(concurrency)))
    for ch in channels:
        await ch.close()
    return counted, errors


def _heartbeat_worker(address: str, worker: int, instances: int, concurrency: int, warmup: float,
                      seconds: float, out: Any) -> None:  # fmt: skip
    out.put(asyncio.run(_heartbeats(address, worker, instances, concurrency, warmup, seconds)))


GO_LOADGEN = ROOT / "benchmarks" / "heartbeat_load"
GO_BINARY = Path.home() / ".cache" / "opensergo" / "heartbeat_load"


def go_loadgen() -> Path | None:
    """The Go load generator, built on first use (and after a change); None without Go."""
    sources = [GO_LOADGEN / "main.go", GO_LOADGEN / "go.mod", GO_LOADGEN / "go.sum"]
    if GO_BINARY.exists() and GO_BINARY.stat().st_mtime >= max(p.stat().st_mtime for p in sources):
        return GO_BINARY
    if shutil.which("go") is None:
        return None
    GO_BINARY.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["go", "build", "-o", str(GO_BINARY), "."], cwd=GO_LOADGEN, check=True)
    return GO_BINARY


def throughput_go(
    pid: int, address: str, binary: Path, concurrency: int, seconds: float, tmp: Path, method: str = REPORT
) -> dict[str, Any]:
    """Heartbeats from the Go load generator (one process, a fraction of Python's CPU per call)."""
    requests = tmp / "reports.bin"
    with requests.open("wb") as out:
        for i in range(INSTANCES):
            data = _report(0, i)
            out.write(len(data).to_bytes(4, "big") + data)
    warmup = 3.0
    load_before = load()
    proc = subprocess.Popen(
        [str(binary), "-addr", address, "-method", method, "-token", ADMIN, "-namespace", "bench",
         "-requests", str(requests), "-concurrency", str(concurrency),
         "-warmup", f"{warmup}s", "-duration", f"{seconds}s"],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    time.sleep(warmup + 0.5)  # registrations, then the warm-up
    cpu_before = cpu_seconds(pid)
    time.sleep(seconds - 1)
    cpu_used = cpu_seconds(pid) - cpu_before
    stdout, _ = proc.communicate(timeout=120)
    result = json.loads(stdout)
    return {
        "heartbeats_per_s": round(result["answered"] / seconds),
        "errors": result["errors"],
        "server_cpu": round(cpu_used / (seconds - 1), 2),
        "loadgen": f"Go, {concurrency} in flight, {INSTANCES} instances",
        "load_before": load_before,
        "load_after": load(),
    }


def _noop_server(port: int, ready: Any) -> None:
    """A grpc.aio server whose one unary method answers at once: the stack's own ceiling."""

    async def serve() -> None:
        async def answer(request: bytes, context: Any) -> bytes:
            return b""

        server = grpc.aio.server()
        handler = grpc.unary_unary_rpc_method_handler(
            answer, request_deserializer=_raw, response_serializer=_raw
        )
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("bench.Noop", {"Call": handler}),)
        )
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        ready.set()
        await server.wait_for_termination()

    asyncio.run(serve())


def calibrate(binary: Path, concurrency: int, seconds: float, tmp: Path) -> dict[str, Any]:
    """The same load against a no-op grpc.aio handler, at the same moment on the same machine."""
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    port = free_port()
    server = ctx.Process(target=_noop_server, args=(port, ready))
    server.start()
    try:
        ready.wait(timeout=60)
        assert server.pid is not None
        return throughput_go(
            server.pid, f"127.0.0.1:{port}", binary, concurrency, seconds, tmp, "/bench.Noop/Call"
        )
    finally:
        server.terminate()
        server.join(timeout=10)


def throughput(cp: ControlPlaneProcess, loadgens: int, concurrency: int, seconds: float) -> dict[str, Any]:
    """Heartbeats from Python load-generator processes (grpc.aio), when Go is not available."""
    assert cp.proc is not None
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    warmup = 5.0  # spawn, import, register
    load_before = load()
    procs = [
        ctx.Process(
            target=_heartbeat_worker, args=(cp.grpc_address, w, 200, concurrency, warmup, seconds, out)
        )
        for w in range(loadgens)
    ]
    for p in procs:
        p.start()
    time.sleep(warmup)
    cpu_before = cpu_seconds(cp.proc.pid)
    time.sleep(seconds)
    cpu_used = cpu_seconds(cp.proc.pid) - cpu_before
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    answered = sum(r[0] for r in results)
    errors = sum(r[1] for r in results)
    return {
        "heartbeats_per_s": round(answered / seconds),
        "errors": errors,
        "server_cpu": round(cpu_used / seconds, 2),
        "loadgen": f"{loadgens} Python processes x {concurrency} in flight, 200 instances each",
        "load_before": load_before,
        "load_after": load(),
    }


# -- 3. /healthz, polled from its own process ----------------------------------------------------------


def _poll_health(url: str, ready: Any, stop: Any, out: Any) -> None:
    latencies: list[float] = []
    failures = 0
    with httpx.Client(timeout=10) as client:
        client.get(url)  # connected: the attack may start
        ready.set()
        while not stop.is_set():
            started = time.perf_counter()
            try:
                ok = client.get(url).status_code == 200
            except httpx.HTTPError:
                ok = False
            latencies.append((time.perf_counter() - started) * 1000)
            failures += not ok
            time.sleep(0.01)
    out.put((latencies, failures))


# -- 2. attacks ------------------------------------------------------------------------------------------


@dataclass
class Attack:
    number: str  # the finding of issue 12's "Why" list
    name: str
    send: Callable[[Ctx, int], Awaitable[str]]  # one hostile request -> its outcome
    expected: tuple[str, ...]  # outcomes that are the right refusal (or a harmless answer)
    weight: int = 1  # hostile requests (messages) one send makes


class Ctx:
    def __init__(self, cp: ControlPlaneProcess) -> None:
        self.cp = cp
        self.http = httpx.AsyncClient(base_url=cp.http_url, timeout=30)
        self.channel = grpc.aio.insecure_channel(cp.grpc_address)
        self.attacker = (("authorization", f"Bearer {ATTACKER}"),)

    def unary(self, method: str) -> Any:
        return self.channel.unary_unary(method, request_serializer=_raw, response_deserializer=_raw)

    def stream(self, method: str) -> Any:
        return self.channel.stream_stream(method, request_serializer=_raw, response_deserializer=_raw)

    async def close(self) -> None:
        await self.http.aclose()
        await self.channel.close()


def _status(err: grpc.aio.AioRpcError) -> str:
    return err.code().name


async def grpc_unauthenticated(ctx: Ctx, i: int) -> str:
    """Finding 1: no credentials (or another namespace, or an HTML namespace) on the gRPC port."""
    try:
        if i % 3 == 0:  # someone else's app, no token
            await ctx.unary(REPORT)(_report(9, i % 50), timeout=30)
        elif i % 3 == 1:  # a namespace the token does not cover, HTML in the header
            md = (*ctx.attacker, ("opensergo-namespace", "<b>shop</b>" if i % 2 else "shop"))
            await ctx.unary(REPORT)(_report(9, i % 50), metadata=md, timeout=30)
        else:  # subscribe without a token (refused before any request is read: send none, or the
            # aio client's write may race the refusal and report INTERNAL on its own side)
            await ctx.stream(SUBSCRIBE)(timeout=30).read()
    except grpc.aio.AioRpcError as err:
        return _status(err)
    return "OK"


async def token_drain(ctx: Ctx, i: int) -> str:
    """Finding 2: lease a Global budget whole and give back tokens never leased."""
    key = tk.FlowKey(namespace="attacker", app="drain", resource="GET:/", strategy="drain-global")
    op = {"lease": tk.Lease(count=1_000_000)} if i % 2 else {"give_back": tk.Lease(count=1_000, bucket=i)}
    batch = tk.TokenBatch(requests=[tk.TokenRequest(id=i, key=key, **op)], client_id=f"drain-{i % 7}")
    try:
        call = ctx.stream(CONNECT)(iter([batch.SerializeToString()]), metadata=ctx.attacker, timeout=30)
        answer = tk.TokenBatchResponse.FromString(await call.read())
        call.cancel()
    except grpc.aio.AioRpcError as err:
        return _status(err)
    return tk.TokenResponse.Code.Name(answer.responses[0].code)


ALIAS_BOMB = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{chr(98 + n)}: &{chr(98 + n)} [{','.join(['*' + chr(97 + n)] * 9)}]\n" for n in range(8)
)


async def yaml_alias_bomb(ctx: Ctx, i: int) -> str:
    """Finding 3: a few hundred bytes of YAML aliases expanding to gigabytes; and deep nesting."""
    text = ALIAS_BOMB if i % 2 else "[" * 5000 + "]" * 5000
    headers = {"authorization": f"Bearer {ADMIN}"}
    response = await ctx.http.post("/api/v1/validate", json={"yaml": text}, headers=headers)
    valid = response.json().get("valid") if response.status_code == 200 else None
    return f"{response.status_code}{' invalid' if valid is False else ''}"


def _export(i: int) -> bytes:
    points = [
        metrics_pb2.NumberDataPoint(
            as_int=5,
            attributes=[
                common_pb2.KeyValue(key=names.RESOURCE, value=common_pb2.AnyValue(string_value=f"r-{i}-{j}"))
            ],
            time_unix_nano=time.time_ns(),
        )
        for j in range(100)
    ]
    nan_gauge = metrics_pb2.Metric(
        name=names.CONCURRENCY,
        gauge=metrics_pb2.Gauge(data_points=[metrics_pb2.NumberDataPoint(as_double=float("nan"))]),
    )
    passed = metrics_pb2.Metric(
        name=names.PASSED,
        sum=metrics_pb2.Sum(
            data_points=points,
            is_monotonic=True,
            aggregation_temporality=metrics_pb2.AGGREGATION_TEMPORALITY_DELTA,
        ),
    )
    attrs = {
        names.SERVICE_NAME: f"otlp-app-{i % 20}",
        names.SERVICE_NAMESPACE: "attacker",
        names.SERVICE_INSTANCE_ID: f"i-{i}",
    }
    resource = {
        "attributes": [
            common_pb2.KeyValue(key=k, value=common_pb2.AnyValue(string_value=v)) for k, v in attrs.items()
        ]
    }
    request = ms_pb.ExportMetricsServiceRequest(
        resource_metrics=[
            metrics_pb2.ResourceMetrics(
                resource=resource, scope_metrics=[metrics_pb2.ScopeMetrics(metrics=[passed, nan_gauge])]
            )
        ]
    )
    return request.SerializeToString()


async def otlp_series(ctx: Ctx, i: int) -> str:
    """Finding 4: one export naming thousands of series (and a NaN gauge)."""
    try:
        await ctx.unary(EXPORT)(_export(i), metadata=ctx.attacker, timeout=30)
    except grpc.aio.AioRpcError as err:
        return _status(err)
    if i % 500 == 0:  # the view that a NaN broke for everyone
        return str(
            (
                await ctx.http.get("/api/v1/metrics/apps", headers={"authorization": f"Bearer {ADMIN}"})
            ).status_code
        )
    return "OK"


async def secrets_read(ctx: Ctx, i: int) -> str:
    """Finding 5: read what holds secrets (redacted in every answer)."""
    path = f"/apis/{DB.group}/{DB.version}/namespaces/attacker/{DB.plural}/orders-db"
    response = await ctx.http.get(
        path + ("/history" if i % 2 else ""), headers={"authorization": f"Bearer {ATTACKER}"}
    )
    assert "s3cr3t-pw" not in response.text
    return str(response.status_code)


async def session_forgery(ctx: Ctx, i: int) -> str:
    """Finding 6: forged session cookies, guessed tokens, failed logins from one source."""
    if i % 3 == 0:
        response = await ctx.http.post("/api/v1/login", json={"token": f"guess-{i}"})
    elif i % 3 == 1:
        response = await ctx.http.get("/api/v1/whoami", headers={"authorization": f"Bearer guess-{i}"})
        if response.status_code == 200:  # whoami answers who the caller is: nobody
            return "200 anonymous" if response.json().get("authenticated") is False else "200 AUTHENTICATED"
    else:
        response = await ctx.http.get(
            "/api/v1/apps", headers={"cookie": f"osg_session=forged.{i}.{'A' * 40}"}
        )
    return str(response.status_code)


async def dns_rebinding(ctx: Ctx, i: int) -> str:
    """Finding 7: a request naming another host (a rebinding page)."""
    path = f"/apis/{RATE.group}/{RATE.version}/namespaces/attacker/{RATE.plural}/victim"
    response = await ctx.http.delete(path, headers={"host": f"evil{i % 10}.example"})
    return str(response.status_code)


async def unencodable(ctx: Ctx, i: int) -> str:
    """Finding 8: values that validate in shape but fit no wire type."""
    durations = ("99999999999999999999d", "106751991168d", "9223372036854775808ms")
    body = {
        "apiVersion": RATE.api_version, "kind": RATE.kind,
        "metadata": {"name": f"unencodable-{i % 100}", "labels": {"app": "victim"}},
        "spec": {"threshold": 2**53 + 1 if i % 4 == 3 else 1, "statDuration": durations[i % 3]},
    }  # fmt: skip
    path = f"/apis/{RATE.group}/{RATE.version}/namespaces/attacker/{RATE.plural}/{body['metadata']['name']}"  # type: ignore[index]
    response = await ctx.http.put(path, json=body, headers={"authorization": f"Bearer {ADMIN}"})
    return str(response.status_code)


STREAM_MESSAGES = 20  # per stream_bounds() stream: 15 subscriptions and 5 NACKs


async def stream_bounds(ctx: Ctx, i: int) -> str:
    """Finding 9: subscriptions without end on one stream, huge NACKs, streams opened and closed."""
    requests = []
    for j in range(15):  # 15 apps x 19 kinds: beyond the 256 a stream may hold
        target = pb.SubscribeRequestTarget(namespace="attacker", app=f"app-{j}", kinds=ALL_KINDS)
        requests.append(pb.SubscribeRequest(target=target, identifier=f"bounds-{i}", request_id=str(j)))
    nack = pb.SubscribeRequest(response_ack="NACK", status=pb.Status(code=4001, message="x" * 65_536))
    messages = [r.SerializeToString() for r in requests] + [nack.SerializeToString()] * 5
    call = ctx.stream(SUBSCRIBE)(iter(messages), metadata=ctx.attacker, timeout=30)
    refused = 0
    try:
        async for data in call:
            answer = pb.SubscribeResponse.FromString(data)
            refused += answer.ack == "NACK" and answer.status.code == 4002
    except grpc.aio.AioRpcError as err:
        return _status(err)
    return "bounded" if refused else "unbounded"


async def heartbeat_churn(ctx: Ctx, i: int) -> str:
    """Finding 9: heartbeats that change something each time (history rows without end)."""
    md = (*ctx.attacker, ("opensergo-namespace", "attacker"), ("opensergo-labels", f"version=v{i}"))
    try:
        await ctx.unary(REPORT)(_report(7, i % 3), metadata=md, timeout=30)
    except grpc.aio.AioRpcError as err:
        return _status(err)
    return "OK"


async def malformed_bodies(ctx: Ctx, i: int) -> str:
    """Finding 10: deep JSON, a revision of 1e400, start=2**70, metadata: [1, 2]."""
    headers = {"authorization": f"Bearer {ADMIN}", "content-type": "application/json"}
    base = f"/apis/{RATE.group}/{RATE.version}/namespaces/attacker/{RATE.plural}"
    which = i % 4
    if which == 0:
        response = await ctx.http.post(base, content="[" * 100_000, headers=headers)
    elif which == 1:
        response = await ctx.http.post(
            f"{base}/victim/rollback", content='{"revision": 1e400}', headers=headers
        )
    elif which == 2:
        response = await ctx.http.get(
            f"/api/v1/metrics/history?namespace=attacker&app=a&start={2**70}", headers=headers
        )
    else:
        response = await ctx.http.post(
            base, json={"metadata": [1, 2], "spec": {"threshold": 1}}, headers=headers
        )
    return str(response.status_code)


async def validate_guess(ctx: Ctx, i: int) -> str:
    """Finding 11: guessing a secret through validate's answer."""
    guess = f"""apiVersion: {DB.api_version}
kind: {DB.kind}
metadata: {{name: orders-db, namespace: attacker, labels: {{app: shop}}}}
spec: {{database: {{MySQL: {{url: "jdbc:mysql://db:3306/orders", username: app, password: "guess-{i}"}}}}}}
"""
    response = await ctx.http.post(
        "/api/v1/validate", json={"yaml": guess}, headers={"authorization": f"Bearer {ATTACKER}"}
    )
    body = response.json()
    return "unchanged" if body.get("unchanged") else str(response.status_code)


# Class 6 runs last: its failed logins throttle the attacker's source (127.0.0.1), after which every
# HTTP request from it gets 429 (valid tokens included) for a minute.
ATTACKS = [
    Attack(
        "1",
        "gRPC without credentials / other namespace",
        grpc_unauthenticated,
        ("UNAUTHENTICATED", "PERMISSION_DENIED", "INVALID_ARGUMENT"),
    ),
    Attack("2", "token service: drain, give back unleased", token_drain, ("OK", "NO_RULE", "BAD_REQUEST")),
    Attack("3", "YAML alias bombs, deep nesting", yaml_alias_bomb, ("200 invalid", "400")),
    Attack("4", "OTLP: 100 new series per export, NaN", otlp_series, ("OK", "200")),
    Attack("5", "reading objects that hold secrets", secrets_read, ("200",)),
    Attack("7", "DNS rebinding (foreign Host)", dns_rebinding, ("400",)),
    Attack("8", "unencodable values", unencodable, ("422",)),
    Attack("9a", "per-stream bounds: subscriptions, NACKs", stream_bounds, ("bounded",), STREAM_MESSAGES),
    Attack("9b", "heartbeats that change every time", heartbeat_churn, ("OK",)),
    Attack("10", "malformed bodies and parameters", malformed_bodies, ("400", "404", "422")),
    Attack("11", "guessing a secret through validate", validate_guess, ("200",)),
    Attack(
        "6",
        "forged sessions, guessed tokens, logins",
        session_forgery,
        ("401", "403", "429", "200 anonymous"),
    ),
]


async def setup(cp: ControlPlaneProcess) -> None:
    headers = {"authorization": f"Bearer {ADMIN}"}
    async with httpx.AsyncClient(base_url=cp.http_url, headers=headers, timeout=30) as http:
        objects = [
            (RATE, "drain-global", {"threshold": 100, "statDuration": "1s", "limitMode": "Global"}, "drain"),
            (RATE, "victim", {"threshold": 1, "statDuration": "1s"}, "victim"),
            (DB, "orders-db", {"database": {"MySQL": {"url": "jdbc:mysql://db:3306/orders", "username": "app",
                                                      "password": "s3cr3t-pw"}}}, "shop"),
        ]  # fmt: skip
        for kind, name, spec, app in objects:
            body = {"apiVersion": kind.api_version, "kind": kind.kind,
                    "metadata": {"name": name, "labels": {"app": app}}, "spec": spec}  # fmt: skip
            path = f"/apis/{kind.group}/{kind.version}/namespaces/attacker/{kind.plural}/{name}"
            response = await http.put(path, json=body)
            assert response.status_code in (200, 201), response.text
            if name == "victim":  # a second revision to roll back to
                assert (
                    await http.put(path, json={**body, "spec": {**spec, "threshold": 2}})
                ).status_code == 200


async def _run(ctx: Ctx, attack: Attack, start: int, count: int, concurrency: int) -> Counter[str]:
    """``count`` hostile requests (``count / weight`` sends), ``concurrency`` at a time."""
    outcomes: Counter[str] = Counter()
    numbers = iter(range(start, start + count, attack.weight))

    async def worker() -> None:
        for i in numbers:
            try:
                outcomes[await attack.send(ctx, i)] += attack.weight
            except Exception as err:  # a broken connection is an outcome too
                outcomes[f"error {type(err).__name__}"] += attack.weight

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return outcomes


def attacks(cp: ControlPlaneProcess, requests: int, concurrency: int, only: set[str]) -> list[dict[str, Any]]:
    assert cp.proc is not None
    pid = cp.proc.pid
    asyncio.run(setup(cp))
    ctx_mp = mp.get_context("spawn")
    rows = []
    for attack in ATTACKS:
        if only and attack.number not in only:
            continue
        ready, stop, out = ctx_mp.Event(), ctx_mp.Event(), ctx_mp.Queue()
        poller = ctx_mp.Process(target=_poll_health, args=(cp.http_url + "/healthz", ready, stop, out))
        poller.start()
        ready.wait(timeout=60)
        load_before = load()
        rss = [rss_mib(pid)]
        started = time.monotonic()

        async def run_halves(attack: Attack = attack, rss: list[float] = rss) -> Counter[str]:
            ctx = Ctx(cp)
            try:
                half = requests // 2
                first = await _run(ctx, attack, 0, half, concurrency)
                rss.append(rss_mib(pid))
                second = await _run(ctx, attack, half, requests - half, concurrency)
                rss.append(rss_mib(pid))
                return first + second
            finally:
                await ctx.close()

        outcomes = asyncio.run(run_halves())
        took = time.monotonic() - started
        stop.set()
        latencies, failures = out.get(timeout=60)
        poller.join(timeout=30)
        unexpected = {k: v for k, v in outcomes.items() if k not in attack.expected}
        rows.append(
            {
                "class": attack.number,
                "attack": attack.name,
                "requests": sum(outcomes.values()),
                "per_s": round(sum(outcomes.values()) / took),
                "rss_mib": [round(r, 1) for r in rss],
                "second_half_growth_mib": round(rss[2] - rss[1], 1),
                "healthz_ms": {
                    "p50": round(statistics.median(latencies), 1) if latencies else None,
                    "p99": round(percentile(latencies, 0.99), 1),
                    "max": round(max(latencies), 1) if latencies else None,
                    "polls": len(latencies),
                    "failed": failures,
                },
                "outcomes": dict(outcomes),
                "unexpected": unexpected,
                "load": f"{load_before} -> {load()}",
            }
        )
        alive = cp.proc.poll() is None
        print(_row(rows[-1]) + ("" if alive else "  CONTROL PLANE DIED"), flush=True)
        if not alive:
            break
    return rows


def _row(r: dict[str, Any]) -> str:
    h = r["healthz_ms"]
    rss = " -> ".join(f"{v:.0f}" for v in r["rss_mib"])
    bad = f"  UNEXPECTED {r['unexpected']}" if r["unexpected"] else ""
    return (
        f"{r['class']:>3} {r['attack']:<44} {r['requests']:>6} {r['per_s']:>6}/s  RSS {rss:<17} MiB"
        f" (+{r['second_half_growth_mib']:.1f} 2nd half)"
        f"  healthz p50 {h['p50']} p99 {h['p99']} max {h['max']} ms"
        f"  load {r['load']}{bad}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=10.0, help="throughput measurement window")
    parser.add_argument("--loadgens", type=int, default=3, help="Python load-generator processes")
    parser.add_argument(
        "--python-loadgen", action="store_true", help="Python load generators even when Go is available"
    )
    parser.add_argument("--concurrency", type=int, default=64, help="calls in flight per load generator")
    parser.add_argument("--requests", type=int, default=10_000, help="hostile requests per attack class")
    parser.add_argument("--attack-concurrency", type=int, default=8)
    parser.add_argument("--only", choices=["throughput", "attacks"])
    parser.add_argument("--classes", default="", help="comma-separated attack classes, e.g. 3,4,9a")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    results: dict[str, Any] = {"cpus": os.cpu_count(), "load_start": load()}
    with tempfile.TemporaryDirectory(prefix="opensergo-hardening-") as tmp:
        if args.only != "attacks":
            cp = start_control_plane(Path(tmp) / "throughput")
            assert cp.proc is not None
            try:
                binary = None if args.python_loadgen else go_loadgen()
                if binary is not None:
                    t = throughput_go(
                        cp.proc.pid, cp.grpc_address, binary, args.concurrency, args.seconds, Path(tmp)
                    )
                else:
                    t = throughput(cp, args.loadgens, args.concurrency, args.seconds)
                results["throughput"] = t
            finally:
                cp.stop()
            print(
                f"ReportMetadata heartbeats, one replica: {t['heartbeats_per_s']:,}/s"
                f" ({t['loadgen']}, {t['errors']} errors, control plane {t['server_cpu']} cores;"
                f" load {t['load_before']} -> {t['load_after']})",
                flush=True,
            )
            if binary is not None:
                c = results["calibration"] = calibrate(binary, args.concurrency, args.seconds, Path(tmp))
                print(
                    f"  the same load on a no-op grpc.aio handler (the stack's ceiling now): "
                    f"{c['heartbeats_per_s']:,}/s (server {c['server_cpu']} cores; load {c['load_after']})",
                    flush=True,
                )
        if args.only != "throughput":
            cp = start_control_plane(Path(tmp) / "attacks")
            try:
                print(
                    f"{args.requests:,} hostile requests per class (RSS before, at half, at end):", flush=True
                )
                only = {c.strip() for c in args.classes.split(",") if c.strip()}
                results["attacks"] = attacks(cp, args.requests, args.attack_concurrency, only)
            finally:
                cp.stop()
    results["load_end"] = load()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
