"""Sharding algorithms and key generators against ShardingSphere's documented behaviour and its
own test vectors (props, suffix matching, ranges, datetimes, snowflake layout)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest

from opensergo.database.errors import ConfigurationError, DatabaseGovernanceError
from opensergo.database.sharding.algorithms import (
    AutoIntervalAlgorithm,
    BoundaryRangeAlgorithm,
    ComplexInlineAlgorithm,
    DataNodeInfo,
    HashModAlgorithm,
    HintInlineAlgorithm,
    InlineAlgorithm,
    IntervalAlgorithm,
    ModAlgorithm,
    RoutingError,
    ValueRange,
    VolumeRangeAlgorithm,
    build_algorithm,
)
from opensergo.database.sharding.java import string_hash
from opensergo.database.sharding.keygen import EPOCH_MS, SnowflakeKeyGenerator, UUIDKeyGenerator

pytestmark = pytest.mark.unit


def targets(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(count)]


def info(names: list[str], logic: str | None = None) -> DataNodeInfo:
    return DataNodeInfo.of(names, logic)


# --- DataNodeInfo -------------------------------------------------------------------------------


def test_suffix_matching_pads_to_the_shortest_suffix() -> None:
    assert DataNodeInfo.of(["t_order_0", "t_order_1"], "t_order") == DataNodeInfo("t_order_", 1)
    padded = DataNodeInfo.of(["t_order_00", "t_order_01", "t_order_10"], "t_order")
    assert padded == DataNodeInfo("t_order_", 2)
    assert padded.target(["t_order_00", "t_order_01", "t_order_10"], "1") == "t_order_01"
    assert DataNodeInfo.of(["ds0", "ds1"]).target(["ds0", "ds1"], "2") is None
    # ds_1 and ds_11 are told apart (no endsWith confusion)
    eleven = DataNodeInfo.of(targets("ds_", 12))
    assert eleven.target(targets("ds_", 12), "1") == "ds_1"


# --- standard algorithms ------------------------------------------------------------------------


def test_inline() -> None:
    alg = InlineAlgorithm("x", {"algorithm-expression": "t_order_$->{order_id % 2}"})
    names = targets("t_order_", 2)
    assert alg.precise(names, "order_id", 10, info(names)) == "t_order_0"
    assert alg.precise(names, "order_id", -3, info(names)) == "t_order_-1"
    with pytest.raises(RoutingError, match="null"):
        alg.precise(names, "order_id", None, info(names))
    with pytest.raises(RoutingError, match="allow-range-query-with-inline-sharding"):
        alg.range(names, "order_id", ValueRange(1, True, 5, True), info(names))
    allowed = InlineAlgorithm(
        "x", {"algorithm-expression": "t_${id % 2}", "allow-range-query-with-inline-sharding": True}
    )
    assert allowed.range(names, "id", ValueRange(1, True, 5, True), info(names)) == names


def test_mod_with_offsets_and_padding() -> None:
    names = targets("t_", 16)
    mod = ModAlgorithm("m", {"sharding-count": 16})
    assert mod.precise(names, "id", 17, info(names)) == "t_1"
    assert mod.precise(names, "id", "33", info(names)) == "t_1"
    assert mod.range(names, "id", ValueRange(1, True, 3, True), info(names)) == ["t_1", "t_2", "t_3"]
    assert mod.range(names, "id", ValueRange(1, True, 100, True), info(names)) == names  # spans >= count - 1
    assert mod.range(names, "id", ValueRange(1, True, None, True), info(names)) == names  # unbounded
    padded = ModAlgorithm("m", {"sharding-count": 16, "zero-padding": "true"})
    zero = [f"t_{i:02d}" for i in range(16)]
    assert padded.precise(zero, "id", 5, info(zero)) == "t_05"
    cut = ModAlgorithm("m", {"sharding-count": 10, "start-offset": 2, "stop-offset": 1})
    assert cut.precise(targets("t_", 10), "id", "AB1234X", info(targets("t_", 10))) == "t_4"  # 123 % 10
    with pytest.raises(RoutingError, match="shorter"):
        cut.precise(targets("t_", 10), "id", "AB", info(targets("t_", 10)))
    with pytest.raises(ConfigurationError, match="sharding-count"):
        ModAlgorithm("m", {})


def test_hash_mod_uses_java_hash_codes() -> None:
    names = targets("t_", 4)
    alg = HashModAlgorithm("h", {"sharding-count": 4})
    for key in ("north", "user_1", "order-20261203"):
        assert alg.precise(names, "k", key, info(names)) == f"t_{abs(string_hash(key)) % 4}"
    assert alg.precise(names, "k", -3, info(names)) == "t_3"  # Integer(-3).hashCode() = -3 -> abs 3
    assert alg.range(names, "k", ValueRange(1, True, 2, True), info(names)) == names


def test_volume_range_vector() -> None:
    alg = VolumeRangeAlgorithm("v", {"range-lower": 10, "range-upper": 45, "sharding-volume": 10})
    names = targets("t_", 6)
    assert alg.auto_tables_amount == 6
    assert [alg.precise(names, "id", v, info(names)) for v in (5, 10, 44, 45, 1000)] == [
        "t_0",
        "t_1",
        "t_4",
        "t_5",
        "t_5",
    ]
    assert alg.range(names, "id", ValueRange(12, True, 31, True), info(names)) == ["t_1", "t_2", "t_3"]
    assert alg.range(names, "id", ValueRange(None, True, 15, True), info(names)) == ["t_0", "t_1"]


def test_boundary_range_vector() -> None:
    alg = BoundaryRangeAlgorithm("b", {"sharding-ranges": "1,5,10"})
    names = targets("t_", 4)
    assert alg.auto_tables_amount == 4
    assert [alg.precise(names, "id", v, info(names)) for v in (0, 1, 5, 9, 10)] == [
        "t_0",
        "t_1",
        "t_2",
        "t_2",
        "t_3",
    ]
    assert alg.range(names, "id", ValueRange(3, True, None, True), info(names)) == ["t_1", "t_2", "t_3"]
    with pytest.raises(RoutingError, match="integer"):
        alg.precise(names, "id", "1.5", info(names))


def test_auto_interval_vectors_from_shardingsphere() -> None:
    props = {
        "datetime-lower": "2020-01-01 00:00:00",
        "datetime-upper": "2020-01-01 00:00:16",
        "sharding-seconds": "4",
    }
    alg = AutoIntervalAlgorithm("a", props)
    node = DataNodeInfo("t_order_", 1)
    assert alg.precise(targets("t_order_", 4), "c", "2020-01-01 00:00:01", node) == "t_order_1"
    assert alg.precise(targets("t_order_", 6), "c", "2021-01-01 00:00:02", node) == "t_order_5"
    assert (
        len(
            alg.range(
                targets("t_order_", 5),
                "c",
                ValueRange("2019-01-01 00:00:00", True, "2020-01-01 00:00:15", True),
                node,
            )
        )
        == 5
    )
    assert alg.range(
        targets("t_order_", 5),
        "c",
        ValueRange("2020-01-01 00:00:04", True, "2020-01-01 00:00:10", True),
        node,
    ) == ["t_order_1", "t_order_2", "t_order_3"]
    assert alg.range(
        targets("t_order_", 6), "c", ValueRange("2020-01-01 00:00:09", False, None, True), node
    ) == ["t_order_3", "t_order_4", "t_order_5"]
    year = AutoIntervalAlgorithm(
        "a", {**props, "datetime-upper": "2021-01-01 00:00:00", "sharding-seconds": "86400"}
    )
    assert year.auto_tables_amount == 368
    day = AutoIntervalAlgorithm(
        "a", {**props, "datetime-upper": "2021-01-01 00:00:00", "sharding-seconds": "86400"}
    )
    names = targets("t_", 368)
    assert day.precise(names, "c", dt.datetime(2020, 1, 2), DataNodeInfo("t_", 1)) == "t_1"  # +86400 s
    assert (
        day.precise(names, "c", "2020-01-02 00:07:13", DataNodeInfo("t_", 1)) == "t_2"
    )  # +86833 s rounds up
    assert (
        day.precise(names, "c", "2020-01-02 00:00:00.123", DataNodeInfo("t_", 1)) == "t_1"
    )  # millis ignored


def test_interval_by_month() -> None:
    alg = IntervalAlgorithm(
        "i",
        {
            "datetime-pattern": "yyyy-MM-dd HH:mm:ss",
            "datetime-lower": "2020-01-01 00:00:00",
            "datetime-upper": "2020-12-31 23:59:59",
            "sharding-suffix-pattern": "yyyyMM",
            "datetime-interval-amount": 1,
            "datetime-interval-unit": "MONTHS",
        },
    )
    names = [f"t_order_2020{m:02d}" for m in range(1, 13)]
    node = DataNodeInfo("t_order_", 6)
    assert alg.precise(names, "c", "2020-03-15 10:00:00", node) == "t_order_202003"
    assert alg.precise(names, "c", dt.datetime(2020, 12, 31, 23, 0), node) == "t_order_202012"
    assert alg.precise(names, "c", "2021-01-01 00:00:00", node) is None  # outside the bounds: no target
    between = ValueRange("2020-02-10 00:00:00", True, "2020-04-01 00:00:00", True)
    assert sorted(alg.range(names, "c", between, node)) == [
        "t_order_202002",
        "t_order_202003",
        "t_order_202004",
    ]
    open_end = ValueRange("2020-02-10 00:00:00", True, "2020-04-01 00:00:00", False)
    assert sorted(alg.range(names, "c", open_end, node)) == ["t_order_202002", "t_order_202003"]
    assert sorted(alg.range(names, "c", ValueRange("2020-11-05 00:00:00", True), node)) == [
        "t_order_202011",
        "t_order_202012",
    ]


def test_interval_by_day_with_a_date_pattern_and_default_upper() -> None:
    alg = IntervalAlgorithm(
        "i",
        {
            "datetime-pattern": "yyyy-MM-dd",
            "datetime-lower": "2026-12-01",
            "sharding-suffix-pattern": "MMdd",
            "datetime-interval-amount": 2,
        },
        now=lambda: dt.datetime(2026, 12, 8, 12, 0),
    )
    names = ["t_1201", "t_1203", "t_1205", "t_1207"]
    node = DataNodeInfo("t_", 4)
    assert alg.precise(names, "c", "2026-12-04 18:30:00", node) == "t_1203"  # cut to the pattern's length
    assert alg.precise(names, "c", dt.date(2026, 12, 8), node) == "t_1207"
    assert alg.precise(names, "c", "2026-12-09", node) is None  # after datetime-upper (now)


def test_complex_inline() -> None:
    alg = ComplexInlineAlgorithm(
        "c",
        {"sharding-columns": "user_id,order_id", "algorithm-expression": "t_${user_id % 2}_${order_id % 2}"},
    )
    names = ["t_0_0", "t_0_1", "t_1_0", "t_1_1"]
    assert alg.shard(names, {"user_id": [1], "order_id": [2, 3]}, {}) == ["t_1_0", "t_1_1"]
    with pytest.raises(RoutingError, match="sharding columns"):
        alg.shard(names, {"user_id": [1]}, {})
    with pytest.raises(RoutingError, match="range"):
        alg.shard(names, {"user_id": [1]}, {"order_id": ValueRange(1, True, 2, True)})


def test_hint_inline() -> None:
    alg = HintInlineAlgorithm("h", {})  # default ${value}
    assert alg.shard(["ds_0", "ds_1"], []) == ["ds_0", "ds_1"]
    custom = HintInlineAlgorithm("h", {"algorithm-expression": "ds_${value % 2}"})
    assert custom.shard(["ds_0", "ds_1"], [3, 4]) == ["ds_1", "ds_0"]


def test_algorithm_factory_refuses_class_based_and_unknown_types() -> None:
    with pytest.raises(ConfigurationError, match=r"CLASS_BASED runs the Java class com\.acme\.MyAlgorithm"):
        build_algorithm(
            "x",
            "CLASS_BASED",
            {"strategy": "STANDARD", "algorithmClassName": "com.acme.MyAlgorithm"},
            "standard",
        )
    with pytest.raises(ConfigurationError, match="not supported"):
        build_algorithm("x", "COSID_MOD", {}, "standard")
    with pytest.raises(ConfigurationError, match="cannot serve a complex strategy"):
        build_algorithm("x", "INLINE", {"algorithm-expression": "t"}, "complex")
    assert isinstance(build_algorithm("x", "hint_inline", {}, "hint"), HintInlineAlgorithm)


# --- key generators -----------------------------------------------------------------------------


class FixedClock:
    """ShardingSphere's test clock: the time moves one millisecond every second read."""

    def __init__(self) -> None:
        self.reads = 0
        self.now = EPOCH_MS

    def __call__(self) -> int:
        if self.reads < 1:
            self.reads += 1
            return self.now
        self.reads = 0
        self.now += 1
        return self.now


def test_snowflake_vector_from_shardingsphere() -> None:
    generator = SnowflakeKeyGenerator({}, clock=FixedClock())
    assert [generator.generate() for _ in range(10)] == [
        0,
        4194305,
        4194306,
        8388608,
        8388609,
        12582913,
        12582914,
        16777216,
        16777217,
        20971521,
    ]


def test_snowflake_layout_sequence_overflow_and_clock_back() -> None:
    times = iter([EPOCH_MS + 1000] * 4097 + [EPOCH_MS + 1001] * 3)
    generator = SnowflakeKeyGenerator({"worker-id": 1, "max-vibration-offset": 0}, clock=lambda: next(times))
    keys = [generator.generate() for _ in range(4097)]
    assert SnowflakeKeyGenerator.decode(keys[0]) == (1000, 1, 0)
    assert SnowflakeKeyGenerator.decode(keys[5]) == (1000, 1, 5)
    assert keys[5] == (1000 << 22) | (1 << 12) | 5 == 4194308101
    assert SnowflakeKeyGenerator.decode(keys[4096]) == (1001, 1, 0)  # 4096 in one ms: wait for the next
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    clock = iter([EPOCH_MS + 100, EPOCH_MS + 95, EPOCH_MS + 100, EPOCH_MS + 50])
    slept: list[float] = []
    back = SnowflakeKeyGenerator({}, clock=lambda: next(clock), sleep=slept.append)
    back.generate()
    back.generate()  # 5 ms back: tolerated (waited out)
    assert slept == [0.005]
    with pytest.raises(DatabaseGovernanceError, match="moved back 50 ms"):
        back.generate()
    with pytest.raises(ConfigurationError, match="worker-id"):
        SnowflakeKeyGenerator({"worker-id": 1024})


def test_snowflake_real_clock_is_increasing_and_epoch_based() -> None:
    generator = SnowflakeKeyGenerator()
    keys = [generator.generate() for _ in range(2000)]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    ms, worker, _ = SnowflakeKeyGenerator.decode(keys[-1])
    assert worker == 0 and abs(ms + EPOCH_MS - dt.datetime.now(dt.UTC).timestamp() * 1000) < 60_000


def test_uuid_format() -> None:
    keys: set[Any] = {UUIDKeyGenerator().generate() for _ in range(100)}
    assert len(keys) == 100 and all(re.fullmatch(r"[0-9a-f]{32}", k) for k in keys)
