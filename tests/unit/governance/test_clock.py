"""The injectable clocks."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from opensergo.common.clock import SYSTEM_CLOCK, Clock, ManualClock

pytestmark = pytest.mark.unit


def test_system_clock_is_monotonic_ns() -> None:
    assert isinstance(SYSTEM_CLOCK, Clock)
    a = SYSTEM_CLOCK.now_ns()
    b = time.monotonic_ns()
    assert a <= b
    assert abs(SYSTEM_CLOCK.now_ms() - b // 1_000_000) < 1000


def test_manual_clock_advance_and_auto_sleep() -> None:
    clock = ManualClock(start_ms=100)
    assert isinstance(clock, Clock)
    assert clock.now_ms() == 100
    clock.advance(2.5)
    assert clock.now_ns() == 102_500_000
    clock.sleep(0.5)
    assert clock.now_ms() == 602
    assert clock.sleeps == [0.5]
    with pytest.raises(ValueError):
        clock.advance(-1)
    clock.set_ms(10)
    assert clock.now_ms() == 10


def test_manual_clock_sleep_moves_to_the_sleepers_deadline() -> None:
    clock = ManualClock()
    clock.sleep(0.1)
    clock.sleep(0.2)
    assert clock.now_ms() == 300
    clock.sleep(0)
    assert clock.now_ms() == 300
    assert clock.sleeps == [0.1, 0.2, 0]


def test_manual_clock_without_auto_advance_blocks_threads_until_advanced() -> None:
    clock = ManualClock(auto_advance=False)
    done = threading.Event()

    def sleeper() -> None:
        clock.sleep(1.0)
        done.set()

    t = threading.Thread(target=sleeper)
    t.start()
    assert not done.wait(0.05)
    clock.advance(999)
    assert not done.wait(0.05)
    clock.advance(1)
    assert done.wait(5)
    t.join()


async def test_manual_clock_asleep_waits_for_advance() -> None:
    clock = ManualClock(auto_advance=False)
    task = asyncio.create_task(clock.asleep(0.2))
    for _ in range(5):
        await asyncio.sleep(0)
    assert not task.done()
    assert clock.pending_sleepers == 1
    clock.advance(200)
    await asyncio.wait_for(task, 5)
    assert clock.pending_sleepers == 0


async def test_manual_clock_asleep_auto_advances() -> None:
    clock = ManualClock()
    await clock.asleep(0.25)
    assert clock.now_ms() == 250
