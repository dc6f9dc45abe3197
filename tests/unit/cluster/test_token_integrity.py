"""The token service's integrity and fairness rules (GlobalLimits), on a manual clock.

* A give-back credits at most what that client leased in that bucket and has not given back.
* A contended budget is shared: a client may take beyond ``ceil(threshold / clients)`` only what
  the other clients' demand (held + refused, each up to its fair share) leaves free.
"""

from __future__ import annotations

import pytest

from opensergo.common.clock import ManualClock
from opensergo.controlplane.tokens import GlobalLimits, share_cap
from tests.unit.cluster.test_global_limits import snapshots_with

pytestmark = pytest.mark.unit

FT = "fault-tolerance.opensergo.io/v1alpha1"
RULES = f"""
apiVersion: {FT}
kind: RateLimitStrategy
metadata: {{name: rl, labels: {{app: shop}}}}
spec: {{metricType: RequestAmount, limitMode: Global, threshold: 100, statDurationSeconds: 1}}
---
apiVersion: {FT}
kind: ConcurrencyLimitStrategy
metadata: {{name: cc, labels: {{app: shop}}}}
spec: {{maxConcurrency: 6, limitMode: Global}}
"""
RATE = ("default", "shop", "GET:/buy", "rl")
PERMITS = ("default", "shop", "GET:/slow", "cc")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def limits(clock: ManualClock) -> GlobalLimits:
    return GlobalLimits(snapshots_with(RULES), clock=clock.now_ns)


def test_share_cap() -> None:
    # Within the fair share: everything asked.
    assert share_cap(100, 0, 50, [], 2) == 50
    # Beyond it: only what the others' demand (up to their fair shares) leaves.
    assert share_cap(100, 0, 100, [10], 2) == 90
    assert share_cap(100, 0, 100, [80], 2) == 50
    assert share_cap(100, 50, 10, [80], 2) == 0
    # Never below the fair share, and rounding up: 3 clients of 10 get 4 each.
    assert share_cap(10, 0, 10, [10, 10], 3) == 4


def test_a_give_back_credits_only_what_the_client_leased_in_that_bucket(
    limits: GlobalLimits, clock: ManualClock
) -> None:
    lease = limits.lease(RATE, 100, "a")
    assert lease.granted == 100
    # Another client (or one that leased nothing) gives back: nothing is credited.
    limits.give_back(RATE, 100, lease.bucket, "b")
    assert limits.lease(RATE, 10, "b").granted == 0
    # Another bucket of the same client: nothing either.
    clock.advance(150)
    limits.give_back(RATE, 100, lease.bucket + 1, "a")
    assert limits.lease(RATE, 10, "c").granted == 0
    # The client's own unused tokens, once.
    limits.give_back(RATE, 30, lease.bucket, "a")
    limits.give_back(RATE, 30, lease.bucket, "a")
    limits.give_back(RATE, 80, lease.bucket, "a")  # it holds 40 now: 40 of them
    assert limits.refused_give_backs == 100 + 100 + 40
    # 100 are free again; b's refused 10 stay reserved for b (a client's unmet demand).
    assert limits.lease(RATE, 200, "c").granted == 90
    assert limits.lease(RATE, 10, "b").granted == 10


def test_an_idle_budget_goes_to_whoever_asks(limits: GlobalLimits) -> None:
    """Work-conserving: a busy client takes what a quiet one does not ask for."""
    assert limits.lease(RATE, 2, "quiet").granted == 2
    assert limits.lease(RATE, 200, "busy").granted == 98


def test_a_greedy_client_gets_its_share_once_others_ask(limits: GlobalLimits, clock: ManualClock) -> None:
    assert limits.lease(RATE, 100, "greedy").granted == 100  # nobody else asked: all of it
    clock.advance(500)
    assert [limits.lease(RATE, 10, "other").granted for _ in range(6)] == [0] * 6  # 60 asked, refused
    clock.advance(550)  # the greedy lease left the window; the other's asks have not
    assert limits.lease(RATE, 100, "greedy").granted == 50
    assert limits.lease(RATE, 100, "greedy").granted == 0
    assert [limits.lease(RATE, 10, "other").granted for _ in range(6)] == [10] * 5 + [0]


def test_persistent_askers_share_evenly_from_the_second_window(
    limits: GlobalLimits, clock: ManualClock
) -> None:
    """Three clients ask every 25 ms, one of them first and for 50 at a time, the others for 10.
    In the first second the big asker takes what the others had not asked for yet; from then on
    the others' refused asks count as demand, and each second splits about evenly."""
    asks = {"big": 50, "b": 10, "c": 10}
    per_second: dict[int, dict[str, int]] = {}
    for step in range(120):  # 3 s
        second = per_second.setdefault(step * 25 // 1000, dict.fromkeys(asks, 0))
        for client, count in asks.items():
            second[client] += limits.lease(RATE, count, client).granted
        clock.advance(25)
    assert per_second[0]["big"] >= 80
    for second in (per_second[1], per_second[2]):
        assert sum(second.values()) == 100
        assert all(30 <= granted <= 34 for granted in second.values()), second


def test_a_client_that_left_frees_its_share(limits: GlobalLimits) -> None:
    assert limits.lease(RATE, 60, "a").granted == 60
    assert limits.lease(RATE, 60, "b").granted == 40
    limits.release_client("a")  # its stream ended: it no longer counts as asking
    assert limits.lease(RATE, 60, "b").granted == 0  # a's 60 stay counted in the window


def test_concurrency_permits_are_shared(limits: GlobalLimits, clock: ManualClock) -> None:
    assert limits.acquire(PERMITS, "greedy", 6).granted == 6
    assert limits.acquire(PERMITS, "other", 2).granted == 0  # other wants 2
    limits.release(PERMITS, "greedy", 2)
    # greedy holds 4, more than max(fair 3, 6 - the 2 other wants): the freed permits wait for other.
    assert limits.acquire(PERMITS, "greedy", 2).granted == 0
    assert limits.acquire(PERMITS, "other", 2).granted == 2
    limits.release(PERMITS, "other", 1)
    assert limits.acquire(PERMITS, "greedy", 1).granted == 1  # other holds 1 and wants no more
    assert limits.held(PERMITS) == 6
    # A refusal counts as wanting for a second only.
    assert limits.acquire(PERMITS, "other", 3).granted == 0
    limits.release(PERMITS, "greedy", 2)
    assert limits.acquire(PERMITS, "greedy", 2).granted == 0
    clock.advance(1500)
    assert limits.acquire(PERMITS, "greedy", 2).granted == 2
