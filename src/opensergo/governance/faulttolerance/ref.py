"""Where a compiled check came from: resource, FaultToleranceRule, strategy, and fallback."""

from __future__ import annotations

from dataclasses import dataclass

from opensergo.governance.faulttolerance.fallback import FallbackResponse


@dataclass(frozen=True, slots=True)
class RuleRef:
    """One strategy applied to one resource by one FaultToleranceRule.

    ``rule`` is the FaultToleranceRule's name, ``strategy`` the strategy's name and ``kind`` its
    kind (``RateLimitStrategy``, ...); ``fallback`` is the rule's compiled fallback action.
    """

    resource: str
    rule: str
    strategy: str
    kind: str
    fallback: FallbackResponse | None = None
    namespace: str = "default"

    @property
    def key(self) -> tuple[str, str, str]:
        """The block-counter key: (resource, rule, strategy)."""
        return (self.resource, self.rule, self.strategy)


class BlockCounter:
    """A per-(resource, rule, strategy) block count that survives recompiles."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0
