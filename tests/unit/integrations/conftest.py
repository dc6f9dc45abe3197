"""Rule YAML builders and an engine on a manual clock for the integration unit tests."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest

from opensergo.governance import Engine, ManualClock, load_rules
from opensergo.governance.routing import lanes

APP = "demo"
_HEAD = "apiVersion: fault-tolerance.opensergo.io/v1alpha1\n"


def _meta(name: str) -> str:
    return f"metadata: {{name: {name}, namespace: default, labels: {{app: {APP}}}}}\n"


def rate_limit(name: str, threshold: int) -> str:
    return (
        f"{_HEAD}kind: RateLimitStrategy\n{_meta(name)}"
        f"spec: {{metricType: RequestAmount, limitMode: Local, threshold: {threshold}, statDuration: 1s}}\n"
    )


def concurrency(name: str, limit: int) -> str:
    spec = f"spec: {{maxConcurrency: {limit}, limitMode: Local}}\n"
    return f"{_HEAD}kind: ConcurrencyLimitStrategy\n{_meta(name)}{spec}"


def throttling(name: str, interval: str, queue: str) -> str:
    return (
        f"{_HEAD}kind: ThrottlingStrategy\n{_meta(name)}"
        f"spec: {{minIntervalOfRequests: {interval}, queueTimeout: {queue}}}\n"
    )


def error_breaker(name: str, min_requests: int = 2, recovery: str = "5s") -> str:
    return (
        f"{_HEAD}kind: CircuitBreakerStrategy\n{_meta(name)}"
        "spec: {strategy: ErrorRequestRatio, triggerRatio: '50%', statDuration: 10s, "
        f"recoveryTimeout: {recovery}, minRequestAmount: {min_requests}}}\n"
    )


def fallback(name: str, status: int, body: str, headers: Sequence[tuple[str, str]] = ()) -> str:
    header_items = ", ".join(f"{{key: '{k}', value: '{v}'}}" for k, v in headers)
    return (
        f"{_HEAD}kind: HttpRequestFallbackAction\n{_meta(name)}"
        "spec:\n  behavior: ReturnProvidedResponse\n  behaviorDesc:\n"
        f"    responseStatusCode: {status}\n    responseContentBody: '{body}'\n"
        f"    responseAdditionalHeaders: [{header_items}]\n"
    )


def rule(
    name: str, targets: Sequence[str], strategies: Sequence[tuple[str, str]], action: str | None = None
) -> str:
    text = f"{_HEAD}kind: FaultToleranceRule\n{_meta(name)}spec:\n  targets:\n"
    text += "".join(f"  - targetResourceName: '{t}'\n" for t in targets)
    text += "  strategies:\n" + "".join(f"  - {{name: {n}, kind: {k}}}\n" for n, k in strategies)
    if action is not None:
        text += f"  fallbackAction: {{name: {action}, kind: HttpRequestFallbackAction}}\n"
    return text


def documents(*docs: str) -> str:
    return "---\n".join(docs)


def apply(engine: Engine, *docs: str) -> None:
    result = load_rules(documents(*docs), app=APP, engine=engine)
    assert not result.problems, result.problems


def limit(
    engine: Engine, resource: str, threshold: int, *, action: str | None = None, extra: str = ""
) -> None:
    """A rate limit of ``threshold`` per second on ``resource`` (with an optional fallback doc)."""
    docs = [rate_limit("rl", threshold), rule("r", [resource], [("rl", "RateLimitStrategy")], action)]
    if extra:
        docs.insert(0, extra)
    apply(engine, *docs)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start_ms=1_000)


@pytest.fixture
def engine(clock: ManualClock) -> Iterator[Engine]:
    eng = Engine(clock=clock)
    yield eng
    eng.close()


@pytest.fixture(autouse=True)
def _no_lane_leaks() -> Iterator[None]:
    yield
    assert lanes.default_manager()._var.get() is None
