"""Compiling rules: references, problems, ordering, atomic swaps, state across reloads, §10.28."""

from __future__ import annotations

import logging
import threading
import traceback

import pytest

from opensergo.governance import (
    BlockedError,
    CircuitBreakerOpenError,
    ConcurrencyLimitedError,
    Engine,
    FallbackResponse,
    ManualClock,
    OverloadedError,
    RateLimitedError,
    ThrottledError,
)
from opensergo.governance.faulttolerance.checks import describe
from opensergo.spec import parse_documents

from .conftest import (
    FakeSampler,
    adaptive,
    breaker,
    concurrency,
    fallback,
    protect,
    rate_limit,
    rule,
    slow_breaker,
    throttling,
)
from .test_concurrency import fast_switching  # noqa: F401 - fixture

pytestmark = pytest.mark.unit

R = "GET:/foo"


def test_rule_with_several_targets_and_strategies(engine: Engine) -> None:
    rl = rate_limit("rl", 1)
    cc = concurrency("cc", 5)
    engine.set_rules([rl, cc, rule("r", ["GET:/a", "GET:/b"], [rl, cc])])
    assert engine.resources == ("GET:/a", "GET:/b")
    for resource in ("GET:/a", "GET:/b"):
        engine.entry(resource).exit()
        with pytest.raises(RateLimitedError):
            engine.entry(resource)  # each target has its own window
    engine.entry("GET:/unguarded").exit()


def test_kindless_reference_resolves_by_name(engine: Engine) -> None:
    rl = rate_limit("only-one", 0)
    result = engine.set_rules([rl, rule("r", [R], ["only-one"])])
    assert result.problems == ()
    with pytest.raises(RateLimitedError):
        engine.entry(R)


def test_unresolvable_references_are_reported_not_raised(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    rl = rate_limit("rl", 0)
    twin_a = rate_limit("twin", 5)
    twin_b = concurrency("twin", 5)
    objects = [
        rl,
        twin_a,
        twin_b,
        rule(
            "r",
            [R],
            [("missing", "RateLimitStrategy"), "nowhere", "twin", ("rl", "RateLimitStrategy")],
            fallback_action="no-such-action",
        ),
    ]
    with caplog.at_level(logging.WARNING, logger="opensergo.governance"):
        result = engine.set_rules(objects)
    assert len(result.problems) == 4
    text = "\n".join(result.problems)
    assert "RateLimitStrategy 'missing' not found" in text
    assert "no strategy named 'nowhere'" in text
    assert "'twin' is ambiguous" in text
    assert "fallbackAction 'no-such-action' not found" in text
    assert engine.problems == result.problems
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 4
    with pytest.raises(RateLimitedError) as info:  # what did resolve still applies
        engine.entry(R)
    assert info.value.fallback is None


def test_references_do_not_cross_namespaces(engine: Engine) -> None:
    rl = rate_limit("rl", 0, namespace="other")
    result = engine.set_rules([rl, rule("r", [R], [rl])])
    assert result.problems and "not found" in result.problems[0]
    engine.entry(R).exit()


def test_strategy_referenced_twice_applies_once(engine: Engine, clock: ManualClock) -> None:
    th = throttling("th", "100ms", "1s")
    engine.set_rules([th, rule("a", [R], [th]), rule("b", [R], [th])])
    checks = engine.checks(R)
    assert checks is not None and len(checks.throttles) == 1
    engine.entry(R).exit()
    engine.entry(R).exit()
    assert clock.sleeps == [0.1]  # paced once, not twice


def test_check_order_adaptive_concurrency_rate_throttle_breaker(
    engine: Engine, sampler: FakeSampler, clock: ManualClock
) -> None:
    cb = breaker("cb", min_requests=1, recovery="1h")
    th = throttling("th", "1h", "1ms")
    rl = rate_limit("rl", 0)
    cc = concurrency("cc", 0)
    ad = adaptive("ad", "CpuPercentage", "10%")
    # referenced in reverse order: the engine orders by kind, not by reference order
    engine.set_rules([cb, th, rl, cc, ad, rule("r", [R], [cb, th, rl, cc, ad])])
    assert describe(engine.checks(R))["breakers"] == [("cb", "CLOSED")]  # type: ignore[arg-type]
    sampler.cpu = 0.9
    with pytest.raises(OverloadedError):
        engine.entry(R)
    sampler.cpu = 0.0
    with pytest.raises(ConcurrencyLimitedError):
        engine.entry(R)
    engine.set_rules([cb, th, rl, rule("r", [R], [cb, th, rl])])
    with pytest.raises(RateLimitedError):
        engine.entry(R)
    engine.set_rules([cb, th, rule("r", [R], [cb, th])])
    engine.entry(R).exit(ValueError("x"))  # opens the breaker; the throttler admitted it
    with pytest.raises(CircuitBreakerOpenError):
        engine.entry(R)  # refused by the open breaker without queueing
    engine.set_rules([th, rule("r", [R], [th])])
    with pytest.raises(ThrottledError):
        engine.entry(R)  # the throttler's state was kept: the next slot is an hour away


def test_block_counters_and_debug_log(engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    rl = rate_limit("rl", 1)
    engine.set_rules([rl, rule("r", [R], [rl])])
    engine.entry(R).exit()
    with caplog.at_level(logging.DEBUG, logger="opensergo.governance"):
        for _ in range(3):
            with pytest.raises(RateLimitedError):
                engine.entry(R)
    assert engine.block_counts() == {(R, "r", "rl"): 3}
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert len(lines) == 3
    assert all(R in line and "'rl'" in line and "'r'" in line for line in lines)
    engine.set_rules([rl, rule("r", [R], [rl])])  # counts survive recompiles
    with pytest.raises(RateLimitedError):
        engine.entry(R)
    assert engine.block_counts() == {(R, "r", "rl"): 4}


def test_fallback_action_is_carried(engine: Engine) -> None:
    fb = fallback("too-many", 429, '{"error": "slow down"}', [("Content-Type", "application/json")])
    rl = rate_limit("rl", 0)
    engine.set_rules([fb, rl, rule("r", [R], [rl], fallback_action="too-many")])
    with pytest.raises(BlockedError) as info:
        engine.entry(R)
    assert info.value.fallback == FallbackResponse(
        429, '{"error": "slow down"}', (("Content-Type", "application/json"),), name="too-many"
    )
    assert info.value.fallback is not None
    assert info.value.fallback.body_bytes == b'{"error": "slow down"}'


def test_update_kind_replaces_one_kind(engine: Engine) -> None:
    rl = rate_limit("rl", 0)
    engine.update_kind("RateLimitStrategy", [rl])
    assert engine.resources == ()
    result = engine.update_kind("FaultToleranceRule", [rule("r", [R], [rl])])
    assert result.resources == (R,)
    with pytest.raises(RateLimitedError):
        engine.entry(R)
    engine.update_kind("RateLimitStrategy", [rate_limit("rl", 10)])
    engine.entry(R).exit()
    engine.update_kind("FaultToleranceRule", [])
    assert engine.checks(R) is None
    with pytest.raises(ValueError):
        engine.update_kind("TrafficRouter", [])
    with pytest.raises(ValueError):
        engine.update_kind("RateLimitStrategy", [concurrency("cc", 1)])


def test_set_rules_ignores_other_kinds(engine: Engine) -> None:
    text = (
        "apiVersion: traffic.opensergo.io/v1alpha1\nkind: TrafficRouter\n"
        "metadata: {name: r, labels: {app: demo}}\nspec: {hosts: [a]}\n"
    )
    objects = parse_documents(text)
    result = engine.set_rules([*objects, *protect(R, rate_limit("rl", 1))])
    assert result.ignored == 1
    assert len(engine.objects()) == 2


def test_scenario_28_opensergo_mapping_is_exact(engine: Engine, clock: ManualClock) -> None:
    """§10.28: throttling 20 ms / 500 ms keeps 20 ms spacing and a 500 ms queue; breaker recovery
    1500 ms stays 1500 ms and 500 ms is kept (Sentinel Java turns them into 1 s and drops 500 ms);
    a rate limit of 10 per statDurationSeconds 1 is 10 per 1 s window."""
    th = throttling("th", "20ms", "500ms")
    cb_long = slow_breaker("cb-1500", max_rt="100ms", min_requests=1, recovery="1500ms")
    cb_short = breaker("cb-500", min_requests=1, recovery="500ms")
    rl = rate_limit("rl", 10, stat_seconds=1)
    engine.set_rules(
        [
            th,
            cb_long,
            cb_short,
            rl,
            rule("a", ["t"], [th]),
            rule("b", ["b"], [cb_long, cb_short]),
            rule("c", ["r"], [rl]),
        ]
    )
    info = describe(engine.checks("t"))  # type: ignore[arg-type]
    assert info["throttles"] == [(20.0, 500.0)]
    b1500, b500 = engine.breaker("b", "cb-1500"), engine.breaker("b", "cb-500")
    assert b1500 is not None and b500 is not None
    assert (b1500.recovery_ns, b500.recovery_ns) == (1_500_000_000, 500_000_000)
    assert describe(engine.checks("r"))["rate_limits"] == [(10, 1000)]  # type: ignore[arg-type]
    checks = engine.checks("r")
    assert checks is not None and checks.rates[0][0].sample_count == 2
    # the 500 ms recovery really is 500 ms
    engine.set_rules([cb_short, rule("b", [R], [cb_short])])
    e = engine.entry(R)
    e.exit(RuntimeError())
    clock.advance(499)
    with pytest.raises(CircuitBreakerOpenError):
        engine.entry(R)
    clock.advance(1)
    engine.entry(R).exit()


@pytest.mark.usefixtures("fast_switching")
def test_recompile_is_atomic_under_concurrent_calls() -> None:
    """Two rule sets that each refuse every request; while they are swapped back and forth, no
    request passes (no empty or half-built table is ever visible) and each refusal comes whole
    from one set."""
    engine = Engine(clock=ManualClock())
    rl = rate_limit("rl", 0)
    cc = concurrency("cc", 0)
    targets = [f"GET:/r{i}" for i in range(20)]
    set_a = [rl, rule("rule-a", targets, [rl])]
    set_b = [cc, rule("rule-b", targets, [cc])]
    engine.set_rules(set_a)
    stop = threading.Event()
    errors: list[str] = []
    seen: set[tuple[str, str]] = set()

    def caller(offset: int) -> None:
        i = offset
        while not stop.is_set():
            resource = targets[i % len(targets)]
            i += 1
            try:
                engine.entry(resource).exit()
                errors.append(f"{resource} passed")
            except RateLimitedError as exc:
                seen.add((exc.rule, exc.strategy))
                if (exc.rule, exc.strategy) != ("rule-a", "rl"):
                    errors.append(f"mixed: {exc}")
            except ConcurrencyLimitedError as exc:
                seen.add((exc.rule, exc.strategy))
                if (exc.rule, exc.strategy) != ("rule-b", "cc"):
                    errors.append(f"mixed: {exc}")

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for n in range(200):
        engine.set_rules(set_b if n % 2 == 0 else set_a)
        table = engine._table
        assert len(table) == len(targets)
        assert len({checks.refs[0].rule for checks in table.values()}) == 1
    stop.set()
    for t in threads:
        t.join()
    assert errors == []
    assert seen == {("rule-a", "rl"), ("rule-b", "cc")}
    assert engine.version == 201
    for resource in targets:
        assert engine.in_flight(resource) == 0


def test_state_kept_across_equal_reloads(engine: Engine, clock: ManualClock) -> None:
    def objects() -> list:  # type: ignore[type-arg]
        return protect(R, concurrency("cc", 2), rate_limit("rl", 3), breaker("cb", min_requests=2))

    engine.set_rules(objects())
    held = engine.entry(R)
    engine.entry(R).exit(RuntimeError())
    engine.entry(R).exit(RuntimeError())  # 2/2 errors: OPEN
    engine.set_rules(objects())  # freshly parsed, equal content
    assert engine.in_flight(R) == 1  # the gauge continues
    b = engine.breaker(R, "cb")
    assert b is not None and b.current_state.name == "OPEN"
    checks = engine.checks(R)
    assert checks is not None
    assert checks.rates[0][0].pass_count(clock.now_ns()) == 3  # so does the window
    held.exit()
    assert engine.in_flight(R) == 0


def test_clear_removes_every_check(engine: Engine) -> None:
    engine.set_rules(protect(R, rate_limit("rl", 0)))
    engine.clear()
    engine.entry(R).exit()
    assert engine.resources == ()


def test_entry_context_manager_and_error_classification(engine: Engine, clock: ManualClock) -> None:
    engine.set_rules(protect(R, breaker("cb", min_requests=2, ratio="40%")))
    with pytest.raises(KeyError), engine.entry(R):
        raise KeyError("x")
    b = engine.breaker(R, "cb")
    assert b is not None and b.snapshot(clock.now_ns()) == (1, 1)
    ignoring = Engine(clock=clock, ignore=(KeyError,))
    ignoring.set_rules(protect(R, breaker("cb", min_requests=2, ratio="40%")))
    with pytest.raises(KeyError), ignoring.entry(R):
        raise KeyError("x")
    b2 = ignoring.breaker(R, "cb")
    assert b2 is not None and b2.snapshot(clock.now_ns()) == (1, 0)


def test_compiled_path_holds_only_the_parts_a_resource_has(engine: Engine, clock: ManualClock) -> None:
    """enter/exit are generated per combination of checks: an absent check leaves no test behind
    (no closure variable, no branch), and a refusal raised in generated code keeps a readable
    traceback."""
    rl, cb, cc = rate_limit("rl", 1), breaker("cb"), concurrency("cc", 5)
    engine.set_rules([rl, cb, cc, rule("rate", ["GET:/rate"], [rl]), rule("all", ["GET:/all"], [rl, cb, cc])])
    rate, every = engine.checks("GET:/rate"), engine.checks("GET:/all")
    assert rate is not None and every is not None
    assert set(rate.enter.__code__.co_freevars) == {"now_ns", "w", "threshold", "refuse_rate"}
    assert rate.exit is None  # a rate limit alone has nothing to do on exit
    assert {"flight", "w", "b"} <= set(every.enter.__code__.co_freevars)
    assert every.exit is not None
    assert set(every.exit.__code__.co_freevars) == {"flight", "now_ns", "b", "min_requests"}
    # One code object per combination, shared by resources with the same parts.
    engine.set_rules([rl, rule("r", ["GET:/x", "GET:/y"], [rl])])
    x, y = engine.checks("GET:/x"), engine.checks("GET:/y")
    assert x is not None and y is not None
    assert x.enter.__code__ is y.enter.__code__ and x.enter is not y.enter
    engine.entry("GET:/x").exit()
    with pytest.raises(RateLimitedError) as refused:
        engine.entry("GET:/x")
    shown = "".join(traceback.format_tb(refused.tb))
    assert "refuse_rate(w, now)" in shown  # the generated source line, from linecache
