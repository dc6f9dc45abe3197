"""ThrottlingStrategy: reference §10 scenarios 9-14, and queueing without blocking the event loop."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from opensergo.common.clock import NS_PER_MS
from opensergo.governance import (
    CircuitBreakerOpenError,
    Engine,
    ManualClock,
    SystemClock,
    ThrottledError,
    guard,
)
from opensergo.governance.faulttolerance.throttling import REJECT, Throttler

from .conftest import breaker, concurrency, protect, rate_limit, throttling
from .test_concurrency import fast_switching  # noqa: F401 - fixture

pytestmark = pytest.mark.unit

R = "POST:/orders"
MS = NS_PER_MS


def test_scenario_09_pacing_sequential_calls(clock: ManualClock) -> None:
    """§10.9: 10/s, queue 500 ms: 6 sequential calls all pass, ~100 ms apart, > 400 ms in all."""
    engine = Engine(clock=clock)
    engine.set_rules(protect(R, throttling("th", "100ms", "500ms")))
    returned_at = []
    for _ in range(6):
        engine.entry(R).exit()
        returned_at.append(clock.now_ms())
    assert returned_at == [0, 100, 200, 300, 400, 500]
    assert returned_at[-1] - returned_at[0] > 400
    assert clock.sleeps == [0.1] * 5


def test_scenario_09_simultaneous_arrivals_controller() -> None:
    """§10.9 derived: 7 callers at the same instant get waits 0, 100, ..., 500 ms; the 7th is rejected."""
    t = Throttler(10, 1000, 500)  # Sentinel Java's form: count 10 per second
    waits = [t.reserve(0) for _ in range(7)]
    assert waits[:6] == [k * 100 * MS for k in range(6)]
    assert waits[6] == REJECT


async def test_scenario_09_simultaneous_arrivals_asyncio() -> None:
    """The same through the engine with asyncio callers; queued ones wait for virtual time."""
    clock = ManualClock(auto_advance=False)
    engine = Engine(clock=clock)
    engine.set_rules(protect(R, throttling("th", "100ms", "500ms")))
    done_at: dict[int, int] = {}

    @guard(R, engine=engine)
    async def call(i: int) -> None:
        done_at[i] = clock.now_ms()

    tasks = [asyncio.create_task(call(i)) for i in range(7)]
    for _ in range(1000):
        if clock.pending_sleepers == 5 and tasks[6].done():
            break
        await asyncio.sleep(0)
    assert done_at == {0: 0}
    assert isinstance(tasks[6].exception(), ThrottledError)
    assert clock.sleeps == [0.1, 0.2, 0.3, 0.4, 0.5]
    for k in range(1, 6):
        clock.advance(100)
        await asyncio.wait_for(tasks[k], 5)
        assert done_at[k] == 100 * k


def test_scenario_10_throttling_under_concurrency() -> None:
    """§10.10: 10 threads at once, 10/s, queue 500 ms -> at least one rejected (exactly 4 when frozen)."""
    clock = ManualClock(auto_advance=False)
    engine = Engine(clock=clock)
    engine.set_rules(protect(R, throttling("th", "100ms", "500ms")))
    lock = threading.Lock()
    outcome = {"passed": 0, "rejected": 0}
    barrier = threading.Barrier(10)

    def caller() -> None:
        barrier.wait()
        try:
            engine.entry(R).exit()
            key = "passed"
        except ThrottledError:
            key = "rejected"
        with lock:
            outcome[key] += 1

    threads = [threading.Thread(target=caller) for _ in range(10)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    # wait until every caller has passed, been rejected, or is asleep in the queue
    while outcome["passed"] + outcome["rejected"] + len(clock.sleeps) < 10:
        assert time.monotonic() < deadline, outcome
        time.sleep(0.001)
    clock.advance(1000)
    for t in threads:
        t.join(10)
    assert outcome["rejected"] >= 1
    assert outcome == {"passed": 6, "rejected": 4}


def test_scenario_11_zero_rate() -> None:
    """§10.11: count 0: acquire 1 -> reject; acquire 0 -> pass."""
    t = Throttler(0, 1000, 500)
    assert t.reserve(0, 1) == REJECT
    assert t.reserve(0, 0) == 0


def test_scenario_12_pacing_without_queue() -> None:
    """§10.12: 50 per 10 000 ms (200 ms spacing), queue 0."""
    t = Throttler(50, 10_000, 0)
    now = 1_000 * MS
    assert t.reserve(now, 51) == REJECT  # a batch above the threshold
    assert t.reserve(now, 50) == 0
    assert all(t.reserve(now) == REJECT for _ in range(10))
    now += (10 * 200 + 10) * MS
    assert t.reserve(now) == 0
    assert t.reserve(now) == REJECT


def test_scenario_13_queue_depth() -> None:
    """§10.13: 200 ms spacing, queue 2000 ms: after the first pass, of 20 immediate requests the
    first 10 wait 200*k ms and the other 10 are rejected."""
    t = Throttler(50, 10_000, 2000)
    now = 5_000 * MS
    assert t.reserve(now) == 0
    waits = [t.reserve(now) for _ in range(20)]
    assert waits[:10] == [200 * k * MS for k in range(1, 11)]
    assert waits[10:] == [REJECT] * 10


@pytest.mark.usefixtures("fast_switching")
def test_scenario_14_exact_under_a_frozen_clock() -> None:
    """§10.14: 512 simultaneous callers, frozen clock, no queueing room -> exactly one passes."""
    t = Throttler(1, 100, 0)
    barrier = threading.Barrier(512)
    results: list[int] = []

    def caller() -> None:
        barrier.wait()
        results.append(t.reserve(10 * MS))

    threads = [threading.Thread(target=caller) for _ in range(512)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert results.count(0) == 1
    assert results.count(REJECT) == 511


@pytest.mark.usefixtures("fast_switching")
def test_scenario_14_through_the_engine() -> None:
    clock = ManualClock(auto_advance=False)
    engine = Engine(clock=clock)
    # queueTimeout must be positive in a CR; 1 ms is far below the 100 ms spacing
    engine.set_rules(protect(R, throttling("th", "100ms", "1ms")))
    barrier = threading.Barrier(512)
    passed: list[int] = []
    rejected: list[int] = []

    def caller() -> None:
        barrier.wait()
        try:
            engine.entry(R).exit()
            passed.append(1)
        except ThrottledError:
            rejected.append(1)

    threads = [threading.Thread(target=caller) for _ in range(512)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert (len(passed), len(rejected)) == (1, 511)
    assert clock.sleeps == []


def test_opensergo_spacing_is_kept_exactly() -> None:
    """§10.28: 20 ms / 500 ms -> 20 ms spacing (no rounding through a per-second count)."""
    t = Throttler.from_strategy(throttling("th", "30ms", "500ms"))
    assert t.spacing_ms == 30
    assert t.queue_timeout_ms == 500
    waits = [t.reserve(0) for _ in range(3)]
    assert waits == [0, 30 * MS, 60 * MS]


def test_zero_interval_never_waits() -> None:
    t = Throttler.from_strategy(throttling("th", "0ms", "10ms"))
    assert [t.reserve(0) for _ in range(5)] == [0] * 5


def test_throttling_state_kept_across_equal_reload(clock: ManualClock) -> None:
    engine = Engine(clock=clock)
    objects = protect(R, throttling("th", "100ms", "500ms"))
    engine.set_rules(objects)
    engine.entry(R).exit()
    engine.set_rules(protect(R, throttling("th", "100ms", "500ms")))
    engine.entry(R).exit()
    assert clock.sleeps == [0.1]  # the reload did not reset the pacing
    engine.set_rules(protect(R, throttling("th", "50ms", "500ms")))  # changed: fresh state
    engine.entry(R).exit()
    assert clock.sleeps == [0.1]


def test_queued_request_keeps_its_concurrency_slot_and_open_breaker_refuses_before_queueing(
    clock: ManualClock,
) -> None:
    engine = Engine(clock=clock)
    cb = breaker("cb", min_requests=1, recovery="10s")
    engine.set_rules(protect(R, concurrency("cc", 5), throttling("th", "100ms", "500ms"), cb))
    e1 = engine.entry(R)
    e1.exit(RuntimeError("boom"))  # opens the breaker
    with pytest.raises(CircuitBreakerOpenError):
        engine.entry(R)
    assert clock.sleeps == []  # refused without queueing first
    assert engine.in_flight(R) == 0


def test_rejected_request_releases_its_slot(clock: ManualClock) -> None:
    engine = Engine(clock=clock)
    engine.set_rules(protect(R, concurrency("cc", 5), throttling("th", "100ms", "50ms")))
    entry = engine.entry(R)
    with pytest.raises(ThrottledError) as info:
        engine.entry(R)
    assert info.value.kind == "ThrottlingStrategy"
    assert engine.in_flight(R) == 1
    entry.exit()
    assert engine.in_flight(R) == 0


async def test_asyncio_queue_does_not_block_the_loop_manual_clock() -> None:
    """While one task waits in the throttling queue, other tasks keep running."""
    clock = ManualClock(auto_advance=False)
    engine = Engine(clock=clock)
    engine.set_rules(protect(R, throttling("th", "200ms", "1s")))
    ticks = 0
    stop = False

    async def ticker() -> None:
        nonlocal ticks
        while not stop:
            ticks += 1
            await asyncio.sleep(0)

    tick_task = asyncio.create_task(ticker())
    first = await engine.aentry(R)  # passes at once
    first.exit()
    queued = asyncio.create_task(engine.aentry(R))
    while clock.pending_sleepers == 0:
        await asyncio.sleep(0)
    before = ticks
    for _ in range(50):
        await asyncio.sleep(0)
    assert not queued.done()
    assert ticks >= before + 40  # the loop kept running other tasks
    clock.advance(200)
    entry = await asyncio.wait_for(queued, 5)
    entry.exit()
    stop = True
    await tick_task
    assert clock.sleeps == [0.2]


async def test_asyncio_queue_does_not_block_the_loop_real_clock() -> None:
    engine = Engine(clock=SystemClock())
    engine.set_rules(protect(R, throttling("th", "80ms", "1s")))
    ticks = 0
    stop = False

    @guard(R, engine=engine)
    async def handler() -> tuple[float, int]:
        return time.monotonic(), ticks

    async def ticker() -> None:
        nonlocal ticks
        while not stop:
            ticks += 1
            await asyncio.sleep(0.001)

    first, _ = await handler()
    tick_task = asyncio.create_task(ticker())
    second, ticks_meanwhile = await handler()  # queued for ~80 ms after the first
    stop = True
    await tick_task
    assert second - first >= 0.07
    assert ticks_meanwhile >= 3  # the loop ran the ticker while the handler waited


async def test_cancelled_while_queued_releases_the_slot() -> None:
    clock = ManualClock(auto_advance=False)
    engine = Engine(clock=clock)
    engine.set_rules(protect(R, concurrency("cc", 3), rate_limit("rl", 100), throttling("th", "100ms", "1s")))
    (await engine.aentry(R)).exit()
    queued = asyncio.create_task(engine.aentry(R))
    while clock.pending_sleepers == 0:
        await asyncio.sleep(0)
    assert engine.in_flight(R) == 1
    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    assert engine.in_flight(R) == 0
    checks = engine.checks(R)
    assert checks is not None
    assert checks.rates[0][0].pass_count(clock.now_ns()) == 1  # only the one that ran
