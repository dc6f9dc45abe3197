"""One recompile of the fault-tolerance rules: what a strategy's compile step reads and keeps.

Each strategy module has a ``compile_check(resource, strategies, ..., build)`` that turns the
strategies applied to one resource into that strategy's compiled check. They share one
:class:`Compilation` per recompile, which carries what the engine knows (the token source, the
live instance count, the breaker state listeners, the system sampler) and the state that must
outlive a push: circuit breakers, throttlers and Global leases are kept by key, so an unchanged
strategy on the same resource keeps its object and a changed one starts fresh (as Sentinel reuses
an equal breaker).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Mapping
from typing import TYPE_CHECKING, TypeVar, cast

from opensergo.governance.faulttolerance.cluster import TokenSource
from opensergo.governance.faulttolerance.ref import RuleRef

if TYPE_CHECKING:
    from opensergo.governance.faulttolerance.adaptive import SystemSampler
    from opensergo.governance.faulttolerance.breaker import StateListener
    from opensergo.spec.base import Resource

log = logging.getLogger("opensergo.governance")

T = TypeVar("T")


class Compilation:
    """The context of one recompile (see the module docstring)."""

    def __init__(
        self,
        *,
        previous: Mapping[Hashable, object],
        token_source: TokenSource | None,
        instances: int,
        listeners: list[StateListener],
        sampler: Callable[[], SystemSampler],
        now: Callable[[], int],
        warned: set[tuple[str, str]],
    ) -> None:
        self.token_source = token_source
        self.instances = instances
        self.listeners = listeners
        self.now = now
        self.problems: list[str] = []
        self.kept: dict[Hashable, object] = {}
        self.uses_sampler = False
        self._previous = previous
        self._sampler = sampler
        self._warned = warned

    def keep(self, key: Hashable, make: Callable[[], T]) -> T:
        """The object kept under ``key`` by the previous version (or this one), else ``make()``.

        Keys start with a tag naming the kind of object, so kinds never collide."""
        found = self.kept.get(key)
        if found is None:
            found = self._previous.get(key)
        obj = cast(T, found) if found is not None else make()
        self.kept[key] = obj
        return obj

    def retired(self) -> list[object]:
        """What the previous version kept and this one no longer does (to be closed)."""
        return [obj for key, obj in self._previous.items() if self.kept.get(key) is not obj]

    @staticmethod
    def spec_key(strategy: Resource) -> str:
        """The strategy's spec as text: equal specs keep their state across pushes."""
        return str(strategy.spec.model_dump_json())

    def system_sampler(self) -> SystemSampler:
        """The engine's CPU/load sampler (started once the new version is live)."""
        self.uses_sampler = True
        return self._sampler()

    def problem(self, text: str) -> None:
        self.problems.append(text)

    def warn_global(self, ref: RuleRef, kind: str, how: str) -> None:
        """Log once per strategy that ``limitMode: Global`` runs without a token service."""
        key = (ref.namespace, ref.strategy)
        if key in self._warned:
            return
        self._warned.add(key)
        log.warning(
            "%s %s/%s uses limitMode Global but no token service is attached; enforcing it %s",
            kind,
            ref.namespace,
            ref.strategy,
            how,
        )
