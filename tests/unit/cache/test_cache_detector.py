"""Space-Saving and the sliding-window hot-key detector: guarantees and accuracy."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from opensergo.cache.detector import HotKeyDetector
from opensergo.cache.topk import SpaceSaving

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def zipf_stream(n: int, keys: int, s: float, seed: int) -> list[str]:
    rng = random.Random(seed)
    weights = [1 / (i**s) for i in range(1, keys + 1)]
    population = [f"key:{i}" for i in range(keys)]
    stream = rng.choices(population, weights=weights, k=n)
    return stream


def test_space_saving_bounds_hold() -> None:
    stream = zipf_stream(50_000, 5_000, 1.0, seed=7)
    summary = SpaceSaving(100)
    for item in stream:
        summary.add(item)
    truth = Counter(stream)
    assert len(summary) == 100 and summary.total == len(stream)
    for item, count, error in summary.items():
        assert count - error <= truth[item] <= count  # the deterministic guarantee
    for item, freq in truth.items():  # every item above N/m is kept
        if freq > len(stream) / 100:
            assert summary.count(item) >= freq


@pytest.mark.parametrize(("s", "seed"), [(1.1, 1), (0.9, 2), (1.3, 3)])
def test_detector_precision_and_recall_on_zipf(s: float, seed: int) -> None:
    k = 20
    stream = zipf_stream(200_000, 20_000, s, seed)
    clock = Clock()
    detector = HotKeyDetector(threshold=1e9, window=10.0, capacity=256, report_top=k, slices=10, clock=clock)
    step = 10.0 / len(stream)  # the stream fills exactly one window
    for item in stream:
        detector.record(item)
        clock.t += step
    clock.t += 1e-6
    reported = {h.key for h in detector.top()}
    truth = {item for item, _ in Counter(stream).most_common(k)}
    precision = len(reported & truth) / len(reported)
    recall = len(reported & truth) / len(truth)
    print(f"zipf s={s}: precision {precision:.2f}, recall {recall:.2f} (k={k}, capacity 256, 20k keys)")
    assert precision >= 0.9 and recall >= 0.9


def test_hot_by_rate_over_the_window_then_cools_down() -> None:
    clock = Clock()
    detector = HotKeyDetector(threshold=100, window=1.0, capacity=16, slices=10, clock=clock)
    # 50 requests/s for a second: not hot.
    for _ in range(50):
        assert not detector.record("warm")
        clock.t += 0.02
    assert not detector.is_hot("warm")
    # A storm: 10 requests within one 100 ms slice reach 100 requests/s at once.
    hot = [detector.record("storm") for _ in range(10)]
    assert hot[-1] and not hot[0]
    clock.t += 0.11
    detector.record("other")
    assert detector.is_hot("storm")  # still within the window
    clock.t += 1.2
    detector.record("other")
    assert not detector.is_hot("storm")  # the window no longer holds the storm


def test_reported_rates_are_per_second_over_the_window() -> None:
    clock = Clock()
    detector = HotKeyDetector(threshold=1000, window=2.0, capacity=16, slices=4, clock=clock)
    for _ in range(40):  # 40 requests spread over exactly one window
        detector.record("a")
        clock.t += 0.05
    clock.t += 1e-6  # past the window's end despite float steps
    [top] = detector.top()
    assert top.key == "a" and top.rate == pytest.approx(20.0) and not top.hot


def test_memory_is_bounded() -> None:
    clock = Clock()
    detector = HotKeyDetector(threshold=10, window=1.0, capacity=32, slices=4, clock=clock)
    for i in range(100_000):
        detector.record(i)
        clock.t += 1e-5
    assert all(len(s) <= 32 for s in detector._ring)
