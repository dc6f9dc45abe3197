"""Reading what apps/cluster_client.py printed: JSON lines, and admissions per second."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


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
