from __future__ import annotations

import copy
import pickle

import pytest

from opensergo.proto.common.v1 import common_pb2
from opensergo.spec.units import Duration, Ratio, format_millis, parse_duration_millis
from opensergo.spec.upstream.faulttolerance import time_unit_to_millis

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "millis"),
    [
        ("500ms", 500),
        ("0ms", 0),
        ("1s", 1000),
        ("60s", 60_000),
        ("1m", 60_000),
        ("5min", 300_000),
        ("1minute", 60_000),
        ("1h", 3_600_000),
        ("1d", 86_400_000),
        ("20ms", 20),
    ],
)
def test_duration_units_are_exact(text: str, millis: int) -> None:
    assert parse_duration_millis(text) == millis
    duration = Duration(text)
    assert duration.millis == millis
    assert duration.text == text
    assert str(duration) == text


@pytest.mark.parametrize("text", ["5x", "", "1.5s", "-1s", "s", "10", "1 s", "1sec", "1H"])
def test_bad_durations_are_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        Duration(text)


def test_duration_equality_is_by_length() -> None:
    assert Duration("60s") == Duration("1min") == Duration("60000ms")
    assert hash(Duration("1h")) == hash(Duration("60m"))
    assert Duration("1s") != Duration("2s")
    assert Duration("1s") != "1s"  # a Duration is not a str


def test_duration_is_immutable_and_copyable() -> None:
    duration = Duration("5min")
    with pytest.raises(AttributeError):
        duration.millis = 1
    assert copy.deepcopy(duration).text == "5min"
    assert pickle.loads(pickle.dumps(duration)).text == "5min"


@pytest.mark.parametrize(
    ("millis", "text"),
    [(0, "0ms"), (1500, "1500ms"), (1000, "1s"), (60_000, "1min"), (5_400_000, "90min"), (86_400_000, "1d")],
)
def test_format_millis_picks_the_largest_exact_unit(millis: int, text: str) -> None:
    assert format_millis(millis) == text
    assert Duration.from_millis(millis).millis == millis


def test_from_millis_rejects_negative() -> None:
    with pytest.raises(ValueError, match="negative"):
        Duration.from_millis(-1)


def test_time_units() -> None:
    assert time_unit_to_millis(5, common_pb2.SECOND, unknown_as=common_pb2.MILLISECOND) == 5000
    assert time_unit_to_millis(5, common_pb2.UNKNOWN, unknown_as=common_pb2.SECOND) == 5000
    assert time_unit_to_millis(5, common_pb2.UNKNOWN, unknown_as=common_pb2.MILLISECOND) == 5
    assert time_unit_to_millis(2, common_pb2.DAY, unknown_as=common_pb2.SECOND) == 172_800_000
    with pytest.raises(ValueError, match="unsupported"):
        time_unit_to_millis(1, 42, unknown_as=common_pb2.SECOND)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("60%", 0.6),
        ("0%", 0.0),
        ("100%", 1.0),
        ("12.5%", 0.125),
        (0.6, 0.6),
        ("0.6", 0.6),
        (1, 1.0),
        ("70%", 0.7),
    ],
)
def test_ratios(value: object, expected: float) -> None:
    ratio = Ratio(value)
    assert ratio == expected
    assert isinstance(ratio, float)


def test_ratio_remembers_how_it_was_written() -> None:
    assert Ratio("60%")._serialize() == "60%"
    assert Ratio(0.6)._serialize() == 0.6
    assert copy.deepcopy(Ratio("60%"))._serialize() == "60%"


@pytest.mark.parametrize("value", ["abc", "%", "60 %x", True, None, [], "nan"])
def test_bad_ratios(value: object) -> None:
    with pytest.raises(ValueError, match="invalid ratio"):
        Ratio(value)
