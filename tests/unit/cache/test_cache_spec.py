"""The cache.opensergo.io/v1alpha1 CachePolicy model: parsing, defaults and clear errors."""

from __future__ import annotations

import pytest

from opensergo.spec import SpecErrors, decode, encode_native, lookup, parse_documents
from opensergo.spec.cache import CachePolicy, InvalidationMode, WhenOpen, parse_size

pytestmark = pytest.mark.unit

HEAD = """apiVersion: cache.opensergo.io/v1alpha1
kind: CachePolicy
metadata: {name: p, labels: {app: shop}}
spec:
  cacheNames: [product-cache]
"""


def parse(spec: str) -> CachePolicy:
    [obj] = parse_documents(HEAD + spec, source="p.yaml")
    assert isinstance(obj, CachePolicy)
    return obj


def error_of(spec: str) -> str:
    with pytest.raises(SpecErrors) as info:
        parse_documents(HEAD + spec, source="p.yaml")
    return str(info.value)


def test_full_policy_parses_with_units_and_defaults() -> None:
    obj = parse(
        "  hotKey: {threshold: 200.5}\n  nearCache: {ttl: 500ms}\n"
        "  breaker: {staleIfError: 1min, whenOpen: miss}\n  bigValue: {warnAbove: 1KiB, refuseAbove: 2MB}\n"
    )
    spec = obj.spec
    assert spec.hotKey is not None and spec.hotKey.threshold == 200.5
    assert (
        spec.hotKey.window.millis == 10_000 and spec.hotKey.capacity == 1024 and spec.hotKey.reportTop == 20
    )
    assert spec.nearCache is not None and spec.nearCache.ttl.millis == 500
    assert spec.nearCache.invalidation is InvalidationMode.TRACKING and spec.nearCache.maxEntries == 10_000
    assert spec.breaker is not None and spec.breaker.staleIfError.millis == 60_000
    assert spec.breaker.whenOpen is WhenOpen.MISS and float(spec.breaker.errorRatio) == 0.5
    assert spec.bigValue is not None and (spec.bigValue.warnAbove, spec.bigValue.refuseAbove) == (
        1024,
        2_000_000,
    )
    assert spec.coalescing.enabled
    assert obj.app == "shop"


def test_native_payload_round_trip() -> None:
    obj = parse("  hotKey: {threshold: 10}\n  nearCache: {}\n  sourceProtection: {maxConcurrentLoads: 1}\n")
    info = lookup("cachepolicies")
    assert info.kind == "CachePolicy" and info.proto is None  # no upstream proto: native payload
    assert decode(encode_native(obj), kind=info, namespace="default", app="shop") == obj


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        ("  nearCache: {}\n", "spec.nearCache", "set hotKey too"),
        (
            "  hotKey: {threshold: 1}\n  breaker: {staleIfError: 5s}\n",
            "spec.breaker.staleIfError",
            "set nearCache",
        ),
        (
            "  bigValue: {warnAbove: 2MiB, refuseAbove: 1MiB}\n",
            "spec.bigValue.warnAbove",
            "below refuseAbove",
        ),
        ("  bigValue: {warnAbove: 12 parsecs}\n", "spec.bigValue.warnAbove", "invalid size"),
        ("  bigValue: {}\n", "spec.bigValue", "set warnAbove, refuseAbove or both"),
        ("  hotKey: {threshold: 0}\n", "spec.hotKey.threshold", "must be > 0"),
        ("  hotKey: {threshold: 5, window: 2h}\n", "spec.hotKey.window", "between 1s and 1h"),
        ("  hotKey: {threshold: 5, capacity: 16, reportTop: 20}\n", "spec.hotKey.reportTop", "capacity (16)"),
        ("  sourceProtection: {}\n", "spec.sourceProtection", "maxLoadsPerSecond, maxConcurrentLoads"),
        ("  sourceProtection: {maxConcurrentLoads: 1, burst: 3}\n", "spec.sourceProtection.burst", "needs"),
        ("  breaker: {errorRatio: 0%}\n", "spec.breaker.errorRatio", "above 0"),
        ("  nearCache: {}\n  hotKey: {threshold: 1}\n  bogus: 1\n", "spec.bogus", "unknown field"),
    ],
)
def test_errors_name_the_field(spec: str, field: str, message: str) -> None:
    text = error_of(spec)
    assert field in text and message in text, text
    assert "p.yaml" in text


def test_cache_names_are_checked() -> None:
    with pytest.raises(SpecErrors) as info:
        parse_documents(HEAD.replace("[product-cache]", "['bad name!']"), source="p.yaml")
    assert "spec.cacheNames[0]" in str(info.value) and "invalid cache name" in str(info.value)
    with pytest.raises(SpecErrors, match="twice"):
        parse_documents(HEAD.replace("[product-cache]", "[a, a]"), source="p.yaml")
    with pytest.raises(SpecErrors, match=r"spec\.cacheNames"):
        parse_documents(HEAD.replace("[product-cache]", "[]"), source="p.yaml")


@pytest.mark.parametrize(
    ("text", "size"),
    [(1, 1), ("1024", 1024), ("1KiB", 1024), ("1 KB", 1000), ("3MiB", 3 * 2**20), ("2GB", 2 * 10**9)],
)
def test_sizes(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", [0, -1, True, "1TB5", "1.5MiB", "", 2**41])
def test_bad_sizes(text: object) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


def test_sample_policy_file_parses() -> None:
    from pathlib import Path

    from opensergo.spec import load_paths

    [obj] = load_paths([Path(__file__).with_name("cache-policy.yaml")])
    assert isinstance(obj, CachePolicy) and obj.spec.cacheNames == ["product-cache"]


def test_docs_example_parses() -> None:
    import re
    from pathlib import Path

    text = (Path(__file__).parents[3] / "docs" / "cache.md").read_text()
    text = text.split("## Hot-parameter limits", 1)[0]  # the CachePolicy part of the page
    blocks = re.findall(r"```yaml\n(.*?)```", text, re.S)
    assert blocks
    objects = [obj for block in blocks for obj in parse_documents(block, source="docs/cache.md")]
    assert [o.kind for o in objects] == ["CachePolicy"]
    assert (
        objects[0]
        == parse_documents(
            Path(__file__).with_name("cache-policy.yaml").read_text(), source="cache-policy.yaml"
        )[0]
    )
