"""AdaptiveOverloadProtectionStrategy: reference §10 scenarios 23-25, and the sampler."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from opensergo.governance import Engine, Entry, ManualClock, OverloadedError, SystemSampler, guard
from opensergo.governance.faulttolerance.adaptive import NOT_SAMPLED, CpuUsageReader, read_load1
from opensergo.spec import SpecErrors, parse_documents

from .conftest import FakeSampler, adaptive, protect, rule

pytestmark = pytest.mark.unit

R = "GET:/api"


def test_scenario_23_rules_of_one_metric_merge_to_the_lowest(engine: Engine, sampler: FakeSampler) -> None:
    """§10.23: load rules 1.2 / 2.3 / 3.4 -> one rule with 1.2."""
    strategies = [adaptive(f"load-{i}", "SystemLoad", t) for i, t in enumerate((3.4, 1.2, 2.3))]
    engine.set_rules([*strategies, rule("r", [R], strategies)])
    checks = engine.checks(R)
    assert checks is not None and checks.adaptive is not None
    assert checks.adaptive.load_threshold == 1.2
    assert checks.adaptive.load_ref is not None and checks.adaptive.load_ref.strategy == "load-1"
    assert checks.adaptive.cpu_ref is None
    sampler.load = 2.0
    with pytest.raises(OverloadedError) as info:
        engine.entry(R)
    assert info.value.strategy == "load-1"
    assert info.value.reason == "load"


@pytest.mark.parametrize(("metric", "threshold"), [("SystemLoad", "-0.9"), ("CpuPercentage", "2.7")])
def test_scenario_23_invalid_thresholds_leave_no_rule(metric: str, threshold: str) -> None:
    """§10.23: load -0.9 and CPU 2.7 are invalid: they are rejected when parsed."""
    text = (
        "apiVersion: fault-tolerance.opensergo.io/v1alpha1\nkind: AdaptiveOverloadProtectionStrategy\n"
        f"metadata: {{name: a}}\nspec: {{metricType: {metric}, triggerThreshold: {threshold}}}\n"
    )
    with pytest.raises(SpecErrors, match="triggerThreshold"):
        parse_documents(text)


def test_tie_prefers_the_stricter_none_strategy(engine: Engine) -> None:
    a = adaptive("a", "CpuPercentage", "50%", "BBR")
    b = adaptive("b", "CpuPercentage", "50%", "NONE")
    engine.set_rules([a, b, rule("r", [R], [a, b])])
    checks = engine.checks(R)
    assert checks is not None and checks.adaptive is not None
    assert (checks.adaptive.cpu_threshold, checks.adaptive.cpu_bbr) == (0.5, False)


def test_scenario_24_cpu_cut_off_after_the_first_sample(engine: Engine, sampler: FakeSampler) -> None:
    """§10.24: highest CPU 0: once sampled, inbound entries are blocked (reason cpu); outbound never."""
    engine.set_rules(protect(R, adaptive("cpu", "CpuPercentage", "0%")))
    assert sampler.started == 1  # the engine started sampling when the rule arrived
    engine.entry(R).exit()  # not sampled yet (-1): passes
    sampler.next_cpu = 0.05
    sampler.sample()
    with pytest.raises(OverloadedError) as info:
        engine.entry(R)
    assert info.value.reason == "cpu"
    assert info.value.kind == "AdaptiveOverloadProtectionStrategy"
    engine.entry(R, inbound=False).exit()  # outbound: never system-checked

    @guard(R, engine=engine, inbound=False)
    def outbound() -> str:
        return "ok"

    assert outbound() == "ok"


def test_cpu_below_threshold_passes(engine: Engine, sampler: FakeSampler) -> None:
    engine.set_rules(protect(R, adaptive("cpu", "CpuPercentage", "70%")))
    sampler.cpu = 0.7  # equal is not above
    engine.entry(R).exit()
    sampler.cpu = 0.71
    with pytest.raises(OverloadedError):
        engine.entry(R)


def _fill_completions(engine: Engine, clock: ManualClock, count: int, rt_ms: float) -> None:
    """``count`` completions of ``rt_ms`` each, all inside one 500 ms bucket."""
    entries = [engine.entry(R) for _ in range(count)]
    clock.advance(rt_ms)
    for e in entries:
        e.exit()


def test_scenario_25_bbr_admission(engine: Engine, clock: ManualClock, sampler: FakeSampler) -> None:
    """§10.25: load above threshold, maxSuccessQps 1000, minRt 5 ms -> limit 5: 10 in flight block,
    4 pass, 1 always passes."""
    engine.set_rules(protect(R, adaptive("load", "SystemLoad", 0.5, "BBR")))
    sampler.load = 0.1
    _fill_completions(engine, clock, 500, 5)  # 500 in one 500 ms bucket -> 1000/s; min RT 5 ms
    checks = engine.checks(R)
    assert checks is not None and checks.adaptive is not None and checks.metrics is not None
    now = clock.now_ns()
    assert checks.metrics.max_success_per_second(now) == 1000
    assert checks.metrics.min_rt_ms(now) == 5

    held: list[Entry] = [engine.entry(R) for _ in range(10)]  # admitted while the load is low
    clock.advance(5)  # so that the ones that finish below do not lower the min RT
    sampler.load = 1.0
    with pytest.raises(OverloadedError) as info:
        engine.entry(R)  # 10 in flight > 5
    assert info.value.reason == "load"
    for e in held[4:]:
        e.exit()
    held = held[:4]
    held.append(engine.entry(R))  # 4 in flight <= 5: passes
    held.append(engine.entry(R))  # 5 in flight <= 5: passes
    with pytest.raises(OverloadedError):
        engine.entry(R)  # 6 in flight
    for e in held[1:]:
        e.exit()
    for _ in range(3):
        engine.entry(R).exit()  # 1 in flight: always passes
    held[0].exit()
    assert engine.in_flight(R) == 0


def test_scenario_25_go_forms(engine: Engine, sampler: FakeSampler) -> None:
    """§10.25 (Go): trigger 0.5 with load 1.0 or CPU 0.8 and BBR, nothing in flight -> pass;
    a metric not sampled yet (-1) -> pass. (Go's Concurrency metric has no OpenSergo field.)"""
    load = adaptive("load", "SystemLoad", 0.5, "BBR")
    cpu = adaptive("cpu", "CpuPercentage", 0.5, "BBR")
    engine.set_rules([load, cpu, rule("r", [R], [load, cpu])])
    assert (sampler.cpu, sampler.load) == (NOT_SAMPLED, NOT_SAMPLED)
    engine.entry(R).exit()
    sampler.load, sampler.cpu = 1.0, 0.8
    engine.entry(R).exit()


def test_none_strategy_is_a_hard_threshold(engine: Engine, sampler: FakeSampler) -> None:
    engine.set_rules(protect(R, adaptive("load", "SystemLoad", 0.5, "NONE")))
    sampler.load = 1.0
    with pytest.raises(OverloadedError):
        engine.entry(R)  # nothing in flight, but no BBR
    assert engine.in_flight(R) == 0


def test_sampler_stops_when_no_adaptive_rule_is_left() -> None:
    sampler = SystemSampler(interval_s=0.01, read_cpu=lambda: 0.25, read_load=lambda: 0.5)
    engine = Engine(clock=ManualClock())
    engine._sampler = sampler  # an engine-owned sampler, with fake readers
    engine.set_rules(protect(R, adaptive("cpu", "CpuPercentage", "90%")))
    assert sampler.running
    deadline = time.monotonic() + 5
    while sampler.cpu != 0.25 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert (sampler.cpu, sampler.load) == (0.25, 0.5)
    engine.clear()
    assert not sampler.running
    engine.close()


def test_real_readers_return_sane_values() -> None:
    reader = CpuUsageReader()
    assert reader() == NOT_SAMPLED  # the first call only primes the deltas
    sum(i * i for i in range(200_000))  # burn a little CPU
    value = reader()
    assert 0.0 <= value <= 1.0
    assert reader.cores() > 0


def test_load_reader_reads_the_one_minute_load_average(monkeypatch: pytest.MonkeyPatch) -> None:
    # /proc/loadavg holds the kernel's averages to two decimals; read it on both sides of the call.
    before = float(Path("/proc/loadavg").read_text().split()[0])
    load = read_load1()
    after = float(Path("/proc/loadavg").read_text().split()[0])
    assert min(before, after) - 0.01 <= load <= max(before, after) + 0.01

    def unavailable() -> tuple[float, float, float]:
        raise OSError("no load average")

    monkeypatch.setattr(os, "getloadavg", unavailable)
    assert read_load1() == NOT_SAMPLED


def test_broken_reader_does_not_kill_sampling() -> None:
    def broken() -> float:
        raise OSError("no /proc")

    sampler = SystemSampler(read_cpu=broken, read_load=lambda: 3.0)
    sampler.sample()
    assert (sampler.cpu, sampler.load) == (NOT_SAMPLED, 3.0)
