"""Hypothesis strategies of protobuf messages, built from their descriptors: every field of every
nested message, with edge values for its wire type (out-of-enum numbers, int64 extremes, NaN,
long strings). ``overrides`` give chosen fields a strategy of plausible values, so that requests
also get past the first check and reach the deeper logic."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

from tests.fuzz.strategies import HOSTILE_STRINGS, weighted

Overrides = Mapping[tuple[str, str], st.SearchStrategy[Any]]  # (message full name, field name)

# Protobuf strings are valid Unicode: no lone surrogates.
PROTO_TEXT = weighted(
    (2, st.sampled_from([s for s in HOSTILE_STRINGS if "\ud800" not in s])),
    (2, st.text(st.characters(exclude_categories=["Cs"]), max_size=40)),
    (1, st.text(st.characters(exclude_categories=["Cs"]), min_size=1000, max_size=70_000)),
)


def _ints(bits: int, signed: bool) -> st.SearchStrategy[int]:
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    edges = sorted({low, high, 0, 1, min(high, 2**31), max(low, -1)})
    return st.one_of(st.sampled_from(edges), st.integers(low, high))


_SCALARS: dict[int, st.SearchStrategy[Any]] = {
    FieldDescriptor.TYPE_INT32: _ints(32, True),
    FieldDescriptor.TYPE_SINT32: _ints(32, True),
    FieldDescriptor.TYPE_SFIXED32: _ints(32, True),
    FieldDescriptor.TYPE_UINT32: _ints(32, False),
    FieldDescriptor.TYPE_FIXED32: _ints(32, False),
    FieldDescriptor.TYPE_INT64: _ints(64, True),
    FieldDescriptor.TYPE_SINT64: _ints(64, True),
    FieldDescriptor.TYPE_SFIXED64: _ints(64, True),
    FieldDescriptor.TYPE_UINT64: _ints(64, False),
    FieldDescriptor.TYPE_FIXED64: _ints(64, False),
    FieldDescriptor.TYPE_DOUBLE: st.floats(),
    FieldDescriptor.TYPE_FLOAT: st.floats(width=32),
    FieldDescriptor.TYPE_BOOL: st.booleans(),
    FieldDescriptor.TYPE_STRING: PROTO_TEXT,
    FieldDescriptor.TYPE_BYTES: st.binary(max_size=64),
}


def _field(field: FieldDescriptor, overrides: Overrides, depth: int) -> st.SearchStrategy[Any]:
    chosen = overrides.get((field.containing_type.full_name, field.name))
    if chosen is not None:
        return chosen
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        sub = field.message_type
        if sub.GetOptions().map_entry:
            key = _field(sub.fields_by_name["key"], overrides, depth + 1)
            value = _field(sub.fields_by_name["value"], overrides, depth + 1)
            return st.dictionaries(key, value, max_size=4)
        single = message(GetMessageClass(sub), overrides, depth + 1)
    elif field.type == FieldDescriptor.TYPE_ENUM:
        numbers = [v.number for v in field.enum_type.values]
        single = weighted((3, st.sampled_from(numbers)), (1, _ints(32, True)))
    else:
        single = _SCALARS[field.type]
    if field.is_repeated:
        return weighted((5, st.lists(single, max_size=4)), (1, st.lists(single, min_size=50, max_size=400)))
    return single


def message(
    cls: type[Message], overrides: Overrides | None = None, depth: int = 0
) -> st.SearchStrategy[Message]:
    """Messages of ``cls`` with any subset of their fields set (at most one per oneof)."""
    overrides = overrides or {}
    descriptor: Descriptor = cls.DESCRIPTOR
    if depth > 4:
        return st.builds(cls)
    fields = {f.name: _field(f, overrides, depth) for f in descriptor.fields}
    values = st.fixed_dictionaries({}, optional=fields)
    return values.map(lambda kwargs: _build(cls, descriptor, kwargs))


def _build(cls: type[Message], descriptor: Descriptor, kwargs: dict[str, Any]) -> Message:
    for oneof in descriptor.oneofs:
        present = [f.name for f in oneof.fields if f.name in kwargs]
        for extra in present[1:]:
            del kwargs[extra]
    return cls(**kwargs)
