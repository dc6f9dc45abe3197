"""Load balancers: pick one instance of a candidate list.

A balancer is bound to one immutable candidate list and built when that list changes, so the
per-request work is an index computation. Policies (VirtualWorkload ``trafficPolicy.loadBalancer``,
Istio DestinationRule semantics; a subset's policy replaces the host's):

* ``ROUND_ROBIN`` (also ``UNSPECIFIED``, ``PASSTHROUGH`` and the default): rotate. Unequal instance
  weights give a smooth weighted round robin schedule (nginx's algorithm).
* ``RANDOM``: uniform, or proportional to the instance weights.
* ``LEAST_REQUEST`` (``LEAST_CONN`` is its deprecated alias): power of two choices, as Envoy:
  draw two distinct instances at random and take the one with fewer requests in flight.
* ``consistentHash``: a ring hash (Envoy's default; ``maglev`` is served by the same ring) over
  64-bit BLAKE2b hashes of ``<nodeId>_<n>``. Each instance owns ``160 * weight / 100`` entries
  (ketama's figure), independent of the other instances, so removing an instance moves only
  the keys it owned; ``minimumRingSize``, when set, raises the counts so the whole ring has at
  least that many entries (as in Envoy, the counts then depend on the membership). The key is
  a header (``httpHeaderName``), a cookie
  (``httpCookie.name``), a query parameter (``httpQueryParameterName``) or, for ``useSourceIp``,
  this process's own identity. A request without the key gets a random instance.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import math
import random
from collections.abc import Callable, Sequence
from typing import Protocol

from opensergo.governance.routing.model import Instance, NoAvailableInstance, RequestView
from opensergo.spec.traffic import ConsistentHashLB, LoadBalancerSettings, SimpleLB

__all__ = [
    "ENTRIES_PER_INSTANCE",
    "Balancer",
    "ConsistentHash",
    "LeastRequest",
    "RandomBalancer",
    "RoundRobin",
    "build_balancer",
    "hash64",
]

ENTRIES_PER_INSTANCE = 160
_MAX_SCHEDULE = 4096


class Balancer(Protocol):
    @property
    def instances(self) -> Sequence[Instance]: ...

    def pick(self, request: RequestView | None) -> Instance: ...


def hash64(data: str) -> int:
    """A stable 64-bit hash (same value in every process, unlike ``hash()``)."""
    return int.from_bytes(hashlib.blake2b(data.encode(), digest_size=8).digest(), "little")


def _equal_weights(instances: Sequence[Instance]) -> bool:
    first = instances[0].weight
    return all(i.weight == first for i in instances)


class _Empty:
    """The balancer of an empty list: always raises."""

    def __init__(self, service: str) -> None:
        self.instances: Sequence[Instance] = ()
        self._service = service

    def pick(self, request: RequestView | None) -> Instance:
        raise NoAvailableInstance(self._service, f"no instance available for {self._service}")


class RoundRobin:
    def __init__(self, instances: Sequence[Instance], rng: random.Random) -> None:
        self.instances = tuple(instances)
        schedule: Sequence[Instance] = self.instances
        if not _equal_weights(self.instances):
            schedule = _smooth_weighted_schedule(self.instances)
        self._schedule = tuple(schedule)
        self._n = len(self._schedule)
        # Start at a random place so that many clients do not all begin with the same instance.
        self._counter = itertools.count(rng.randrange(self._n))

    def pick(self, request: RequestView | None) -> Instance:
        return self._schedule[next(self._counter) % self._n]


def _smooth_weighted_schedule(instances: Sequence[Instance]) -> list[Instance]:
    weights = [i.weight for i in instances]
    divisor = 0
    for w in weights:
        divisor = math.gcd(divisor, w)
    weights = [w // divisor for w in weights]
    total = sum(weights)
    if total > _MAX_SCHEDULE:
        weights = [max(1, round(w * _MAX_SCHEDULE / total)) if w else 0 for w in weights]
        total = sum(weights)
    current = [0] * len(weights)
    schedule: list[Instance] = []
    for _ in range(total):
        for index, w in enumerate(weights):
            current[index] += w
        best = max(range(len(weights)), key=current.__getitem__)
        current[best] -= total
        schedule.append(instances[best])
    return schedule


class RandomBalancer:
    def __init__(self, instances: Sequence[Instance], rng: random.Random) -> None:
        self.instances = tuple(instances)
        self._rng = rng.random
        self._n = len(self.instances)
        self._cumulative: list[int] | None = None
        if not _equal_weights(self.instances):
            self._cumulative = list(itertools.accumulate(i.weight for i in self.instances))

    def pick(self, request: RequestView | None) -> Instance:
        if self._cumulative is None:
            return self.instances[int(self._rng() * self._n)]
        point = self._rng() * self._cumulative[-1]
        return self.instances[bisect.bisect_right(self._cumulative, point)]


class LeastRequest:
    """Power of two choices over the instances' in-flight counters."""

    def __init__(self, instances: Sequence[Instance], rng: random.Random) -> None:
        self.instances = tuple(instances)
        self._n = len(self.instances)
        self._rng = rng.random

    def pick(self, request: RequestView | None) -> Instance:
        n = self._n
        if n == 1:
            return self.instances[0]
        first = int(self._rng() * n)
        second = int(self._rng() * (n - 1))
        if second >= first:
            second += 1
        a, b = self.instances[first], self.instances[second]
        return b if b.active < a.active else a


def _cookie(header: str | None, name: str) -> str | None:
    if not header:
        return None
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value.strip('"')
    return None


def _key_function(policy: ConsistentHashLB, source_key: str) -> Callable[[RequestView | None], str | None]:
    if policy.httpHeaderName is not None:
        header = policy.httpHeaderName.lower()
        return lambda request: request.header(header) if request is not None else None
    if policy.httpCookie is not None:
        cookie = policy.httpCookie.name
        return lambda request: _cookie(request.header("cookie"), cookie) if request is not None else None
    if policy.httpQueryParameterName is not None:
        param = policy.httpQueryParameterName
        return lambda request: request.query(param) if request is not None else None
    return lambda request: source_key


class ConsistentHash:
    """Ring hash: same key -> same instance while membership is stable; a removed instance only
    moves its own keys."""

    def __init__(
        self,
        instances: Sequence[Instance],
        rng: random.Random,
        key: Callable[[RequestView | None], str | None],
        minimum_ring_size: int | None = None,
    ) -> None:
        self.instances = tuple(instances)
        self._key = key
        self._random = RandomBalancer(instances, rng)
        total = sum(max(i.weight, 1) for i in self.instances)
        ring: list[tuple[int, int]] = []
        for index, instance in enumerate(self.instances):
            weight = max(instance.weight, 1)
            replicas = max(1, math.ceil(ENTRIES_PER_INSTANCE * weight / 100))
            if minimum_ring_size:
                replicas = max(replicas, math.ceil(minimum_ring_size * weight / total))
            ring.extend((hash64(f"{instance.node_id}_{n}"), index) for n in range(replicas))
        ring.sort()
        self._hashes = [h for h, _ in ring]
        self._owners = [self.instances[i] for _, i in ring]

    def pick(self, request: RequestView | None) -> Instance:
        key = self._key(request)
        if key is None:
            return self._random.pick(request)
        position = bisect.bisect_left(self._hashes, hash64(key))
        if position == len(self._hashes):
            position = 0
        return self._owners[position]


def build_balancer(
    settings: LoadBalancerSettings | None,
    instances: Sequence[Instance],
    rng: random.Random,
    *,
    service: str = "",
    source_key: str = "",
) -> Balancer:
    """The balancer for ``settings`` (None: round robin) bound to ``instances``."""
    if not instances:
        return _Empty(service)
    if settings is not None and settings.consistentHash is not None:
        policy = settings.consistentHash
        size = (policy.ringHash.minimumRingSize if policy.ringHash else None) or policy.minimumRingSize
        return ConsistentHash(instances, rng, _key_function(policy, source_key), size)
    simple = settings.simple if settings is not None else None
    if simple is SimpleLB.RANDOM:
        return RandomBalancer(instances, rng)
    if simple in (SimpleLB.LEAST_REQUEST, SimpleLB.LEAST_CONN):
        return LeastRequest(instances, rng)
    return RoundRobin(instances, rng)
