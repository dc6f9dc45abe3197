"""Load balancers: distribution, P2C, ring hash stability, policy selection from VirtualWorkload."""

from __future__ import annotations

import collections
import random

import pytest

from opensergo.governance.routing import (
    ConsistentHash,
    LeastRequest,
    NoAvailableInstance,
    RandomBalancer,
    RoundRobin,
    SimpleRequest,
    build_balancer,
)
from opensergo.spec.traffic import LoadBalancerSettings

from .helpers import CANONICAL, SERVICE, directory, instance, router, workload

pytestmark = pytest.mark.unit

FIVE = [instance(f"i{n}", 8000 + n, version="v1") for n in range(5)]


def settings(**spec: object) -> LoadBalancerSettings:
    return LoadBalancerSettings.model_validate(spec)


def test_default_policy_is_round_robin() -> None:
    balancer = build_balancer(None, FIVE, random.Random(1))
    assert isinstance(balancer, RoundRobin)
    picks = [balancer.pick(None).name for _ in range(10)]
    assert sorted(picks[:5]) == [i.name for i in FIVE]
    assert picks[:5] == picks[5:]  # a strict rotation


@pytest.mark.parametrize("name", ["ROUND_ROBIN", "UNSPECIFIED", "PASSTHROUGH", "round_robin"])
def test_round_robin_aliases(name: str) -> None:
    assert isinstance(build_balancer(settings(simple=name), FIVE, random.Random(1)), RoundRobin)


def test_weighted_round_robin_is_smooth_and_proportional() -> None:
    heavy = instance("heavy", weight=300)
    light = instance("light", weight=100)
    balancer = build_balancer(None, [heavy, light], random.Random(1))
    picks = [balancer.pick(None).name for _ in range(400)]
    assert collections.Counter(picks) == {"heavy": 300, "light": 100}
    assert "light,light" not in ",".join(picks)  # interleaved, not in blocks


def test_random_is_uniform() -> None:
    balancer = build_balancer(settings(simple="RANDOM"), FIVE, random.Random(42))
    assert isinstance(balancer, RandomBalancer)
    counts = collections.Counter(balancer.pick(None).name for _ in range(10_000))
    assert set(counts) == {i.name for i in FIVE}
    assert all(abs(c - 2000) < 200 for c in counts.values())


def test_random_honours_instance_weights() -> None:
    balancer = build_balancer(
        settings(simple="RANDOM"), [instance("x", weight=90), instance("y", weight=10)], random.Random(5)
    )
    counts = collections.Counter(balancer.pick(None).name for _ in range(10_000))
    assert abs(counts["y"] / 10_000 - 0.10) < 0.015


@pytest.mark.parametrize("name", ["LEAST_REQUEST", "LEAST_CONN"])
def test_least_request_prefers_the_less_loaded(name: str) -> None:
    instances = [instance(f"l{n}") for n in range(4)]
    balancer = build_balancer(settings(simple=name), instances, random.Random(9))
    assert isinstance(balancer, LeastRequest)
    instances[0].active = 10
    instances[1].active = 10
    instances[2].active = 10
    counts = collections.Counter(balancer.pick(None).name for _ in range(3000))
    # P2C: l3 wins every draw it is part of (1 - (3/4 * 2/3) = 1/2 of draws); the others share the rest.
    assert 0.45 < counts["l3"] / 3000 < 0.55
    assert counts["l3"] > 2.5 * max(counts["l0"], counts["l1"], counts["l2"])


def test_least_request_balances_in_flight_load() -> None:
    instances = [instance(f"l{n}") for n in range(3)]
    balancer = build_balancer(settings(simple="LEAST_REQUEST"), instances, random.Random(2))
    held = []
    for _ in range(300):  # requests that never finish: the in-flight counts must stay close
        chosen = balancer.pick(None)
        chosen.acquire()
        held.append(chosen)
    loads = sorted(i.active for i in instances)
    assert loads[-1] - loads[0] <= 3
    for chosen in held:
        chosen.release()
    assert all(i.active == 0 for i in instances)


def test_least_request_single_instance() -> None:
    balancer = build_balancer(settings(simple="LEAST_REQUEST"), FIVE[:1], random.Random(1))
    assert balancer.pick(None) is FIVE[0]


def test_consistent_hash_on_header_is_stable() -> None:
    policy = settings(consistentHash={"httpHeaderName": "X-User-Id"})
    balancer = build_balancer(policy, FIVE, random.Random(1))
    assert isinstance(balancer, ConsistentHash)
    for user in ("1", "2", "alice", "bob"):
        request = SimpleRequest(headers={"x-user-id": user})
        assert len({balancer.pick(request).name for _ in range(20)}) == 1
    # The same keys map to the same instances in a new balancer (a new process) too.
    again = build_balancer(policy, list(reversed(FIVE)), random.Random(99))
    for user in map(str, range(100)):
        request = SimpleRequest(headers={"x-user-id": user})
        assert again.pick(request) is balancer.pick(request)


def test_consistent_hash_spreads_keys_and_moves_only_the_removed_instances_keys() -> None:
    policy = settings(consistentHash={"httpHeaderName": "x-user-id"})
    before = build_balancer(policy, FIVE, random.Random(1))
    after = build_balancer(policy, FIVE[:4], random.Random(1))
    keys = [SimpleRequest(headers={"x-user-id": str(n)}) for n in range(2000)]
    owners = collections.Counter(before.pick(k).name for k in keys)
    assert set(owners) == {i.name for i in FIVE}
    assert min(owners.values()) > 200  # 160 entries per instance: reasonably even
    for key in keys:
        first = before.pick(key)
        if first is not FIVE[4]:
            assert after.pick(key) is first


def test_consistent_hash_missing_key_picks_at_random() -> None:
    balancer = build_balancer(
        settings(consistentHash={"httpHeaderName": "x-user-id"}), FIVE, random.Random(3)
    )
    assert len({balancer.pick(SimpleRequest()).name for _ in range(200)}) == 5
    assert len({balancer.pick(None).name for _ in range(200)}) == 5


def test_consistent_hash_on_cookie_query_and_source() -> None:
    by_cookie = build_balancer(
        settings(consistentHash={"httpCookie": {"name": "sid"}}), FIVE, random.Random(1)
    )
    request = SimpleRequest(headers={"cookie": "a=1; sid=abc; b=2"})
    assert len({by_cookie.pick(request).name for _ in range(20)}) == 1
    by_query = build_balancer(
        settings(consistentHash={"httpQueryParameterName": "user"}), FIVE, random.Random(1)
    )
    assert len({by_query.pick(SimpleRequest(path="/?user=7")).name for _ in range(20)}) == 1
    by_source = build_balancer(
        settings(consistentHash={"useSourceIp": True}), FIVE, random.Random(1), source_key="me"
    )
    assert len({by_source.pick(None).name for _ in range(20)}) == 1


def test_empty_list_raises() -> None:
    with pytest.raises(NoAvailableInstance):
        build_balancer(None, [], random.Random(1), service="svc").pick(None)


def test_subset_policy_overrides_the_host_policy() -> None:
    vw = workload(
        {
            "host": SERVICE,
            "trafficPolicy": {"loadBalancer": {"simple": "RANDOM"}},
            "subsets": [
                {"name": "v1", "labels": {"version": "v1"}},
                {
                    "name": "v2",
                    "labels": {"version": "v2"},
                    "trafficPolicy": {"loadBalancer": {"consistentHash": {"httpHeaderName": "x-user-id"}}},
                },
            ],
        }
    )
    v1 = [instance(f"a{n}", version="v1") for n in range(3)]
    v2 = [instance(f"b{n}", version="v2") for n in range(3)]
    d = directory([*v1, *v2], [router(CANONICAL)], [vw])
    gray = SimpleRequest(headers={"tag": "v2", "x-user-id": "42"})
    assert len({d.choose(SERVICE, gray).name for _ in range(30)}) == 1  # consistent hash
    base = [d.choose(SERVICE, SimpleRequest()).name for _ in range(30)]
    assert set(base) <= {"a0", "a1", "a2"} and base[:3] != base[3:6]  # random, not a rotation


def test_host_policy_applies_without_a_router() -> None:
    vw = workload({"host": SERVICE, "trafficPolicy": {"loadBalancer": {"simple": "LEAST_REQUEST"}}})
    instances = [instance(f"a{n}") for n in range(2)]
    d = directory(instances, [], [vw])
    instances[0].active = 5
    assert {d.choose(SERVICE).name for _ in range(20)} == {"a1"}


def test_consistent_hash_minimum_ring_size() -> None:
    small = build_balancer(settings(consistentHash={"httpHeaderName": "k"}), FIVE[:2], random.Random(1))
    large = build_balancer(
        settings(consistentHash={"httpHeaderName": "k", "ringHash": {"minimumRingSize": 4096}}),
        FIVE[:2],
        random.Random(1),
    )
    assert isinstance(small, ConsistentHash) and isinstance(large, ConsistentHash)
    assert len(small._hashes) == 320 and len(large._hashes) == 4096
