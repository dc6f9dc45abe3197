"""Fuzzing the YAML/JSON reader (opensergo.spec.loader): every text decodes under the parser
limits or is refused with YamlSyntaxError (line and column) or LimitError (a field path, or the
text as a whole), and nothing else escapes; a decoded value is finite, in range and shallow."""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any

from hypothesis import given

from opensergo.spec.errors import SpecError, SpecErrors
from opensergo.spec.limits import DEFAULT_LIMITS, INT64_MAX, INT64_MIN, LimitError
from opensergo.spec.loader import YamlSyntaxError, iter_yaml, load_json, load_yaml, locate, parse_documents
from tests.fuzz import strategies as fs
from tests.fuzz import tally
from tests.fuzz.conftest import MARKS, budget

pytestmark = MARKS

SLOW = 10.0  # seconds; a text of at most 1 MiB that takes longer to read counts as a hang


def _depth(value: Any) -> int:
    deepest, stack = 0, [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children)
            deepest = max(deepest, depth + (1 if children else 0))
    return deepest


def _assert_sane(value: Any) -> None:
    """What the limits promise of every decoded value."""
    assert _depth(value) <= DEFAULT_LIMITS.max_depth
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
        elif isinstance(node, float):
            assert math.isfinite(node)
        elif isinstance(node, int) and not isinstance(node, bool):
            assert INT64_MIN <= node <= INT64_MAX


def _timed(target: str, read: Any, text: str) -> Any:
    started = time.monotonic()
    try:
        return read(text)
    finally:
        took = time.monotonic() - started
        assert took < SLOW, f"{target}: {took:.1f}s for a text of {len(text)} characters"


@given(fs.yaml_texts())
@budget(ci=600, deep=18_000)
def test_yaml_texts_decode_or_are_refused_with_a_location(text: str) -> None:
    try:
        docs = _timed("iter_yaml", lambda t: list(iter_yaml(t)), text)
    except YamlSyntaxError as err:
        assert err.problem
        tally.count("loader.yaml", "syntax error")
    except LimitError as err:
        assert err.message
        tally.count("loader.yaml", "beyond a limit")
    else:
        assert len(docs) <= DEFAULT_LIMITS.max_documents
        for doc in docs:
            _assert_sane(doc)
        tally.count("loader.yaml", "decoded")
    # One document: the same rules, the same outcome class.
    with contextlib.suppress(YamlSyntaxError, LimitError):
        _assert_sane(load_yaml(text))
    where = locate(text, ("spec", "threshold"))
    assert where is None or (where[0] >= 1 and where[1] >= 1)


@given(fs.json_texts())
@budget(ci=300, deep=8_000)
def test_json_texts_decode_or_are_refused(text: str) -> None:
    try:
        value = _timed("load_json", load_json, text)
    except LimitError as err:
        assert err.message
        tally.count("loader.json", "beyond a limit")
    except ValueError as err:  # json.JSONDecodeError: not JSON, with its position
        assert "line" in str(err) or "char" in str(err), err
        tally.count("loader.json", "not JSON")
    else:
        _assert_sane(value)
        tally.count("loader.json", "decoded")


@given(fs.yaml_texts())
@budget(ci=400, deep=10_000)
def test_documents_parse_or_every_error_names_its_document(text: str) -> None:
    """``opensergo apply -f`` and friends: objects, or SpecErrors naming source and document."""
    try:
        objects = _timed("parse_documents", lambda t: parse_documents(t, source="fuzz.yaml"), text)
    except SpecErrors as errors:
        assert errors.errors
        for err in errors.errors:
            assert isinstance(err, SpecError) and err.message
            assert err.source == "fuzz.yaml"
            assert err.document is not None and err.document >= 0
        tally.count("loader.documents", "rejected")
    else:
        for obj in objects:
            assert obj.to_dict()["kind"]
        tally.count("loader.documents", "accepted" if objects else "empty")
