"""RateLimitStrategy: reference §10 scenarios 4, 7, 8, plus limit modes and attribution."""

from __future__ import annotations

import logging

import pytest

from opensergo.governance import Engine, ManualClock, RateLimitedError
from opensergo.governance.faulttolerance.checks import ResourceChecks

from .conftest import protect, rate_limit, rule

pytestmark = pytest.mark.unit

R = "GET:/foo"


def admitted(engine: Engine, n: int, resource: str = R) -> int:
    """Enter (and exit) ``n`` times; how many were admitted."""
    ok = 0
    for _ in range(n):
        try:
            engine.entry(resource).exit()
            ok += 1
        except RateLimitedError:
            pass
    return ok


def window_of(engine: Engine, resource: str = R) -> ResourceChecks:
    checks = engine.checks(resource)
    assert checks is not None
    return checks


def test_scenario_04_qps_reject_boundary(engine: Engine) -> None:
    """§10.4: threshold 10: with 9 counted the next passes; with 10 counted the next is blocked."""
    engine.set_rules(protect(R, rate_limit("rl", 10)))
    assert admitted(engine, 9) == 9
    engine.entry(R).exit()  # 9 in the window -> passes
    with pytest.raises(RateLimitedError):
        engine.entry(R)  # 10 in the window -> blocked
    w = window_of(engine).rates[0][0]
    assert w.pass_count(engine.clock.now_ns()) == 10


def test_threshold_zero_blocks_everything(engine: Engine) -> None:
    engine.set_rules(protect(R, rate_limit("rl", 0)))
    assert admitted(engine, 3) == 0


def test_scenario_07_threshold_per_stat_duration(engine: Engine, clock: ManualClock) -> None:
    """§10.7 (Go form): threshold 100 per 20 000 ms: 50 sequential entries pass; the window sums 50."""
    engine.set_rules(protect(R, rate_limit("rl", 100, stat="20s")))
    for _ in range(50):
        engine.entry(R).exit()
        clock.advance(100)  # 5 s in all, well inside the 20 s window
    w = window_of(engine).rates[0][0]
    assert w.interval_ms == 20_000
    assert w.sample_count == 40
    assert w.pass_count(clock.now_ns()) == 50
    # the window really is 20 s: 50 more pass, then the 101st request is refused
    assert admitted(engine, 51) == 50


def test_scenario_08_burst_across_bucket_edge(engine: Engine, clock: ManualClock) -> None:
    """§10.8: N at t=499 ms pass, one more at t=700 ms is blocked, N more at t=1000 ms pass."""
    n = 5
    engine.set_rules(protect(R, rate_limit("rl", n, stat_seconds=1)))
    clock.set_ms(499)
    assert admitted(engine, n) == n
    clock.set_ms(700)
    assert admitted(engine, 1) == 0
    clock.set_ms(1000)
    assert admitted(engine, n + 1) == n
    # any epoch-aligned second holds at most N
    clock.set_ms(1999)
    assert admitted(engine, 1) == 0


def test_sliding_window_forgets_after_the_interval(engine: Engine, clock: ManualClock) -> None:
    engine.set_rules(protect(R, rate_limit("rl", 3)))
    assert admitted(engine, 5) == 3
    clock.advance(1000)
    assert admitted(engine, 5) == 3


def test_several_rate_limits_first_failing_rule_is_reported(engine: Engine) -> None:
    loose = rate_limit("loose", 5)
    tight = rate_limit("tight", 2)
    engine.set_rules([loose, tight, rule("a-rule", [R], [loose]), rule("b-rule", [R], [tight])])
    assert admitted(engine, 2) == 2
    with pytest.raises(RateLimitedError) as info:
        engine.entry(R)
    assert (info.value.rule, info.value.strategy) == ("b-rule", "tight")
    # same window, so both read the same count: the block was not counted as a pass
    assert window_of(engine).rates[0][0].pass_count(engine.clock.now_ns()) == 2


def test_rate_limits_with_different_windows(engine: Engine, clock: ManualClock) -> None:
    per_second = rate_limit("per-second", 3, stat="1s")
    per_minute = rate_limit("per-minute", 5, stat="1min")
    engine.set_rules(protect(R, per_second, per_minute))
    assert admitted(engine, 4) == 3
    clock.advance(1000)
    with pytest.raises(RateLimitedError) as info:
        for _ in range(3):
            engine.entry(R).exit()
    assert info.value.strategy == "per-minute"
    # a request blocked by the second rule is not counted in the first rule's window
    per_second_window = window_of(engine).rates[0][0]
    assert per_second_window.pass_count(clock.now_ns()) == 2


def test_global_to_local_divides_by_live_instances(clock: ManualClock) -> None:
    engine = Engine(clock=clock, instances=3)
    engine.set_rules(protect(R, rate_limit("rl", 10, mode="GlobalToLocal")))
    assert admitted(engine, 10) == 3  # floor(10 / 3)
    clock.advance(1000)
    engine.set_instance_count(2)
    assert admitted(engine, 10) == 5
    clock.advance(1000)
    engine.set_instance_count(40)
    assert admitted(engine, 10) == 1  # floor of 1


def test_global_behaves_as_global_to_local_and_warns_once(
    clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    engine = Engine(clock=clock, instances=2)
    objects = protect(R, rate_limit("rl", 10, mode="Global"))
    with caplog.at_level(logging.WARNING, logger="opensergo.governance"):
        engine.set_rules(objects)
        engine.set_rules(objects)
        engine.set_instance_count(5)
    warnings = [r for r in caplog.records if "Global" in r.getMessage()]
    assert len(warnings) == 1
    assert "rl" in warnings[0].getMessage()
    assert admitted(engine, 10) == 2


def test_local_mode_ignores_instance_count(clock: ManualClock) -> None:
    engine = Engine(clock=clock, instances=4)
    engine.set_rules(protect(R, rate_limit("rl", 10)))
    assert admitted(engine, 12) == 10


def test_counts_survive_a_threshold_change(engine: Engine) -> None:
    engine.set_rules(protect(R, rate_limit("rl", 10)))
    assert admitted(engine, 4) == 4
    engine.set_rules(protect(R, rate_limit("rl", 5)))
    assert admitted(engine, 4) == 1
