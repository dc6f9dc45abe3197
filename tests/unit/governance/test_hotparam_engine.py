"""HotParamRateLimitStrategy in the engine: validation, compile, @guard arguments, throttling."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from opensergo.governance import (
    Engine,
    HotParamLimitedError,
    ManualClock,
    RateLimitedError,
    guard,
    load_rules,
)
from opensergo.governance.faulttolerance.checks import describe
from opensergo.governance.faulttolerance.hotparam import argument_reader, mapping_lookup
from opensergo.spec import SpecErrors
from opensergo.spec.loader import parse_documents

pytestmark = pytest.mark.unit

R = "GET:/items"
HEAD = "apiVersion: fault-tolerance.opensergo.io/v1alpha1\n"


def hot(name: str, spec: str) -> str:
    return f"{HEAD}kind: HotParamRateLimitStrategy\nmetadata: {{name: {name}}}\nspec:\n{spec}"


def rule(strategies: str, target: str = R) -> str:
    return (
        f"{HEAD}kind: FaultToleranceRule\nmetadata: {{name: r}}\nspec:\n"
        f"  targets: [{{targetResourceName: '{target}'}}]\n  strategies: {strategies}\n"
    )


PER_USER = hot(
    "per-user",
    "  param: {source: argument, name: user_id}\n  threshold: 2\n"
    "  exceptionItems: [{value: vip, threshold: 4}, {value: 7, threshold: 0}]\n",
)


def apply(engine: Engine, *docs: str) -> None:
    result = load_rules("---\n".join(docs), app=None, engine=engine)
    assert not result.problems, result.problems


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start_ms=10_000)


@pytest.fixture
def engine(clock: ManualClock) -> Engine:
    return Engine(clock=clock)


def admitted(engine: Engine, values: list[Any], name: str = "user_id") -> list[bool]:
    out = []
    for v in values:
        try:
            engine.entry(R, params=mapping_lookup({name: v})).exit()
            out.append(True)
        except HotParamLimitedError:
            out.append(False)
    return out


def test_per_value_limit_with_exceptions_and_missing_values(engine: Engine, clock: ManualClock) -> None:
    apply(engine, PER_USER, rule("[{name: per-user, kind: HotParamRateLimitStrategy}]"))
    assert admitted(engine, ["a", "a", "a", "b", "b", "b"]) == [True, True, False, True, True, False]
    assert admitted(engine, ["vip"] * 5) == [True] * 4 + [False]
    assert admitted(engine, ["7", 7]) == [False, False]  # numbers match by their text
    assert admitted(engine, [None] * 5) == [True] * 5  # a request without the parameter passes
    engine.entry(R).exit()  # and so does one admitted without a lookup
    clock.advance(1001)
    assert admitted(engine, ["a", "a", "a"]) == [True, True, False]
    assert engine.block_counts() == {(R, "r", "per-user"): 6}
    [info] = describe(engine.checks(R))["hot_params"]  # type: ignore[arg-type]
    assert (info["source"], info["name"], info["threshold"], info["max_values"]) == (
        "argument",
        "user_id",
        2,
        4000,
    )


def test_refusal_names_the_value_and_rule(engine: Engine) -> None:
    apply(engine, PER_USER, rule("[{name: per-user}]"))
    admitted(engine, ["alice", "alice"])
    with pytest.raises(HotParamLimitedError) as info:
        engine.entry(R, params=mapping_lookup({"user_id": "alice"}))
    err = info.value
    assert (err.resource, err.rule, err.strategy, err.kind) == (
        R,
        "r",
        "per-user",
        "HotParamRateLimitStrategy",
    )
    assert "argument 'user_id' = 'alice': threshold 2 per 1 s" in err.detail


def test_every_element_of_a_collection_must_pass(engine: Engine) -> None:
    apply(engine, PER_USER, rule("[{name: per-user}]"))
    assert admitted(engine, [["x", "y"], ["x", "y"], ["y"]]) == [True, True, False]


def test_changed_rule_takes_effect_and_unchanged_keeps_state(engine: Engine) -> None:
    apply(engine, PER_USER, rule("[{name: per-user}]"))
    assert admitted(engine, ["a"] * 3) == [True, True, False]
    apply(engine, PER_USER, rule("[{name: per-user}]"))  # same spec: the buckets are kept
    assert admitted(engine, ["a"]) == [False]
    raised = PER_USER.replace("threshold: 2\n", "threshold: 5\n")
    apply(engine, raised, rule("[{name: per-user}]"))  # changed spec: fresh buckets, new threshold
    assert admitted(engine, ["a"] * 6) == [True] * 5 + [False]


def test_hot_params_run_before_rate_limit_and_spend_tokens_as_sentinel_java(engine: Engine) -> None:
    rl = f"{HEAD}kind: RateLimitStrategy\nmetadata: {{name: rl}}\nspec: {{threshold: 1, statDuration: 1s}}\n"
    apply(engine, PER_USER, rl, rule("[{name: per-user}, {name: rl}]"))
    engine.entry(R, params=mapping_lookup({"user_id": "a"})).exit()
    with pytest.raises(RateLimitedError):
        engine.entry(R, params=mapping_lookup({"user_id": "a"}))
    with pytest.raises(HotParamLimitedError):  # the rate-limited request spent a's second token
        engine.entry(R, params=mapping_lookup({"user_id": "a"}))


def test_guard_decorator_reads_named_arguments(engine: Engine) -> None:
    apply(engine, PER_USER, rule("[{name: per-user}]", target="get-user"))

    @guard("get-user", engine=engine)
    def get_user(tenant: str, user_id: str | None = "default", *, verbose: bool = False) -> str:
        return f"{tenant}/{user_id}"

    def calls(*args: Any, **kwargs: Any) -> bool:
        try:
            get_user(*args, **kwargs)
            return True
        except HotParamLimitedError:
            return False

    assert [calls("t", "u1"), calls("t", user_id="u1"), calls(tenant="t", user_id="u1")] == [
        True,
        True,
        False,
    ]
    assert [calls("t"), calls("t"), calls("t")] == [True, True, False]  # the default value counts
    assert [calls("t", None) for _ in range(5)] == [True] * 5  # None: the parameter is missing


def test_async_guard_and_throttling_behaviour(engine: Engine, clock: ManualClock) -> None:
    paced = hot(
        "paced",
        "  param: {source: argument, name: key}\n  threshold: 10\n"
        "  behavior: Throttling\n  queueTimeout: 250ms\n",
    )
    apply(engine, paced, rule("[{name: paced}]", target="load"))

    @guard("load", engine=engine)
    async def load(key: str) -> str:
        return key

    async def run() -> list[str]:
        out = []
        for key in ["k", "k", "k", "k", "other"]:
            try:
                out.append(await load(key))
            except HotParamLimitedError:
                out.append("blocked")
        return out

    start = clock.now_ms()
    # 100 ms apart per key; the queue holds less than 250 ms of waiting at a frozen instant, but
    # each awaited wait moves the ManualClock, so every call of one key queues 100 ms at most.
    assert asyncio.run(run()) == ["k", "k", "k", "k", "other"]
    assert clock.now_ms() - start == 300
    assert clock.sleeps == [0.1, 0.1, 0.1]


def test_throttling_refuses_beyond_queue_at_one_instant() -> None:
    paced = hot(
        "paced",
        "  param: {source: argument, name: key}\n  threshold: 10\n"
        "  behavior: Throttling\n  queueTimeout: 250ms\n",
    )
    frozen = Engine(clock=ManualClock(auto_advance=False))
    apply(frozen, paced, rule("[{name: paced}]"))
    checks = frozen.checks(R)
    assert checks is not None and checks.hot_params is not None
    waits = [checks.hot_params.admit(mapping_lookup({"key": "k"}), 0) for _ in range(4)]
    assert waits[:3] == [0, 100, 200]
    assert isinstance(waits[3], HotParamLimitedError)


def test_argument_reader_positions_keywords_defaults_and_var_kwargs() -> None:
    def f(a: int, /, b: int, c: int = 3, *rest: int, d: int = 4, **extra: int) -> None: ...

    read = argument_reader(f)
    assert read((1, 2), {}, "a") == 1
    assert read((1,), {"b": 20}, "b") == 20
    assert read((1, 2), {}, "c") == 3
    assert read((1, 2, 30, 99), {}, "c") == 30
    assert read((1, 2), {"d": 40}, "d") == 40
    assert read((1, 2), {"other": 5}, "other") == 5
    assert read((1, 2), {"a": 9}, "a") == 1  # positional-only: a keyword "a" goes to **extra
    assert read((1, 2), {}, "missing") is None


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        ("param: {source: clientIP, name: x}\n  threshold: 1", "spec.param.name", "clientIP takes no name"),
        ("param: {source: query}\n  threshold: 1", "spec.param.name", "required for source query"),
        (
            "param: {source: header, name: 'bad header'}\n  threshold: 1",
            "spec.param.name",
            "invalid HTTP header",
        ),
        (
            "param: {source: grpcMetadata, name: 'x-bin'}\n  threshold: 1",
            "spec.param.name",
            "binary metadata",
        ),
        ("param: {source: argument, name: '1x'}\n  threshold: 1", "spec.param.name", "not a valid function"),
        ("param: {source: cookie, name: a}\n  threshold: 1", "spec.param.source", "must be one of"),
        ("param: {source: query, name: a}\n  threshold: -1", "spec.threshold", "must be >= 0"),
        ("param: {source: query, name: a}\n  threshold: 1\n  burst: -2", "spec.burst", "must be >= 0"),
        (
            "param: {source: query, name: a}\n  threshold: 1\n  statDuration: 500ms",
            "spec.statDuration",
            "whole",
        ),
        (
            "param: {source: query, name: a}\n  threshold: 1\n  statDuration: 1s\n  statDurationSeconds: 1",
            "spec.statDuration",
            "not both",
        ),
        (
            "param: {source: query, name: a}\n  threshold: 1\n  queueTimeout: 1s",
            "spec.queueTimeout",
            "Throttling only",
        ),
        (
            "param: {source: query, name: a}\n  threshold: 1\n  behavior: Throttling\n  burst: 1",
            "spec.burst",
            "Reject only",
        ),
        (
            "param: {source: query, name: a}\n  threshold: 1\n  maxTrackedValues: 0",
            "spec.maxTrackedValues",
            ">= 1",
        ),
        (
            "param: {source: query, name: a}\n  threshold: 1\n"
            "  exceptionItems: [{value: x, threshold: 1}, {value: x, threshold: 2}]",
            "spec.exceptionItems[1].value",
            "duplicate value 'x'",
        ),
    ],
)
def test_validation_errors_name_the_field(spec: str, field: str, message: str) -> None:
    with pytest.raises(SpecErrors) as info:
        parse_documents(hot("h", f"  {spec}\n"), source="h.yaml")
    text = str(info.value)
    assert f"{field}: " in text and message in text, text


def test_defaults_and_capacity() -> None:
    [obj] = parse_documents(
        hot("h", "  param: {source: clientIP}\n  threshold: 3\n  statDurationSeconds: 10\n")
    )
    spec = obj.spec  # type: ignore[attr-defined]
    assert (spec.duration_seconds, spec.burst, spec.behavior.value, spec.maxTrackedValues) == (
        10,
        0,
        "Reject",
        None,
    )
    engine = Engine()
    apply(
        engine,
        hot("h", "  param: {source: clientIP}\n  threshold: 3\n  statDurationSeconds: 10\n"),
        rule("[{name: h}]"),
    )
    [info] = describe(engine.checks(R))["hot_params"]  # type: ignore[arg-type]
    assert info["max_values"] == 40_000 and info["duration_s"] == 10
