"""The public API: guard in its four forms, error classification, load_rules, BlockedError."""

from __future__ import annotations

import asyncio
import pickle
import threading
from pathlib import Path

import pytest

from opensergo.governance import (
    BlockedError,
    CircuitBreakerOpenError,
    ConcurrencyLimitedError,
    Engine,
    FallbackResponse,
    Guard,
    ManualClock,
    RateLimitedError,
    default_engine,
    guard,
    load_rules,
)
from opensergo.governance.errors import (
    ERROR_BY_KIND,
    OverloadedError,
    ThrottledError,
)
from opensergo.spec import SpecErrors
from opensergo.spec.base import Resource

from .conftest import breaker, concurrency, protect, rate_limit, throttling
from .test_concurrency import fast_switching  # noqa: F401 - fixture

pytestmark = pytest.mark.unit

R = "GET:/hello"
ROOT = Path(__file__).resolve().parents[3]


def test_with_form(engine: Engine) -> None:
    engine.set_rules(protect(R, rate_limit("rl", 1)))
    with guard(R, engine=engine) as g:
        assert g.resource == R
    with pytest.raises(RateLimitedError), guard(R, engine=engine):
        pytest.fail("must not run")  # pragma: no cover


async def test_async_with_form(engine: Engine) -> None:
    engine.set_rules(protect(R, rate_limit("rl", 1)))
    async with guard(R, engine=engine):
        await asyncio.sleep(0)
    with pytest.raises(RateLimitedError):
        async with guard(R, engine=engine):
            pytest.fail("must not run")  # pragma: no cover


def test_sync_decorator(engine: Engine) -> None:
    engine.set_rules(protect(R, rate_limit("rl", 2)))

    @guard(R, engine=engine)
    def hello(name: str, *, punctuation: str = "!") -> str:
        """Says hello."""
        return f"hello {name}{punctuation}"

    assert hello.__name__ == "hello" and hello.__doc__ == "Says hello."
    assert hello("a") == "hello a!"
    assert hello("b", punctuation="?") == "hello b?"
    with pytest.raises(RateLimitedError):
        hello("c")


async def test_async_decorator(engine: Engine) -> None:
    engine.set_rules(protect(R, rate_limit("rl", 2)))

    @guard(R, engine=engine)
    async def hello(name: str) -> str:
        await asyncio.sleep(0)
        return f"hello {name}"

    assert asyncio.iscoroutinefunction(hello)
    assert await hello("a") == "hello a"
    assert await hello("b") == "hello b"
    with pytest.raises(RateLimitedError):
        await hello("c")


async def test_async_decorator_with_throttling_awaits(clock: ManualClock) -> None:
    engine = Engine(clock=clock)
    engine.set_rules(protect(R, throttling("th", "100ms", "1s")))

    @guard(R, engine=engine)
    async def handler() -> int:
        return clock.now_ms()

    assert [await handler() for _ in range(3)] == [0, 100, 200]
    async with guard(R, engine=engine):
        assert clock.now_ms() == 300


def test_guard_on_unguarded_resource_is_transparent(engine: Engine) -> None:
    @guard("nothing-here", engine=engine)
    def f(x: int) -> int:
        return x + 1

    assert f(1) == 2
    with guard("nothing-here", engine=engine):
        pass


def test_generators_are_refused() -> None:
    def gen() -> object:
        yield 1

    with pytest.raises(TypeError):
        guard(R)(gen)


def _error_breaker(engine: Engine) -> None:
    engine.set_rules(protect(R, breaker("cb", min_requests=1, ratio="0%")))


def _completions(engine: Engine) -> tuple[int, int]:
    b = engine.breaker(R, "cb")
    assert b is not None
    return b.snapshot(engine.clock.now_ns())


@pytest.mark.parametrize("form", ["with", "decorator"])
def test_exceptions_count_as_errors(engine: Engine, form: str) -> None:
    _error_breaker(engine)

    def run() -> None:
        if form == "with":
            with guard(R, engine=engine):
                raise ValueError("boom")
        else:
            guard(R, engine=engine)(lambda: (_ for _ in ()).throw(ValueError("boom")))()

    with pytest.raises(ValueError):
        run()
    assert _completions(engine) == (1, 1)
    with pytest.raises(CircuitBreakerOpenError):
        run()


async def test_exceptions_count_as_errors_async(engine: Engine) -> None:
    _error_breaker(engine)

    @guard(R, engine=engine)
    async def fails() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError):
        await fails()
    with pytest.raises(CircuitBreakerOpenError):
        await fails()


def test_which_exceptions_count_is_configurable_per_guard(engine: Engine) -> None:
    _error_breaker(engine)
    only_value = guard(R, engine=engine, errors=(ValueError,))
    with pytest.raises(KeyError), only_value:
        raise KeyError("not an error for the breaker")
    assert _completions(engine) == (1, 0)
    ignoring = guard(R, engine=engine, ignore=(LookupError,))
    with pytest.raises(KeyError), ignoring:
        raise KeyError("ignored")
    assert _completions(engine) == (2, 0)
    with pytest.raises(ValueError), only_value:
        raise ValueError("counts")
    assert _completions(engine) == (3, 1)


def test_which_exceptions_count_is_configurable_engine_wide(clock: ManualClock) -> None:
    engine = Engine(clock=clock, errors=(ConnectionError,))
    _error_breaker(engine)

    @guard(R, engine=engine)
    def call(exc: BaseException) -> None:
        raise exc

    with pytest.raises(ValueError):
        call(ValueError())
    assert _completions(engine) == (1, 0)
    with pytest.raises(ConnectionResetError):
        call(ConnectionResetError())
    assert _completions(engine) == (2, 1)


def test_blocked_error_inside_a_guard_is_not_an_error(engine: Engine) -> None:
    rl = rate_limit("rl", 0)
    objects = [*protect(R, breaker("cb", min_requests=1, ratio="0%")), *protect("inner", rl, name="inner")]
    engine.set_rules(objects)
    with pytest.raises(RateLimitedError), guard(R, engine=engine), guard("inner", engine=engine):
        pass  # pragma: no cover
    assert _completions(engine) == (1, 0)


def test_base_exceptions_complete_without_error(engine: Engine) -> None:
    _error_breaker(engine)
    with pytest.raises(KeyboardInterrupt), guard(R, engine=engine):
        raise KeyboardInterrupt
    assert _completions(engine) == (1, 0)


def test_blocked_error_attributes(engine: Engine) -> None:
    from .conftest import fallback, rule

    fb = fallback("busy", 503, "busy", [("Retry-After", "5")])
    cc = concurrency("cc", 0)
    engine.set_rules([fb, cc, rule("my-rule", [R], [cc], fallback_action="busy")])
    with pytest.raises(BlockedError) as info, guard(R, engine=engine):
        pass  # pragma: no cover
    err = info.value
    assert isinstance(err, ConcurrencyLimitedError)
    assert (err.resource, err.rule, err.strategy, err.kind) == (
        R,
        "my-rule",
        "cc",
        "ConcurrencyLimitStrategy",
    )
    assert err.fallback == FallbackResponse(503, "busy", (("Retry-After", "5"),), name="busy")
    assert "my-rule" in str(err) and "'cc'" in str(err)
    clone = pickle.loads(pickle.dumps(err))
    assert (type(clone), clone.rule, clone.fallback) == (ConcurrencyLimitedError, "my-rule", err.fallback)


def test_one_error_class_per_strategy_kind() -> None:
    assert set(ERROR_BY_KIND) == {
        "RateLimitStrategy",
        "ThrottlingStrategy",
        "ConcurrencyLimitStrategy",
        "CircuitBreakerStrategy",
        "AdaptiveOverloadProtectionStrategy",
        "HotParamRateLimitStrategy",
    }
    for cls in (
        RateLimitedError,
        ThrottledError,
        ConcurrencyLimitedError,
        CircuitBreakerOpenError,
        OverloadedError,
    ):
        assert issubclass(cls, BlockedError)
        assert cls("r", "rule", "s").kind == cls.KIND


def test_shared_guard_nested_and_across_threads(engine: Engine) -> None:
    engine.set_rules(protect(R, concurrency("cc", 100)))
    g = guard(R, engine=engine)
    with g:
        with g:  # nested use of the same object
            assert engine.in_flight(R) == 2
        assert engine.in_flight(R) == 1
    assert engine.in_flight(R) == 0
    barrier = threading.Barrier(4)

    def worker() -> None:
        barrier.wait()
        for _ in range(500):
            with g:
                pass

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert engine.in_flight(R) == 0
    with pytest.raises(RuntimeError):
        g.__exit__(None, None, None)


YAML = """
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: RateLimitStrategy
metadata: {name: rl, namespace: prod, labels: {app: shop}}
spec: {threshold: 1, statDurationSeconds: 1}
---
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: FaultToleranceRule
metadata: {name: rule, namespace: prod, labels: {app: shop}}
spec:
  targets: [{targetResourceName: "GET:/hello"}]
  strategies: [{name: rl}]
---
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: ConcurrencyLimitStrategy
metadata: {name: cc, namespace: prod, labels: {app: shop}}
spec: {maxConcurrency: 0}
---
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: FaultToleranceRule
metadata: {name: by-selector, namespace: prod}
spec:
  selector: {app: shop}
  targets: [{targetResourceName: "GET:/selector"}]
  strategies: [{name: cc, kind: ConcurrencyLimitStrategy}]
---
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: FaultToleranceRule
metadata: {name: other-app, namespace: prod, labels: {app: other}}
spec:
  targets: [{targetResourceName: "GET:/other"}]
  strategies: [{name: rl}]
---
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: FaultToleranceRule
metadata: {name: other-ns, namespace: default, labels: {app: shop}}
spec:
  targets: [{targetResourceName: "GET:/other-ns"}]
  strategies: [{name: rl}]
"""


def test_load_rules_from_yaml_selects_namespace_and_app(engine: Engine) -> None:
    result = load_rules(YAML, app="shop", namespace="prod", engine=engine)
    assert result.resources == ("GET:/hello", "GET:/selector")
    assert result.ignored == 2  # the other app's rule and the other namespace's rule
    assert result.problems == ()
    with pytest.raises(ConcurrencyLimitedError):  # selected through spec.selector.app
        engine.entry("GET:/selector")
    with guard("GET:/hello", engine=engine):
        pass
    with pytest.raises(RateLimitedError), guard("GET:/hello", engine=engine):
        pass  # pragma: no cover
    with guard("GET:/other", engine=engine), guard("GET:/other-ns", engine=engine):
        pass


def test_load_rules_all_apps_and_replace(engine: Engine) -> None:
    result = load_rules(YAML, app=None, namespace="prod", engine=engine)
    assert result.resources == ("GET:/hello", "GET:/other", "GET:/selector")
    with pytest.raises(ConcurrencyLimitedError):
        engine.entry("GET:/selector")
    load_rules("", app="shop", engine=engine)  # an empty push lifts everything
    assert engine.resources == ()


def test_load_rules_from_paths_and_objects(engine: Engine, tmp_path: Path) -> None:
    example = ROOT / "examples" / "rules" / "rate-limit.yaml"
    result = load_rules(example, app="demo-app", engine=engine)
    assert result.resources == ("GET:/hello",)
    assert result.problems == ()
    checks = engine.checks("GET:/hello")
    assert checks is not None
    for _ in range(5):
        engine.entry("GET:/hello").exit()
    with pytest.raises(RateLimitedError) as info:
        engine.entry("GET:/hello")
    assert info.value.fallback is not None and info.value.fallback.status == 429
    (tmp_path / "rules.yaml").write_text(YAML)
    assert load_rules(str(tmp_path / "rules.yaml"), app="shop", namespace="prod", engine=engine).resources
    assert load_rules(tmp_path, app="shop", namespace="prod", engine=engine).resources
    objects = protect(R, rate_limit("rl", 1, app="x"), name="r", app="x")
    assert load_rules(objects, app="x", engine=engine).resources == (R,)
    with pytest.raises(TypeError):
        load_rules([1, 2], app="x", engine=engine)  # type: ignore[list-item]


def test_load_rules_reports_invalid_yaml() -> None:
    with pytest.raises(SpecErrors):
        load_rules("kind: RateLimitStrategy\n", app="x", engine=Engine())


def test_default_engine_is_used_without_an_engine_argument() -> None:
    engine = default_engine()
    try:
        load_rules(protect("default-res", rate_limit("rl", 0, app="x"), app="x"), app="x")
        assert engine.resources == ("default-res",)
        with pytest.raises(RateLimitedError), guard("default-res"):
            pass  # pragma: no cover
    finally:
        engine.clear()


class _Completions:
    """An observer recording each completion's RT (ms)."""

    def __init__(self) -> None:
        self.rts: list[float] = []

    def on_pass(self, resource: str) -> None:
        pass

    def on_block(self, error: BlockedError) -> None:
        pass

    def on_complete(self, resource: str, rt_ns: int, error: bool) -> None:
        self.rts.append(rt_ns / 1_000_000)


def test_guard_objects_are_reused_per_name_and_options(engine: Engine) -> None:
    assert guard(R, engine=engine) is guard(R, engine=engine)
    assert guard(R, engine=engine) is not guard("other", engine=engine)
    assert guard(R, engine=engine) is not guard(R, engine=engine, inbound=False)
    assert guard(R, engine=engine, errors=(ValueError,)) is guard(R, engine=engine, errors=(ValueError,))
    assert guard(R) is guard(R)  # the default engine
    assert guard(R).engine is default_engine()


def test_with_guard_allocates_no_guard_and_leaves_nothing_behind(engine: Engine) -> None:
    import sys

    engine.set_rules(
        protect(R, concurrency("cc", 5), rate_limit("rl", 10**9), breaker("cb", min_requests=100))
    )
    created = 0
    original = Guard.__init__

    def counting(self: Guard, *args: object, **kwargs: object) -> None:
        nonlocal created
        created += 1
        original(self, *args, **kwargs)  # type: ignore[arg-type]

    guard(R, engine=engine)  # cached before counting
    Guard.__init__ = counting  # type: ignore[method-assign]
    try:
        for _ in range(100):  # warm up
            with guard(R, engine=engine):
                pass
        blocks = sys.getallocatedblocks()
        for _ in range(10_000):
            with guard(R, engine=engine):
                pass
        grown = sys.getallocatedblocks() - blocks
    finally:
        Guard.__init__ = original  # type: ignore[method-assign]
    assert created == 0
    assert grown < 50  # nothing kept per call (10,000 calls)
    assert guard(R, engine=engine)._parked == []
    assert engine.in_flight(R) == 0


def test_with_path_is_compiled_per_rule_version_and_entries_report_to_their_own(
    clock: ManualClock,
) -> None:
    """``with`` runs the guard's path compiled for one rule version, compiled again by the first
    entry after a swap. An entry reports to the version that admitted it, whichever version's
    exit runs it: a block open across a swap, and the first ``with`` after one (its ``__exit__``
    was looked up before its ``__enter__`` compiled the new version)."""
    engine = Engine(clock=clock)
    engine.set_rules(protect(R, breaker("first", min_requests=100)))
    first = engine.breaker(R, "first")
    with pytest.raises(RuntimeError):
        Guard(R, engine).__exit__(None, None, None)  # neither entered nor compiled yet
    g = guard(R, engine=engine)
    with g:
        pass
    compiled = g.__enter__, g.__exit__
    with g:  # same version: nothing compiled
        engine.set_rules(protect(R, breaker("second", min_requests=100), concurrency("cc", 10)))
        second = engine.breaker(R, "second")
        assert (g.__enter__, g.__exit__) == compiled
        with g:  # nested, after the swap: the second version (parked)
            assert engine.in_flight(R) == 1
        assert (g.__enter__, g.__exit__) != compiled
        assert second is not None and second.snapshot(clock.now_ns()) == (1, 0)
    assert first is not None and first.snapshot(clock.now_ns()) == (2, 0)  # the outer one too
    engine.set_rules(protect(R, breaker("third", min_requests=100)))
    third = engine.breaker(R, "third")
    with pytest.raises(ValueError), g:  # admitted by the third; exited by the second's path
        raise ValueError("boom")
    assert third is not None and third.snapshot(clock.now_ns()) == (1, 1)
    assert second.snapshot(clock.now_ns()) == (1, 0) and engine.in_flight(R) == 0
    assert g._parked == [] and g._token == [True]


def test_decorated_call_is_compiled_per_rule_version_and_reports_to_its_own(clock: ManualClock) -> None:
    """A decorated function runs through a call compiled for one rule version, compiled again by
    the first call after a swap; a call in flight across a swap reports to the version that
    admitted it."""
    engine = Engine(clock=clock)
    swap_to: list[list[Resource]] = []

    @guard(R, engine=engine)
    def work(x: int, *, fail: bool = False) -> int:
        if swap_to:
            engine.set_rules(swap_to.pop())
        if fail:
            raise ValueError("boom")
        return x

    assert work(1) == 1  # no rule yet
    engine.set_rules(protect(R, breaker("first", min_requests=100)))
    first = engine.breaker(R, "first")
    swap_to.append(protect(R, breaker("second", min_requests=100)))
    assert work(2) == 2  # admitted by the first version, swapped out while it runs
    second = engine.breaker(R, "second")
    assert first is not None and first.snapshot(clock.now_ns()) == (1, 0)
    assert second is not None and second.snapshot(clock.now_ns()) == (0, 0)
    with pytest.raises(ValueError):
        work(3, fail=True)
    assert second.snapshot(clock.now_ns()) == (1, 1)
    engine.set_rules(protect(R, rate_limit("rl", 1)))
    assert work(x=4) == 4
    with pytest.raises(RateLimitedError):
        work(5)


@pytest.mark.usefixtures("fast_switching")
def test_compiled_sync_paths_under_rule_swaps_and_threads(engine: Engine) -> None:
    """Threads use one guard (``with``, nested) and one decorated function while the rules swap
    between a version that counts requests in flight and one that does not, each thread's first
    ``with`` after a swap compiling the guard again: the count (kept across versions) comes back
    to 0, the slots are free and nothing stays parked."""
    counting = protect(R, concurrency("cc", 10**6))
    not_counting = protect(R, rate_limit("rl", 10**9))
    engine.set_rules(counting)
    g = guard(R, engine=engine)
    decorated = guard(R, engine=engine)(lambda: None)
    stop = threading.Event()

    def worker() -> None:
        while not stop.is_set():
            with g:
                decorated()
                with g:
                    pass

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for n in range(300):
        engine.set_rules(not_counting if n % 2 == 0 else counting)
    stop.set()
    for t in threads:
        t.join()
    assert engine.version == 301
    assert engine.in_flight(R) == 0
    assert g._parked == [] and g._token == [True]


def test_shared_guard_keeps_each_entrys_start_nested_and_across_threads(clock: ManualClock) -> None:
    """A caller whose entry is parked never takes the slots for a nested entry: each exit reports
    the RT of its own entry, even when the slots were freed in between by another thread."""
    engine = Engine(clock=clock)
    seen = _Completions()
    engine.set_observer(seen)
    engine.set_rules(protect(R, concurrency("cc", 100)))
    g = guard(R, engine=engine)
    other_in = threading.Event()
    other_out = threading.Event()

    def other() -> None:
        with g:  # holds the slots
            other_in.set()
            other_out.wait(5)

    t = threading.Thread(target=other)
    t.start()
    assert other_in.wait(5)
    with g:  # outer: parked (the slots are the other thread's)
        clock.advance(10)
        other_out.set()
        t.join(5)
        assert seen.rts == [10.0]  # the other thread's entry: 10 ms
        with g:  # inner: the slots are free now, but this thread has an entry parked
            clock.advance(1)
        clock.advance(2)
    assert seen.rts == [10.0, 1.0, 13.0]  # inner 1 ms; outer 10 + 1 + 2 ms
    assert g._parked == [] and g._token == [True]  # all back; slots free
    assert engine.in_flight(R) == 0


async def test_sync_guard_across_awaits_keeps_each_tasks_entry(clock: ManualClock) -> None:
    """``with`` (sync) around an ``await``: tasks interleave on one thread, and each exit still
    reports its own entry."""
    engine = Engine(clock=clock)
    seen = _Completions()
    engine.set_observer(seen)
    engine.set_rules(protect(R, concurrency("cc", 100)))
    g = guard(R, engine=engine)
    first_in = asyncio.Event()
    second_in = asyncio.Event()

    async def first() -> None:
        with g:  # takes the slots
            first_in.set()
            await second_in.wait()
            clock.advance(5)
        # leaves first: 5 ms

    async def second() -> None:
        await first_in.wait()
        with g:  # parked under this task
            second_in.set()
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            clock.advance(7)
        # leaves second: 7 ms after its own entry

    await asyncio.gather(first(), second())
    assert sorted(seen.rts) == [5.0, 12.0]  # first: 5 ms; second: entered before the 5 ms, then 7 more
    assert g._parked == [] and engine.in_flight(R) == 0


async def test_async_with_queued_by_throttling_parks_its_entry(clock: ManualClock) -> None:
    engine = Engine(clock=clock)
    seen = _Completions()
    engine.set_observer(seen)
    engine.set_rules(protect(R, throttling("th", "100ms", "1s")))
    g = guard(R, engine=engine)
    async with g:
        pass
    async with g:  # queued 100 ms: waited, then admitted
        clock.advance(1)
    assert seen.rts == [0.0, 101.0]
    assert g._parked == [] and g._token == [True]
