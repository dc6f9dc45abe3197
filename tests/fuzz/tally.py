"""Cases run per fuzz target, and how each ended, printed at the end of the session."""

from __future__ import annotations

import threading
from collections import Counter, defaultdict

_lock = threading.Lock()
_counts: defaultdict[str, Counter[str]] = defaultdict(Counter)


def count(target: str, outcome: str) -> None:
    """One case of ``target`` ended with ``outcome`` (``accepted``, ``rejected``, ...)."""
    with _lock:
        _counts[target][outcome] += 1
        _counts[target]["cases"] += 1


def total(target: str) -> int:
    with _lock:
        return _counts[target]["cases"]


def report() -> list[str]:
    """One line per target and a grand total; empty when nothing ran."""
    with _lock:
        if not _counts:
            return []
        lines = []
        for target in sorted(_counts):
            outcomes = _counts[target]
            detail = ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items()) if k != "cases")
            lines.append(f"{target:<28} {outcomes['cases']:>8}  ({detail})")
        grand = sum(c["cases"] for c in _counts.values())
        lines.append(f"{'total':<28} {grand:>8}")
        return lines
