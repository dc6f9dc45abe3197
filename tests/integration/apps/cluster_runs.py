"""Reading what apps/cluster_client.py printed: JSON lines, and admissions per second."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FT = "fault-tolerance.opensergo.io/v1alpha1"
CLIENT = Path(__file__).parent / "cluster_client.py"


def lines(log: Path) -> list[dict[str, Any]]:
    """The JSON objects the client printed. Its stderr shares the file, so another message can
    land on the same line as one (before or after it): each object is decoded where it starts."""
    decoder = json.JSONDecoder()
    found = []
    for line in log.read_text().splitlines():
        start = line.find('{"')
        if start >= 0:
            found.append(decoder.raw_decode(line, start)[0])
    return found


def admitted(logs: list[Path]) -> tuple[list[dict[str, Any]], dict[int, int]]:
    """Each client's final result, and the admissions per second summed over all clients."""
    results = [next(r for r in lines(log) if "admitted" in r) for log in logs]
    totals: dict[int, int] = {}
    for r in results:
        for second, count in r["admitted"].items():
            totals[int(second)] = totals.get(int(second), 0) + count
    return results, totals


def first_steady_second(results: list[dict[str, Any]]) -> int:
    """The first whole second after two seconds of warm-up in which every client offered load
    (instance counts arrive, the first leases are sized blind, and the sliding window evens out
    the first second's overshoot)."""
    return max(min(int(s) for s in r["admitted"]) for r in results) + 3


def disturbed(results: list[dict[str, Any]]) -> set[int]:
    """The seconds in which some client's load generator fell behind its own schedule, or some
    token request went unanswered past the timeout (the host did not run the control plane in
    time; the calls used local shares, as designed)."""
    return {int(second) for r in results for field in ("behind", "unanswered") for second in r[field]}


def judged_seconds(results: list[dict[str, Any]], first: int, end: int) -> tuple[list[int], list[int]]:
    """Seconds ``first`` <= s < ``end`` split into (judged, excluded): an accuracy bound holds only
    where every generator offered its rate and the token service answered in time, in that second
    and the one before (a 1 s window still counts what a disturbed second admitted)."""
    late = disturbed(results)
    late |= {s + 1 for s in late}
    seconds = range(first, end)
    return [s for s in seconds if s not in late], [s for s in seconds if s in late]


def global_limit(name: str, threshold: int, resource: str) -> list[dict[str, Any]]:
    """A Global RateLimitStrategy of app cluster-app and the FaultToleranceRule applying it."""
    return [
        {
            "apiVersion": FT,
            "kind": "RateLimitStrategy",
            "metadata": {"name": name, "labels": {"app": "cluster-app"}},
            "spec": {
                "metricType": "RequestAmount",
                "limitMode": "Global",
                "threshold": threshold,
                "statDurationSeconds": 1,
            },
        },
        {
            "apiVersion": FT,
            "kind": "FaultToleranceRule",
            "metadata": {"name": f"{name}-rule", "labels": {"app": "cluster-app"}},
            "spec": {
                "targets": [{"targetResourceName": resource}],
                "strategies": [{"name": name, "kind": "RateLimitStrategy"}],
            },
        },
    ]


def run_clients(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    """Wait for cluster_client.py processes to end (killed if they do not within a minute)."""
    try:
        for p in procs:
            p.wait(timeout=60)
    finally:
        for p in procs:
            p.kill()


@dataclass
class Judged:
    """Admissions per second of a run, and the steady seconds an accuracy bound is judged on."""

    totals: dict[int, int]
    judged: list[int]
    excluded: list[int]

    @property
    def series(self) -> list[int]:
        return [self.totals[s] for s in sorted(self.totals)]


def judge(logs: list[Path]) -> Judged:
    """The clients' admissions summed per second, judged only in whole steady seconds (after the
    warm-up, before the first client ended) where every generator offered its full rate and every
    token request was answered in time: scheduler noise on a shared host is not the limiter's
    inaccuracy."""
    results, totals = admitted(logs)
    last = min(max(int(s) for s in r["admitted"]) for r in results)
    judged, excluded = judged_seconds(results, first_steady_second(results), last)
    return Judged(totals, judged, excluded)
