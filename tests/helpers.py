"""Shared test helpers: free ports, polling, and real control-plane processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx

from opensergo.spec import kinds

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent


_GIVEN_PORTS: set[int] = set()
_GIVEN_LOCK = threading.Lock()


def free_port() -> int:
    """A loopback port free now and never handed out before by this process. The probe socket
    is closed at once, so the kernel may offer the same port again before its first taker binds
    it: two sidecars started together once got one Envoy admin port, and one Envoy never ran."""
    for _ in range(1000):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        with _GIVEN_LOCK:
            if port not in _GIVEN_PORTS:
                _GIVEN_PORTS.add(port)
                return port
    raise RuntimeError("no loopback port left that this process has not handed out already")


def put_object(cp: ControlPlaneProcess, body: dict[str, Any], timeout: float = 30) -> httpx.Response:
    """PUT an object to the control plane's REST API; the URL comes from the kind registry."""
    info = kinds.by_api_version_kind(body["apiVersion"], body["kind"])
    meta = body["metadata"]
    path = f"/apis/{info.group}/{info.version}/namespaces/{meta.get('namespace', 'default')}/{info.plural}"
    return httpx.put(f"{cp.http_url}{path}/{meta['name']}", json=body, timeout=timeout)


def wait_until(
    condition: Callable[[], T], timeout: float = 10.0, interval: float = 0.02, what: str = ""
) -> T:
    """Poll ``condition`` until it returns a truthy value; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception as e:
            last_error = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}: {last_error!r}")


class ControlPlaneProcess:
    """A real `opensergo control-plane` process on loopback with its own data dir."""

    def __init__(
        self,
        data_dir: Path,
        log_dir: Path,
        extra_args: Sequence[str] = ("--allow-loopback",),
        env: dict[str, str] | None = None,
    ) -> None:
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.data_dir = data_dir
        self.log_dir = log_dir
        self.grpc_port = free_port()
        self.http_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"control-plane-{self.starts}.log"

    def start(self, timeout: float = 20.0) -> None:
        self.starts += 1
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "opensergo.cli",
                "control-plane",
                "--grpc-port",
                str(self.grpc_port),
                "--http-port",
                str(self.http_port),
                "--data-dir",
                str(self.data_dir),
                "--log-level",
                "info",
                *self.extra_args,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT / "src"), **self.env},
        )
        try:
            wait_until(self._healthy, timeout=timeout, interval=0.05, what="control plane /healthz")
        except BaseException:
            self.kill()  # never leak a process that failed to come up
            print(self.logs())
            raise

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"control plane exited with {self.proc.returncode}:\n{self.logs()}")
        try:
            return httpx.get(self.http_url + "/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name} ---\n{p.read_text(errors='replace')}"
            for p in sorted(self.log_dir.glob("control-plane-*.log"))
        )


def stop_processes(procs: Iterable[subprocess.Popen[bytes]], timeout: float = 10) -> None:
    """SIGTERM every process still running, then wait for each; SIGKILL what outlives ``timeout``."""
    procs = list(procs)
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def spawn_python(
    script: Path, *args: str, log: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start a Python helper process with the project on its path, output to ``log``."""
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}", **(env or {})},
    )


class EtcdCluster:
    """Real etcd members (Debian etcd-server) on loopback; a single member when size == 1."""

    def __init__(self, base: Path, size: int = 1) -> None:
        self.base = base
        self.names = [f"m{i}" for i in range(size)]
        self.client_ports = [free_port() for _ in range(size)]
        self.peer_ports = [free_port() for _ in range(size)]
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        return "etcd://" + ",".join(f"127.0.0.1:{p}" for p in self.client_ports)

    def _args(self, i: int) -> list[str]:
        name = self.names[i]
        cluster = ",".join(
            f"{n}=http://127.0.0.1:{p}" for n, p in zip(self.names, self.peer_ports, strict=True)
        )
        return [
            "etcd",
            "--name", name,
            "--data-dir", str(self.base / name),
            "--listen-client-urls", f"http://127.0.0.1:{self.client_ports[i]}",
            "--advertise-client-urls", f"http://127.0.0.1:{self.client_ports[i]}",
            "--listen-peer-urls", f"http://127.0.0.1:{self.peer_ports[i]}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.peer_ports[i]}",
            "--initial-cluster", cluster,
            "--initial-cluster-state", "new",
            "--initial-cluster-token", f"opensergo-test-{self.peer_ports[0]}",
            "--heartbeat-interval", "50",
            "--election-timeout", "500",
        ]  # fmt: skip

    def start_member(self, i: int) -> None:
        name = self.names[i]
        log = (self.base / f"{name}.log").open("ab")
        self.procs[name] = subprocess.Popen(self._args(i), stdout=log, stderr=subprocess.STDOUT)

    def start(self, timeout: float = 30.0) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        for i in range(len(self.names)):
            self.start_member(i)
        try:
            wait_until(lambda: self.leader() is not None, timeout=timeout, interval=0.1, what="etcd leader")
        except BaseException:
            self.stop()
            raise

    def status(self, i: int) -> dict[str, object] | None:
        try:
            response = httpx.post(
                f"http://127.0.0.1:{self.client_ports[i]}/v3/maintenance/status", json={}, timeout=1
            )
            body: dict[str, object] = response.json()
            return body
        except (httpx.HTTPError, ValueError):
            return None

    def leader(self) -> int | None:
        """Index of the current leader, as reported by a live member."""
        for i, name in enumerate(self.names):
            proc = self.procs.get(name)
            if proc is None or proc.poll() is not None:
                continue
            status = self.status(i)
            if not status or "leader" not in status:
                continue
            leader_id = str(status["leader"])
            for j in range(len(self.names)):
                other = self.status(j)
                if other and str(other.get("header", {}).get("member_id")) == leader_id:  # type: ignore[union-attr]
                    return j
        return None

    def kill(self, i: int) -> None:
        proc = self.procs[self.names[i]]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)

    def stop(self) -> None:
        stop_processes(self.procs.values())

    def logs(self) -> str:
        return "\n".join(
            f"--- {p.name} ---\n{p.read_text(errors='replace')[-4000:]}" for p in self.base.glob("*.log")
        )


class Recorder:
    """A subscription callback that keeps every (version, resources) it receives."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, list[Any]]] = []
        self.lock = threading.Lock()

    def __call__(self, resources: list[Any], version: int) -> None:
        with self.lock:
            self.calls.append((version, list(resources)))

    @property
    def last(self) -> tuple[int, list[Any]] | None:
        with self.lock:
            return self.calls[-1] if self.calls else None

    def thresholds(self) -> list[int]:
        """``spec.threshold`` of each resource in the last call."""
        last = self.last
        return [r.spec.threshold for r in last[1]] if last else []


def run_cli(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """`opensergo ARGS...` in a subprocess with a minimal environment (plus ``env``)."""
    return subprocess.run(
        [sys.executable, "-m", "opensergo.cli", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin", "COLUMNS": "200", **(env or {})},
    )


def start_inside_a_breaker_window(stat_s: float, margin_s: float = 2.0) -> None:
    """Wait, if need be, until a statDuration window has ``margin_s`` left. A breaker counts in
    fixed windows aligned on the monotonic clock (as Sentinel's does), and CLOCK_MONOTONIC is the
    same in every process of the machine: two slow calls straddling a boundary land in two
    windows, neither reaching minRequestAmount, and the breaker rightly stays closed (a full run
    of tests/e2e/sidecar/test_ext_proc.py hit that once)."""
    left = stat_s - time.monotonic() % stat_s
    if left < margin_s:
        time.sleep(left + 0.05)


INSTANCE_KIND = "discovery.opensergo.io/v1alpha1/ServiceInstance"


RATE_LIMIT_KIND = "fault-tolerance.opensergo.io/v1alpha1/RateLimitStrategy"


def rate_limit_body(name: str, threshold: int, **spec: Any) -> dict[str, Any]:
    """A RateLimitStrategy object of app "a" (store-level tests)."""
    return {
        "apiVersion": "fault-tolerance.opensergo.io/v1alpha1",
        "kind": "RateLimitStrategy",
        "metadata": {"name": name, "labels": {"app": "a"}},
        "spec": {"threshold": threshold, **spec},
    }


def instance_body(name: str, port: int = 80) -> dict[str, Any]:
    """A minimal ServiceInstance object of app "a" (store-level tests)."""
    return {
        "apiVersion": "discovery.opensergo.io/v1alpha1",
        "kind": "ServiceInstance",
        "metadata": {"name": name, "labels": {"app": "a"}},
        "spec": {"app": "a", "nodeId": name, "addresses": [{"address": "10.0.0.1", "port": port}]},
    }
