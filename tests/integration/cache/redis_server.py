"""A private redis-server on a free loopback port (Debian's binary from PATH; never the system
service). It can be killed with SIGKILL and restarted on the same port."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import redis

from tests.helpers import free_port


class RedisServer:
    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (scripts/system-deps.sh installs it)")
        self.binary = binary
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "redis.log"
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        argv = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--daemonize", "no", "--dir", str(self.workdir),
            "--logfile", str(self.log),
        ]  # fmt: skip
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        self.starts += 1
        deadline = time.monotonic() + timeout
        probe = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        try:
            while True:
                try:
                    if probe.ping():
                        return
                except redis.ConnectionError:
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"redis-server did not start:\n{self.logs()}") from None
                    time.sleep(0.02)
        finally:
            probe.close()

    def kill9(self) -> None:
        """SIGKILL, as a crash would; waits until the process is gone."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)

    def logs(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else "(no redis log)"

    def commandstats(self) -> dict[str, int]:
        """Executed calls per command (INFO commandstats), e.g. {'get': 12, 'client|tracking': 2}."""
        admin = redis.Redis(port=self.port)
        try:
            info = admin.info("commandstats")
        finally:
            admin.close()
        return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in info.items()}

    def reset_stats(self) -> None:
        admin = redis.Redis(port=self.port)
        try:
            admin.config_resetstat()
        finally:
            admin.close()
