"""Fuzzing every kind's model: a document (schema-shaped with edge values, schema-shaped with
hostile values, or shapeless) read as JSON or YAML is either refused with a SpecError naming the
field, or accepted; and what is accepted can be encoded in both wire forms, decoded back by the
SDK's decoder, and dumped to a form that validates again (an accepted value that cannot travel
is what kept a stream from ever getting its rules: issue 12, finding 8)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from opensergo.spec import codec, kinds
from opensergo.spec.base import Resource
from opensergo.spec.errors import SpecError
from opensergo.spec.kinds import KindInfo
from opensergo.spec.limits import LimitError
from opensergo.spec.loader import load_json, load_yaml, parse_object
from tests.fuzz import strategies as fs
from tests.fuzz import tally
from tests.fuzz.conftest import MARKS, budget

pytestmark = MARKS


def _documents(info: KindInfo) -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(fs.kind_document(info, hostile=False), fs.kind_document(info), fs.random_document(info))


def _read(text: str, as_json: bool) -> Any:
    return load_json(text) if as_json else load_yaml(text)


def assert_travels(info: KindInfo, obj: Resource) -> None:
    """An accepted object encodes in both forms, and the SDK decodes each back to a valid object."""
    payloads = [codec.encode_native(obj)]
    upstream = codec.encode_upstream(obj)
    assert (upstream is None) == (info.upstream is None)
    if upstream is not None:
        payloads.append(upstream)
    for payload in payloads:
        back = codec.decode(payload, kind=info, namespace=obj.namespace, app=fs.FUZZ_APP)
        assert back.kind == info.kind
    again = parse_object(obj.to_dict())
    assert again.to_dict() == obj.to_dict()


@pytest.mark.parametrize("info", kinds.all_kinds(), ids=lambda k: k.kind)
@given(data=st.data(), as_json=st.booleans())
@budget(ci=40, deep=1_200)
def test_every_kind_accepts_only_what_can_travel(info: KindInfo, data: st.DataObject, as_json: bool) -> None:
    doc = data.draw(_documents(info))
    text = fs.to_json(doc) if as_json else fs.to_yaml(doc)
    try:
        value = _read(text, as_json)
    except LimitError as err:
        assert err.message
        tally.count("models", "beyond a parser limit")
        return
    try:
        obj = parse_object(value)
    except SpecError as err:
        assert err.message
        # The path names the field; only a document that is not a map at all has none.
        assert err.path or not isinstance(value, dict), (err, value)
        tally.count("models", "rejected")
        return
    assert isinstance(obj, info.model)
    assert_travels(info, obj)
    tally.count("models", "accepted")
