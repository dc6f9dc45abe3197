"""A burst: 5,000 data planes register at once, are discovered, then all disconnect at once.

Real processes: the control plane, one process holding 5,000 subscribe streams that registers
5,000 instances in one burst (grpc.aio, requests serialized up front), and an SDK subscriber
(OpenSergoClient) watching the app's ServiceInstance snapshots. Then the burst process is
killed, so every stream breaks at the same moment: every instance must expire within its TTL,
and the control plane's memory (RSS) must come back to within 10% of what it was before (after a
first, identical burst: see below).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from opensergo.client import OpenSergoClient
from opensergo.spec.base import Resource
from tests.helpers import ROOT, ControlPlaneProcess, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

INSTANCE_KIND = "discovery.opensergo.io/v1alpha1/ServiceInstance"
BURST_SCRIPT = Path(__file__).parent / "apps" / "burst_clients.py"
COUNT = 5_000
# Longer than the burst takes to drain on a loaded machine (no heartbeat follows a registration);
# the streams' breaking expires the instances at once, well within it.
TTL = 45.0
EXPIRED_WITHIN = 20.0
RECLAIM_AFTER = 3.0  # the control plane collects and trims its heap once departures pause
SENT_WITHIN = 2.0
ANSWERED_WITHIN = 40.0


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class Burst:
    """The burst process: ``count`` streams, then ``count`` registrations at once."""

    def __init__(self, cp: ControlPlaneProcess, count: int, app: str, log: Path) -> None:
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, str(BURST_SCRIPT), cp.grpc_address, str(count), app, app],
            stdout=subprocess.PIPE,
            stderr=log.open("wb"),
            text=True,
            env={**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}"},
        )

    def line(self) -> str:
        assert self.proc.stdout is not None
        text = self.proc.stdout.readline()
        if not text:
            raise AssertionError(f"the burst process ended: {self.log.read_text()[-2000:]}")
        return text.strip()

    def registered(self) -> dict[str, object]:
        streams = self.line()
        assert streams.startswith("streams "), streams
        result: dict[str, object] = json.loads(self.line())
        return result

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)


def instance_count(cp: ControlPlaneProcess, app: str) -> int:
    body = httpx.get(cp.http_url + "/api/v1/instances", params={"app": app, "limit": 1}, timeout=10).json()
    total: int = body["total"]
    return total


def connected(cp: ControlPlaneProcess) -> int:
    count: int = httpx.get(cp.http_url + "/healthz", timeout=10).json()["clients"]
    return count


def test_registration_burst_discovery_and_mass_disconnect(tmp_path: Path) -> None:
    cp = ControlPlaneProcess(
        tmp_path / "data",
        tmp_path,
        ["--allow-loopback", "--max-streams-per-peer", "100000", "--instance-ttl", str(TTL),
         "--log-level", "warning"],
    )  # fmt: skip
    cp.start()
    assert cp.proc is not None
    burst: Burst | None = None
    try:
        # One burst first: CPython's allocator keeps the arenas a burst grows (it returns an arena
        # only once every object in it is gone), so the baseline is the steady state after one
        # burst, and the check is that the next burst, and its departure, leave nothing behind.
        warmup = Burst(cp, COUNT, "warmup", tmp_path / "warmup.log")
        assert warmup.registered()["registered"] == COUNT
        warmup.kill()
        wait_until(lambda: instance_count(cp, "warmup") == 0, timeout=EXPIRED_WITHIN)
        wait_until(lambda: connected(cp) == 0, timeout=10)
        time.sleep(RECLAIM_AFTER)
        baseline = rss_kb(cp.proc.pid)

        seen: list[list[Resource]] = [[]]
        with OpenSergoClient(cp.grpc_address, app="burst-watcher", snapshot=None, heartbeat=None) as sdk:
            sdk.subscribe(INSTANCE_KIND, app="burst", callback=lambda items, version: seen.append(items))
            burst = Burst(cp, COUNT, "burst", tmp_path / "burst.log")
            result = burst.registered()
            print(f"burst: {result}")
            assert result["registered"] == COUNT, result
            # The burst: every registration sent within 2 s; each answered once durable (the
            # drain rate is the control plane's, bounded generously for a loaded CI machine).
            assert result["issued"] <= SENT_WITHIN, result  # type: ignore[operator]
            assert result["seconds"] <= ANSWERED_WITHIN, result  # type: ignore[operator]
            assert instance_count(cp, "burst") == COUNT
            # The SDK's final snapshot holds every instance, each with its own address.
            wait_until(lambda: len(seen[-1]) == COUNT, timeout=30, what=f"the SDK sees {COUNT} instances")
            addresses = {a.url for r in seen[-1] for a in r.spec.addresses}
            assert len(addresses) == COUNT
            peak = rss_kb(cp.proc.pid)

            # Every stream breaks at once: the rule for an instance whose stream ends is to expire
            # it at once (not after its TTL), so all 5,000 go within seconds.
            broken_at = time.monotonic()
            burst.kill()
            wait_until(
                lambda: instance_count(cp, "burst") == 0,
                timeout=EXPIRED_WITHIN,
                what="every instance expired",
            )
            wait_until(lambda: seen[-1] == [], timeout=30, what="the SDK sees no instance")
            print(f"all expired {time.monotonic() - broken_at:.1f}s after the streams broke")
            wait_until(lambda: connected(cp) == 1, timeout=10, what="every burst stream closed")
        wait_until(lambda: connected(cp) == 0, timeout=10, what="the SDK's stream closed")

        # Memory returns within 10% of the baseline (the control plane collects and trims its heap
        # after a mass departure; allow it a few seconds).
        wait_until(
            lambda: rss_kb(cp.proc.pid) <= baseline * 1.10 if cp.proc else False,
            timeout=20,
            interval=0.5,
            what=f"RSS back within 10% of {baseline} kB (peak {peak} kB, now {rss_kb(cp.proc.pid)} kB)",
        )
        print(f"RSS: baseline {baseline} kB, peak {peak} kB, after {rss_kb(cp.proc.pid)} kB")
    except BaseException:
        print(cp.logs()[-5000:])
        raise
    finally:
        if burst is not None and burst.proc.poll() is None:
            burst.kill()
        cp.stop()
