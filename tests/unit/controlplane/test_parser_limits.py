"""The parser limits every decoder applies (opensergo.spec.limits through spec.loader)."""

from __future__ import annotations

import pytest

from opensergo.spec.errors import SpecError, SpecErrors
from opensergo.spec.limits import LimitError, ParserLimits
from opensergo.spec.loader import YamlSyntaxError, iter_yaml, load_json, load_yaml, locate, parse_documents

pytestmark = pytest.mark.unit

SMALL = ParserLimits(max_bytes=1000, max_depth=4, max_documents=3)


def test_aliases_are_refused_with_their_position() -> None:
    with pytest.raises(YamlSyntaxError, match="aliases") as err:
        load_yaml("a: &x [1, 2]\nb: *x\n")
    assert err.value.position == (2, 4)
    with pytest.raises(YamlSyntaxError, match="aliases"):
        load_yaml("base: &b {x: 1}\nmore:\n  <<: *b\n")
    assert load_yaml("a: &x [1, 2]\n") == {"a": [1, 2]}  # an anchor alone expands nothing


def test_size_depth_and_documents() -> None:
    with pytest.raises(LimitError, match="larger than") as err:
        load_yaml("a: " + "x" * 1000, SMALL)
    assert err.value.too_large
    assert load_yaml("a: {b: {c: [1]}}", SMALL) == {"a": {"b": {"c": [1]}}}
    with pytest.raises(YamlSyntaxError, match="nested deeper than 4"):
        load_yaml("a: {b: {c: {d: {e: 1}}}}", SMALL)
    with pytest.raises(LimitError, match="nested deeper than 4") as deep:
        load_json('{"a": {"b": {"c": {"d": {"e": 1}}}}}', SMALL)
    assert deep.value.field == "a.b.c.d"
    assert len(list(iter_yaml("a: 1\n---\nb: 2\n---\nc: 3\n", SMALL))) == 3
    with pytest.raises(LimitError, match="more than 3 documents"):
        list(iter_yaml("a: 1\n---\nb: 2\n---\nc: 3\n---\nd: 4\n", SMALL))
    # Far beyond Python's recursion limit: a 4xx-able error, not a RecursionError.
    with pytest.raises(LimitError):
        load_json("[" * 100_000 + "]" * 100_000)
    with pytest.raises(YamlSyntaxError):
        load_yaml("[" * 100_000 + "]" * 100_000)
    assert locate("[" * 5000 + "]" * 5000, ["a"]) is None


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("spec: {threshold: .inf}", "spec.threshold"),
        ("spec: {threshold: .nan}", "spec.threshold"),
        ("spec: {threshold: 99999999999999999999}", "spec.threshold"),
        ("items: [1, -9999999999999999999]", "items[1]"),
    ],
)
def test_numbers_must_be_finite_and_in_range(text: str, field: str) -> None:
    with pytest.raises(LimitError) as err:
        load_yaml(text)
    assert err.value.field == field
    with pytest.raises(LimitError):
        load_json('{"revision": 1e400}')


def test_multi_document_errors_name_the_source_and_document() -> None:
    text = "apiVersion: v1\nkind: X\n---\na: &x 1\nb: *x\n"
    with pytest.raises(SpecErrors) as errors:
        parse_documents(text, source="rules.yaml")
    alias = errors.value.errors[-1]
    assert isinstance(alias, SpecError) and alias.source == "rules.yaml" and alias.document == 1
    assert "aliases" in alias.message
    huge = "a: 1\n---\n" * 1001
    with pytest.raises(SpecErrors, match="more than 1000 documents"):
        parse_documents(huge, source="many.yaml")
