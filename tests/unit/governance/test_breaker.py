"""CircuitBreakerStrategy: reference §10 scenarios 15-22, listeners and state across reloads."""

from __future__ import annotations

import pytest

from opensergo.common.clock import NS_PER_MS
from opensergo.governance import BreakerState, CircuitBreakerOpenError, Engine, ManualClock, RuleRef
from opensergo.governance.faulttolerance.breaker import BLOCK, PASS, PROBE, CircuitBreaker
from opensergo.spec import SpecErrors, parse_documents

from .conftest import breaker, protect, rate_limit, rule, slow_breaker

pytestmark = pytest.mark.unit

R = "GET:/slow"
MS = NS_PER_MS
CLOSED, OPEN, HALF = BreakerState.CLOSED, BreakerState.OPEN, BreakerState.HALF_OPEN

Transition = tuple[str, str, BreakerState, BreakerState, float | None]


@pytest.fixture
def transitions(engine: Engine) -> list[Transition]:
    seen: list[Transition] = []

    def listener(
        resource: str, ref: RuleRef, old: BreakerState, new: BreakerState, snap: float | None
    ) -> None:
        seen.append((resource, ref.strategy, old, new, snap))

    engine.add_state_listener(listener)
    return seen


def request(engine: Engine, clock: ManualClock, rt_ms: float, error: bool = False) -> None:
    """One admitted request taking ``rt_ms``; raises CircuitBreakerOpenError when refused."""
    entry = engine.entry(R)
    clock.advance(rt_ms)
    entry.exit(RuntimeError("boom") if error else None)


def blocked(engine: Engine) -> bool:
    try:
        engine.entry(R).exit()
    except CircuitBreakerOpenError:
        return True
    return False


def state(engine: Engine, name: str = "cb") -> BreakerState:
    b = engine.breaker(R, name)
    assert b is not None
    return b.current_state


def test_scenarios_15_16_slow_ratio_trip_and_recovery(
    engine: Engine, clock: ManualClock, transitions: list[Transition]
) -> None:
    """§10.15: maxRt 50 ms, ratio 0.8, min 10, stat 20 s, recovery 5 s.
    §10.16: OPEN blocks until recovery; slow probe re-opens; fast probe closes."""
    cb = slow_breaker("cb", max_rt="50ms", ratio="80%", min_requests=10, stat="20s", recovery="5s")
    engine.set_rules(protect(R, cb))
    for _ in range(7):
        request(engine, clock, 60)
    for _ in range(3):
        request(engine, clock, 10)
    assert state(engine) is CLOSED  # 7/10 = 0.70
    for _ in range(5):
        request(engine, clock, 60)
    assert state(engine) is CLOSED  # 12/15 = 0.80 is not > 0.8
    request(engine, clock, 60)  # the 16th completion: 13/16 = 0.8125
    assert state(engine) is OPEN
    assert transitions == [(R, "cb", CLOSED, OPEN, 13 / 16)]
    tripped_at = clock.now_ms()

    # §10.16
    assert blocked(engine)
    clock.advance(1000)
    assert blocked(engine)
    clock.set_ms(tripped_at + 5000)
    probe = engine.entry(R)  # the single probe
    assert state(engine) is HALF
    assert blocked(engine)  # others are refused while the probe is out
    clock.advance(60)
    probe.exit()  # slow probe
    assert state(engine) is OPEN
    assert transitions[1:] == [(R, "cb", OPEN, HALF, None), (R, "cb", HALF, OPEN, 1.0)]
    assert blocked(engine)
    clock.advance(6000)
    request(engine, clock, 10)  # fast probe
    assert state(engine) is CLOSED
    assert transitions[3:] == [(R, "cb", OPEN, HALF, None), (R, "cb", HALF, CLOSED, None)]
    request(engine, clock, 60)  # the next slow request passes
    assert state(engine) is CLOSED


def test_scenario_17_error_ratio_trip_and_recovery(
    engine: Engine, clock: ManualClock, transitions: list[Transition]
) -> None:
    """§10.17: ratio 0.5, min 10, stat 25 s, recovery 5 s."""
    cb = breaker("cb", ratio="50%", min_requests=10, stat="25s", recovery="5s")
    engine.set_rules(protect(R, cb))
    for i in range(9):
        request(engine, clock, 1, error=i < 6)
    assert state(engine) is CLOSED  # 6 errors in 9: below minRequestAmount
    request(engine, clock, 1, error=True)  # 7/10 = 0.7
    assert state(engine) is OPEN
    assert transitions[-1][2:4] == (CLOSED, OPEN)
    assert transitions[-1][4] == pytest.approx(0.7)
    clock.advance(2000)
    assert blocked(engine)
    clock.advance(3000)
    request(engine, clock, 1, error=True)  # erroring probe
    assert state(engine) is OPEN
    clock.advance(5000)
    request(engine, clock, 1)  # clean probe
    assert state(engine) is CLOSED
    request(engine, clock, 1, error=True)  # a later error passes
    assert state(engine) is CLOSED
    assert [(t[2], t[3]) for t in transitions] == [
        (CLOSED, OPEN),
        (OPEN, HALF),
        (HALF, OPEN),
        (OPEN, HALF),
        (HALF, CLOSED),
    ]


def test_scenario_18_slow_ratio_100_percent(engine: Engine, clock: ManualClock) -> None:
    """§10.18: maxRt 10 ms, ratio 1.0, min 3, stat 5 s, recovery 5 s: three 20 ms requests trip it."""
    cb = slow_breaker("cb", max_rt="10ms", ratio="100%", min_requests=3, stat="5s", recovery="5s")
    engine.set_rules(protect(R, cb))
    for _ in range(3):
        request(engine, clock, 20)
    assert blocked(engine)  # the 4th
    clock.advance(1000)
    assert blocked(engine)
    clock.advance(4000)
    assert not blocked(engine)


def test_error_ratio_100_percent_never_trips(engine: Engine, clock: ManualClock) -> None:
    engine.set_rules(protect(R, breaker("cb", ratio="100%", min_requests=1)))
    for _ in range(5):
        request(engine, clock, 1, error=True)
    assert state(engine) is CLOSED


def test_scenario_19_stats_reset_on_close(
    engine: Engine, clock: ManualClock, transitions: list[Transition]
) -> None:
    """§10.19: error ratio 0.2, min 1, stat 20 s, recovery 10 s."""
    engine.set_rules(protect(R, breaker("cb", ratio="20%", min_requests=1, stat="20s", recovery="10s")))
    request(engine, clock, 1)
    request(engine, clock, 1, error=True)  # 1/2 = 0.5
    assert state(engine) is OPEN
    clock.advance(9000)
    assert blocked(engine)
    clock.advance(1000)
    request(engine, clock, 1, error=True)  # erroring probe
    assert state(engine) is OPEN
    clock.advance(10_000)
    request(engine, clock, 1)  # clean probe
    assert state(engine) is CLOSED
    b = engine.breaker(R, "cb")
    assert b is not None
    assert b.snapshot(clock.now_ns()) == (0, 0)  # the probe's own count was wiped
    for _ in range(6):
        request(engine, clock, 1)
    request(engine, clock, 1, error=True)  # 1/7 = 0.14
    assert state(engine) is CLOSED


def test_scenario_19_reset_matters_inside_one_window(engine: Engine, clock: ManualClock) -> None:
    """As §10.19 with a 60 s window, so everything stays in one window: without the reset on
    close, the earlier errors would re-open the breaker at the next error."""
    engine.set_rules(protect(R, breaker("cb", ratio="20%", min_requests=1, stat="60s", recovery="10s")))
    request(engine, clock, 1)
    request(engine, clock, 1, error=True)
    clock.advance(10_000)
    request(engine, clock, 1, error=True)
    clock.advance(10_000)
    request(engine, clock, 1)
    assert state(engine) is CLOSED
    for _ in range(6):
        request(engine, clock, 1)
    request(engine, clock, 1, error=True)  # 1/7 with the reset (3/11 > 0.2 without it)
    assert state(engine) is CLOSED


def test_scenario_20_two_breakers_probe_blocked_by_the_other(
    engine: Engine, clock: ManualClock, transitions: list[Transition]
) -> None:
    """§10.20: recovery 2 s and 4 s, min 1: one 100 ms request opens both; at +3 s every entry is
    refused and both stay OPEN (the 2 s one goes OPEN->HALF_OPEN->OPEN each time); at +6 s fast
    entries pass and both close."""
    short = slow_breaker("short", max_rt="50ms", ratio="50%", min_requests=1, recovery="2s")
    long = slow_breaker("long", max_rt="50ms", ratio="50%", min_requests=1, recovery="4s")
    engine.set_rules(protect(R, short, long))
    request(engine, clock, 100)
    assert (state(engine, "short"), state(engine, "long")) == (OPEN, OPEN)
    clock.advance(3000)
    for _ in range(10):
        with pytest.raises(CircuitBreakerOpenError) as info:
            engine.entry(R)
        assert info.value.strategy == "long"
    assert (state(engine, "short"), state(engine, "long")) == (OPEN, OPEN)
    short_moves = [(t[2], t[3]) for t in transitions if t[1] == "short"]
    assert short_moves == [(CLOSED, OPEN)] + [(OPEN, HALF), (HALF, OPEN)] * 10
    clock.advance(3000)
    for _ in range(10):
        request(engine, clock, 1)
    assert (state(engine, "short"), state(engine, "long")) == (CLOSED, CLOSED)


def test_scenario_21_multi_probe_half_open_extension() -> None:
    """§10.21 (Go's ProbeNum, an extension with no OpenSergo field)."""
    b = CircuitBreaker(
        ratio=0.5, stat_ms=10_000, recovery_ms=1000, min_requests=1, slow_rt_ms=50, probe_num=10
    )
    b.on_complete(0, 100 * MS, False)
    assert b.current_state is OPEN
    now = 1000 * MS
    results = [b.try_pass(now) for _ in range(10)]
    assert results == [PROBE] + [PASS] * 9  # every entry passes while HALF_OPEN
    for i in range(10):
        assert b.current_state is HALF
        b.on_complete(now, 1 * MS, False)
        assert b.probes == (i + 1) % 10
    assert b.current_state is CLOSED

    b2 = CircuitBreaker(
        ratio=0.5, stat_ms=10_000, recovery_ms=1000, min_requests=1, slow_rt_ms=50, probe_num=2
    )
    b2.on_complete(0, 100 * MS, False)
    assert b2.try_pass(now) == PROBE
    b2.on_complete(now, 1 * MS, False)
    assert (b2.current_state, b2.probes) == (HALF, 1)
    b2.on_complete(now, 100 * MS, False)
    assert (b2.current_state, b2.probes) == (OPEN, 0)


def test_single_probe_by_default() -> None:
    b = CircuitBreaker(ratio=0.1, stat_ms=1000, recovery_ms=100, min_requests=1)
    b.on_complete(0, 0, True)
    assert b.try_pass(50 * MS) == BLOCK
    assert b.try_pass(100 * MS) == PROBE
    assert b.try_pass(100 * MS) == BLOCK
    b.revert_probe()
    assert b.current_state is OPEN
    assert b.try_pass(100 * MS) == PROBE  # the retry time was not pushed back


BAD_BREAKERS = [
    ("recoveryTimeout: 0ms", "recoveryTimeout"),  # timeWindow 0
    ("recoveryTimeout: -1s", "recoveryTimeout"),  # timeWindow -1
    ("triggerRatio: 1.1", "triggerRatio"),  # error ratio 1.1
    ("triggerRatio: 15", "triggerRatio"),  # slow ratio 15
    ("minRequestAmount: 0", "minRequestAmount"),
    ("statDuration: 0s", "statDuration"),  # statIntervalMs 0
]


def _breaker_yaml(**overrides: str) -> str:
    fields = {
        "strategy": "ErrorRequestRatio",
        "triggerRatio": "0.5",
        "statDuration": "1s",
        "recoveryTimeout": "1s",
        "minRequestAmount": "5",
    }
    fields.update(overrides)
    spec = "\n".join(f"  {k}: {v}" for k, v in fields.items())
    return (
        "apiVersion: fault-tolerance.opensergo.io/v1alpha1\nkind: CircuitBreakerStrategy\n"
        f"metadata: {{name: cb}}\nspec:\n{spec}\n"
    )


@pytest.mark.parametrize(("override", "field"), BAD_BREAKERS)
def test_scenario_22_invalid_breakers_are_rejected(override: str, field: str) -> None:
    """§10.22: invalid breaker rules never reach the engine (the spec models reject them)."""
    key, value = override.split(": ")
    with pytest.raises(SpecErrors) as info:
        parse_documents(_breaker_yaml(**{key: value}))
    assert field in str(info.value)


@pytest.mark.parametrize("ratio", ["1.0", "0.0", "100%", "0%"])
def test_scenario_22_boundary_ratios_are_valid(ratio: str) -> None:
    (obj,) = parse_documents(_breaker_yaml(triggerRatio=ratio))
    assert CircuitBreaker.from_strategy(obj).ratio in (0.0, 1.0)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"recovery_ms": 0},
        {"recovery_ms": -1},
        {"ratio": 1.1},
        {"ratio": 15},
        {"min_requests": 0},
        {"stat_ms": 0},
    ],
)
def test_scenario_22_breaker_constructor_validates(kwargs: dict[str, float]) -> None:
    args: dict[str, float] = {"ratio": 0.5, "stat_ms": 1000, "recovery_ms": 1000, "min_requests": 5}
    args.update(kwargs)
    with pytest.raises(ValueError):
        CircuitBreaker(**args)  # type: ignore[arg-type]


def test_scenario_22_equal_rule_reload_keeps_the_same_breaker(engine: Engine, clock: ManualClock) -> None:
    engine.set_rules(protect(R, breaker("cb", min_requests=1)))
    first = engine.breaker(R, "cb")
    request(engine, clock, 1, error=True)
    assert state(engine) is OPEN
    # a fresh parse of the same objects (new Python objects, equal content)
    engine.set_rules(protect(R, breaker("cb", min_requests=1)))
    assert engine.breaker(R, "cb") is first
    assert state(engine) is OPEN
    # other strategies and rules may change around it
    rl = rate_limit("rl", 100)
    engine.set_rules([breaker("cb", min_requests=1), rl, rule("other-name", [R], ["cb", rl])])
    assert engine.breaker(R, "cb") is first
    assert first is not None and first.ref.rule == "other-name"
    # a changed strategy gets a fresh breaker
    engine.set_rules(protect(R, breaker("cb", min_requests=2)))
    assert engine.breaker(R, "cb") is not first
    assert state(engine) is CLOSED


def test_blocked_requests_are_not_counted_by_breakers(engine: Engine, clock: ManualClock) -> None:
    engine.set_rules(protect(R, rate_limit("rl", 0), breaker("cb", min_requests=1)))
    b = engine.breaker(R, "cb")
    assert b is not None
    for _ in range(3):
        with pytest.raises(Exception, match="RateLimitStrategy"):
            engine.entry(R)
    assert b.snapshot(clock.now_ns()) == (0, 0)


def test_window_is_tumbling_and_epoch_aligned(engine: Engine, clock: ManualClock) -> None:
    engine.set_rules(protect(R, breaker("cb", ratio="50%", min_requests=4, stat="1s")))
    clock.set_ms(500)
    for _ in range(3):
        request(engine, clock, 1, error=True)
    clock.set_ms(1000)  # a new window starts at the second boundary
    request(engine, clock, 1, error=True)
    assert state(engine) is CLOSED
    b = engine.breaker(R, "cb")
    assert b is not None
    assert b.snapshot(clock.now_ns()) == (1, 1)


def test_listener_failure_does_not_break_requests(engine: Engine, clock: ManualClock) -> None:
    def bad_listener(*args: object) -> None:
        raise RuntimeError("listener bug")

    engine.add_state_listener(bad_listener)
    engine.set_rules(protect(R, breaker("cb", min_requests=1)))
    request(engine, clock, 1, error=True)
    assert state(engine) is OPEN
    engine.remove_state_listener(bad_listener)
    assert engine.breaker_states() == {(R, "cb"): OPEN}


def test_half_open_is_decided_by_the_first_completion(engine: Engine, clock: ManualClock) -> None:
    """Sentinel semantics: a request admitted while CLOSED that finishes while HALF_OPEN decides."""
    engine.set_rules(protect(R, breaker("cb", min_requests=1, recovery="1s")))
    early = engine.entry(R)  # admitted while CLOSED
    request(engine, clock, 1, error=True)
    clock.advance(1000)
    probe = engine.entry(R)
    assert state(engine) is HALF
    early.exit()  # finishes fine
    assert state(engine) is CLOSED
    probe.exit()
