"""ConcurrencyLimitStrategy: reference §10 scenarios 5-6, and exactness under threads and asyncio."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Iterator

import pytest

from opensergo.governance import (
    ConcurrencyLimitedError,
    Engine,
    Entry,
    ManualClock,
    RateLimitedError,
    guard,
)

from .conftest import concurrency, protect, rate_limit, rule

pytestmark = pytest.mark.unit

R = "/pkg.Svc/Method"


def test_scenario_05_concurrency_boundary(engine: Engine) -> None:
    """§10.5: maxConcurrency 8: with 7 in flight the next passes; with 8 in flight it is blocked."""
    engine.set_rules(protect(R, concurrency("cc", 8)))
    entries = [engine.entry(R) for _ in range(7)]
    entries.append(engine.entry(R))  # 7 in flight -> passes
    assert engine.in_flight(R) == 8
    with pytest.raises(ConcurrencyLimitedError) as info:
        engine.entry(R)  # 8 in flight -> blocked
    assert info.value.strategy == "cc"
    for e in entries:
        e.exit()
    assert engine.in_flight(R) == 0


def test_scenario_05_go_form_and_06_release_on_exit(engine: Engine) -> None:
    """§10.5 (Go): 10 pass without exit, the 11th is blocked. §10.6: exiting one lets the next in;
    a blocked entry leaves nothing to exit and does not decrement."""
    engine.set_rules(protect(R, concurrency("cc", 10)))
    entries: list[Entry] = [engine.entry(R) for _ in range(10)]
    with pytest.raises(ConcurrencyLimitedError):
        engine.entry(R)
    assert engine.in_flight(R) == 10  # the blocked one never counted
    entries.pop().exit()
    entries[0].exit()
    entries[0].exit()  # exit is idempotent: one release only
    assert engine.in_flight(R) == 8
    entries.append(engine.entry(R))
    entries.append(engine.entry(R))
    with pytest.raises(ConcurrencyLimitedError):
        engine.entry(R)
    for e in entries[1:]:
        e.exit()
    assert engine.in_flight(R) == 0


def test_slot_given_back_when_a_later_check_refuses(engine: Engine) -> None:
    engine.set_rules(protect(R, concurrency("cc", 1), rate_limit("rl", 0)))
    for _ in range(3):
        with pytest.raises(RateLimitedError):
            engine.entry(R)
    assert engine.in_flight(R) == 0


def test_smallest_of_several_limits_applies_and_is_reported(engine: Engine) -> None:
    wide = concurrency("wide", 5)
    narrow = concurrency("narrow", 2)
    engine.set_rules([wide, narrow, rule("r1", [R], [wide]), rule("r2", [R], [narrow])])
    a, b = engine.entry(R), engine.entry(R)
    with pytest.raises(ConcurrencyLimitedError) as info:
        engine.entry(R)
    assert (info.value.rule, info.value.strategy) == ("r2", "narrow")
    a.exit()
    b.exit()


def test_zero_concurrency_blocks_everything(engine: Engine) -> None:
    engine.set_rules(protect(R, concurrency("cc", 0)))
    with pytest.raises(ConcurrencyLimitedError):
        engine.entry(R)
    assert engine.in_flight(R) == 0


@pytest.fixture
def fast_switching() -> Iterator[None]:
    """Make the interpreter switch threads as often as it can, to provoke races."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(old)


@pytest.mark.usefixtures("fast_switching")
def test_limit_never_exceeded_with_4_threads() -> None:
    limit = 3
    engine = Engine(clock=ManualClock())
    engine.set_rules(protect(R, concurrency("cc", limit)))
    lock = threading.Lock()
    state = {"inside": 0, "max": 0, "passed": 0, "blocked": 0}
    barrier = threading.Barrier(4)

    @guard(R, engine=engine)
    def work() -> None:
        with lock:
            state["inside"] += 1
            state["max"] = max(state["max"], state["inside"])
        for _ in range(20):  # give other threads a chance to run inside
            pass
        with lock:
            state["inside"] -= 1

    def run() -> None:
        barrier.wait()
        for _ in range(3000):
            try:
                work()
                with lock:
                    state["passed"] += 1
            except ConcurrencyLimitedError:
                with lock:
                    state["blocked"] += 1

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert state["max"] <= limit
    assert engine.in_flight(R) == 0
    assert state["passed"] + state["blocked"] == 12_000
    assert state["passed"] > 0


@pytest.mark.usefixtures("fast_switching")
def test_gauge_check_and_count_exact_with_4_threads_on_the_raw_entry_api() -> None:
    """Entries held across thread switches: never more than the limit admitted at once."""
    limit = 2
    engine = Engine(clock=ManualClock())
    engine.set_rules(protect(R, concurrency("cc", limit)))
    lock = threading.Lock()
    holders = [0, 0]  # current, peak
    barrier = threading.Barrier(4)

    def run() -> None:
        barrier.wait()
        for _ in range(3000):
            try:
                entry = engine.entry(R)
            except ConcurrencyLimitedError:
                continue
            with lock:
                holders[0] += 1
                holders[1] = max(holders[1], holders[0])
            with lock:
                holders[0] -= 1
            entry.exit()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 1 <= holders[1] <= limit
    assert engine.in_flight(R) == 0


async def test_limit_never_exceeded_with_1000_asyncio_tasks() -> None:
    limit = 10
    engine = Engine(clock=ManualClock())
    engine.set_rules(protect(R, concurrency("cc", limit)))
    inside = 0
    peak = 0
    passed = blocked = 0

    @guard(R, engine=engine)
    async def work() -> None:
        nonlocal inside, peak
        inside += 1
        peak = max(peak, inside)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        inside -= 1

    async def one() -> None:
        nonlocal passed, blocked
        try:
            await work()
            passed += 1
        except ConcurrencyLimitedError:
            blocked += 1

    await asyncio.gather(*(one() for _ in range(1000)))
    assert peak == limit
    assert passed + blocked == 1000
    assert passed >= limit
    assert engine.in_flight(R) == 0


async def test_shared_guard_object_with_1000_asyncio_tasks() -> None:
    """One guard object entered by many tasks at once (async with) keeps every entry apart."""
    limit = 7
    engine = Engine(clock=ManualClock())
    engine.set_rules(protect(R, concurrency("cc", limit)))
    shared = guard(R, engine=engine)
    peak = inside = 0
    blocked = 0

    async def one() -> None:
        nonlocal peak, inside, blocked
        try:
            async with shared:
                inside += 1
                peak = max(peak, inside)
                await asyncio.sleep(0)
                inside -= 1
        except ConcurrencyLimitedError:
            blocked += 1

    await asyncio.gather(*(one() for _ in range(1000)))
    assert peak == limit
    assert blocked > 0
    assert engine.in_flight(R) == 0
