"""Fuzzing fixtures: the Hypothesis profile of the mode, case budgets, one real control plane.

Two modes, chosen by ``OPENSERGO_FUZZ_PROFILE``:

* ``ci`` (default, what ``make test`` runs): seeded and deterministic, a few thousand cases.
* ``deep`` (``make fuzz``): random seeds, over 10^5 cases in total.

Every target counts its cases in :mod:`tests.fuzz.tally`; the totals are printed at the end.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, settings

from tests.fuzz import tally
from tests.helpers import ControlPlaneProcess

_COMMON = {
    "deadline": None,  # a shared 2-core machine: hangs are caught by per-request timeouts instead
    "database": None,  # nothing written into the work tree
    "print_blob": True,
    "suppress_health_check": [
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
        HealthCheck.large_base_example,
    ],
}
settings.register_profile("opensergo-fuzz-ci", derandomize=True, **_COMMON)
settings.register_profile("opensergo-fuzz-deep", derandomize=False, **_COMMON)

MODE = os.environ.get("OPENSERGO_FUZZ_PROFILE", "ci")
if MODE not in ("ci", "deep"):
    raise pytest.UsageError(f"OPENSERGO_FUZZ_PROFILE must be ci or deep, not {MODE!r}")
PROFILE = settings.get_profile(f"opensergo-fuzz-{MODE}")

# Every fuzz test: an integration test (real processes), with room for the deep mode's budget.
MARKS = [
    pytest.mark.integration,
    pytest.mark.timeout(7200 if MODE == "deep" else 300),
    pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning"),  # reprs of big examples
]


def budget(ci: int, deep: int) -> settings:
    """The settings of one target: the mode's profile with that mode's number of cases."""
    return settings(PROFILE, max_examples=deep if MODE == "deep" else ci)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = tally.report()
    if lines:
        terminalreporter.section(f"fuzz totals ({MODE} profile)")
        for line in lines:
            terminalreporter.write_line(line)


class FuzzedControlPlane(ControlPlaneProcess):
    """The control plane every network target sends to, with a check that it stayed well."""

    def assert_healthy(self) -> None:
        """Still running, /healthz answers, and no uncaught exception reached its log."""
        assert self.proc is not None and self.proc.poll() is None, f"control plane died:\n{self.logs()}"
        assert httpx.get(self.http_url + "/healthz", timeout=30).status_code == 200
        tracebacks = [line for line in self.log_text().splitlines() if "Traceback" in line]
        assert not tracebacks, f"uncaught exceptions in the control plane's log:\n{self.logs()[-20000:]}"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture(scope="session")
def fuzzed_cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzedControlPlane]:
    base: Path = tmp_path_factory.mktemp("fuzz-cp")
    (base / "logs").mkdir()
    cp = FuzzedControlPlane(base / "data", base / "logs")
    cp.start()
    yield cp
    try:
        cp.assert_healthy()
    finally:
        cp.stop()
