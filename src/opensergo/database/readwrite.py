"""Read/write splitting: which data source a statement goes to (ShardingSphere 5.1/5.2 semantics).

Primary: every statement that is not a plain read (writes, DDL, ``SET`` …), ``SELECT … FOR
UPDATE`` / ``LOCK IN SHARE MODE``, ``SELECT LAST_INSERT_ID()``, the ``WRITE_ROUTE_ONLY`` hint,
:func:`opensergo.database.primary` blocks, and everything in an explicit transaction or after a
write in the same connection or ORM session (read-your-writes). Other reads: the load balancer's
pick among the read sources that are up.

A read source that fails to connect is taken out for ``retry_after`` seconds (static strategy),
or until discovery sees it healthy again (dynamic strategy). With no read source left, reads go
to the write source (static, and dynamic when ``writeDataSourceQueryEnabled``).
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from opensergo.database.errors import ConfigurationError, NoDataSourceError
from opensergo.spec.database import LoadBalancer as LoadBalancerSpec
from opensergo.spec.database import ReadWriteSplitting

__all__ = ["HealthBoard", "LoadBalancer", "ReadWriteRule", "build_load_balancer"]


class LoadBalancer(Protocol):
    def pick(self, candidates: Sequence[str]) -> str: ...


class RoundRobin:
    """``abs(count++) % n`` over the enabled read sources, in configured order."""

    def __init__(self) -> None:
        self._counter = itertools.count()

    def pick(self, candidates: Sequence[str]) -> str:
        return candidates[next(self._counter) % len(candidates)]


class RandomBalancer:
    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def pick(self, candidates: Sequence[str]) -> str:
        return candidates[self._rng.randrange(len(candidates))]


class WeightBalancer:
    """Weighted random; props ``<read source>: <weight>`` for every read source."""

    def __init__(self, weights: Mapping[str, float], rng: random.Random | None = None) -> None:
        self._weights = dict(weights)
        self._rng = rng or random.Random()

    def pick(self, candidates: Sequence[str]) -> str:
        weights = [self._weights.get(c, 0.0) for c in candidates]
        total = sum(weights)
        if total <= 0:
            return candidates[self._rng.randrange(len(candidates))]
        point = self._rng.random() * total
        for name, weight in zip(candidates, weights, strict=True):
            point -= weight
            if point < 0:
                return name
        return candidates[-1]


def _weight(value: Any) -> float:
    weight = float(value)
    if weight != weight:  # NaN, as ShardingSphere
        return 1.0
    return min(weight, 10000.0)


def build_load_balancer(spec: LoadBalancerSpec | None, reads: Sequence[str]) -> LoadBalancer:
    if spec is None or spec.type.value == "ROUND_ROBIN":
        return RoundRobin()
    if spec.type.value == "RANDOM":
        return RandomBalancer()
    missing = [r for r in reads if r not in spec.props]
    if missing:
        raise ConfigurationError(
            f"load balancer {spec.loadBalancerName!r} (WEIGHT) has no weight for {', '.join(missing)}"
        )
    return WeightBalancer({str(k): _weight(v) for k, v in spec.props.items()})


class HealthBoard:
    """Data sources that failed recently, skipped for reads until ``retry_after`` passes."""

    def __init__(self, retry_after: float = 2.0) -> None:
        self.retry_after = retry_after
        self._down: dict[str, float] = {}

    def mark_down(self, name: str) -> None:
        self._down[name] = time.monotonic() + self.retry_after

    def mark_up(self, name: str) -> None:
        self._down.pop(name, None)

    @property
    def all_up(self) -> bool:
        return not self._down

    def is_up(self, name: str) -> bool:
        until = self._down.get(name)
        if until is None:
            return True
        if time.monotonic() >= until:
            self._down.pop(name, None)
            return True
        return False


class Topology(Protocol):
    """Where the primary and the healthy replicas are (a DatabaseDiscovery monitor)."""

    def primary(self, timeout: float) -> str | None: ...

    def replicas(self) -> Sequence[str]: ...

    def refresh(self) -> None: ...


class ReadWriteRule:
    """A ReadWriteSplitting object compiled; ``topology`` is set for a dynamic strategy."""

    def __init__(
        self,
        obj: ReadWriteSplitting,
        health: HealthBoard,
        topology: Topology | None = None,
        *,
        failover_timeout: float = 10.0,
    ) -> None:
        rules = obj.spec.rules
        self.name = obj.name
        self.health = health
        self.topology = topology
        self.failover_timeout = failover_timeout
        balancers = {b.loadBalancerName: b for b in rules.loadBalancers}
        if rules.staticStrategy is not None:
            static = rules.staticStrategy
            self._write: str | None = static.writeDataSourceName
            self.reads: tuple[str, ...] = tuple(static.readDataSourceNames)
            self.write_query_enabled = True
            balancer_name = static.loadBalancerName
        else:
            dynamic = rules.dynamicStrategy
            assert dynamic is not None
            if topology is None:
                raise ConfigurationError(f"ReadWriteSplitting {obj.name!r}: dynamic strategy needs discovery")
            self._write = None
            self.reads = ()
            self.write_query_enabled = dynamic.writeDataSourceQueryEnabled
            balancer_name = dynamic.loadBalancerName
        spec = balancers.get(balancer_name) if balancer_name else None
        self.balancer = build_load_balancer(spec, self.reads)

    @property
    def dynamic(self) -> bool:
        return self.topology is not None

    def write_source(self) -> str:
        if self.topology is None:
            assert self._write is not None
            return self._write
        primary = self.topology.primary(self.failover_timeout)
        if primary is None:
            raise NoDataSourceError(f"ReadWriteSplitting {self.name!r}: no primary discovered")
        return primary

    def read_candidates(self) -> list[str]:
        names = self.topology.replicas() if self.topology is not None else self.reads
        if self.health.all_up:  # the common case: nothing to filter
            return list(names)
        return [n for n in names if self.health.is_up(n)]

    def read_source(self, exclude: Sequence[str] = ()) -> str:
        """A read source; the write source when none is up (if allowed)."""
        candidates = self.read_candidates()
        if exclude:
            candidates = [c for c in candidates if c not in exclude]
        if candidates:
            return candidates[0] if len(candidates) == 1 else self.balancer.pick(candidates)
        if not self.write_query_enabled:
            raise NoDataSourceError(
                f"ReadWriteSplitting {self.name!r}: no read source is up and "
                "writeDataSourceQueryEnabled is false"
            )
        return self.write_source()
