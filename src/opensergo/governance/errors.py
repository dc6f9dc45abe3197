"""Block errors: raised by ``guard`` / ``Engine.entry`` when a strategy refuses a request."""

from __future__ import annotations

from typing import Any, ClassVar

from opensergo.governance.faulttolerance.fallback import FallbackResponse
from opensergo.governance.faulttolerance.ref import RuleRef


class BlockedError(Exception):
    """A request refused by a fault-tolerance strategy.

    ``resource`` is the guarded resource, ``rule`` the FaultToleranceRule's name, ``strategy``
    the strategy's name, ``kind`` its kind, and ``fallback`` the rule's compiled
    HttpRequestFallbackAction (None when the rule has none). ``detail`` says why in words.
    """

    KIND: ClassVar[str] = ""
    resource: str
    rule: str
    strategy: str
    kind: str
    fallback: FallbackResponse | None
    detail: str

    def __init__(
        self,
        resource: str,
        rule: str,
        strategy: str,
        kind: str | None = None,
        fallback: FallbackResponse | None = None,
        detail: str = "",
    ) -> None:
        self.resource = resource
        self.rule = rule
        self.strategy = strategy
        self.kind = kind or self.KIND
        self.fallback = fallback
        self.detail = detail
        text = f"{resource!r} blocked by {self.kind} {strategy!r} (rule {rule!r})"
        super().__init__(f"{text}: {detail}" if detail else text)

    @classmethod
    def from_ref(cls, ref: RuleRef, detail: str = "") -> BlockedError:
        return cls(ref.resource, ref.rule, ref.strategy, ref.kind, ref.fallback, detail)

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            type(self),
            (self.resource, self.rule, self.strategy, self.kind, self.fallback, self.detail),
        )


class RateLimitedError(BlockedError):
    """Refused by a RateLimitStrategy (too many requests in the window)."""

    KIND = "RateLimitStrategy"


class ThrottledError(BlockedError):
    """Refused by a ThrottlingStrategy (the projected queueing time exceeds queueTimeout)."""

    KIND = "ThrottlingStrategy"


class ConcurrencyLimitedError(BlockedError):
    """Refused by a ConcurrencyLimitStrategy (maxConcurrency requests already in flight)."""

    KIND = "ConcurrencyLimitStrategy"


class CircuitBreakerOpenError(BlockedError):
    """Refused by a CircuitBreakerStrategy whose circuit is open (or half-open with its probe out)."""

    KIND = "CircuitBreakerStrategy"


class OverloadedError(BlockedError):
    """Refused by an AdaptiveOverloadProtectionStrategy; ``reason`` is ``"cpu"`` or ``"load"``."""

    KIND = "AdaptiveOverloadProtectionStrategy"

    @property
    def reason(self) -> str:
        return self.detail.split(" ", 1)[0] if self.detail else ""


class HotParamLimitedError(BlockedError):
    """Refused by a HotParamRateLimitStrategy: this parameter value used up its own allowance."""

    KIND = "HotParamRateLimitStrategy"


ERROR_BY_KIND: dict[str, type[BlockedError]] = {
    cls.KIND: cls
    for cls in (
        RateLimitedError,
        ThrottledError,
        ConcurrencyLimitedError,
        CircuitBreakerOpenError,
        OverloadedError,
        HotParamLimitedError,
    )
}
