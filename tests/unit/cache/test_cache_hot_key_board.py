"""The control plane's side of hot-key reports: OTLP gauge points folded per app and instance."""

from __future__ import annotations

import pytest

from opensergo.common import metric_names as names
from opensergo.controlplane.metrics.hotkeys import FRESH_S, HotKeyBoard, HotKeyReport
from opensergo.controlplane.metrics.store import MetricStore
from tests.unit.dashboard.otlp_builders import gauge, request

pytestmark = pytest.mark.unit


def point(cache: str, key: str, hot: bool) -> dict[str, str]:
    return {names.CACHE: cache, names.CACHE_KEY: key, names.CACHE_HOT: "true" if hot else "false"}


def test_store_folds_hot_keys_per_app_summing_instances_and_replacing_lists() -> None:
    now = [1000.0]
    store = MetricStore(retention=60, clock=lambda: now[0])
    store.ingest(request([gauge(names.HOT_KEYS, [(point("products", "p:1", True), 300.0),
                                                  (point("products", "p:2", False), 5.0)], now[0])],
                         app="shop", instance="a"))  # fmt: skip
    store.ingest(request([gauge(names.HOT_KEYS, [(point("products", "p:1", False), 40.0)], now[0])],
                         app="shop", instance="b"))  # fmt: skip
    items = store.app_hot_keys("default", "shop")
    assert [(i["key"], i["rate"], i["hot"], i["instances"], i["hotInstances"]) for i in items] == [
        ("p:1", 340.0, True, 2, 1),
        ("p:2", 5.0, False, 1, 0),
    ]
    assert store.app_hot_keys("default", "other") == []
    # Instance a's next export no longer lists p:2: it is gone.
    now[0] += 1
    store.ingest(request([gauge(names.HOT_KEYS, [(point("products", "p:1", True), 250.0)], now[0])],
                         app="shop", instance="a"))  # fmt: skip
    assert [(i["key"], i["rate"]) for i in store.app_hot_keys("default", "shop")] == [("p:1", 290.0)]
    # Reports older than FRESH_S no longer count; expiry forgets them.
    now[0] += FRESH_S + 1
    assert store.app_hot_keys("default", "shop") == []
    store.expire(now[0] + 120)
    assert store.hot_keys._apps == {}


def test_bounded_per_app_and_bad_values_dropped() -> None:
    board = HotKeyBoard(max_keys_per_app=3)
    used, dropped = board.replace(
        "default", "shop", "a", [HotKeyReport("c", f"k{i}", 1.0, False) for i in range(5)], 0.0
    )
    assert (used, dropped) == (3, 2)
    store = MetricStore(retention=60, clock=lambda: 0.0)
    store.ingest(request([gauge(names.HOT_KEYS, [(point("c", "k", True), float("nan"))], 0.0)], app="shop"))
    assert store.stats.dropped["non_finite"] == 1 and store.app_hot_keys("default", "shop", 0.0) == []
