"""Sharding values for ``hint`` strategies: from an SQL comment or a ``with`` block.

* SQL: ``/* SHARDINGSPHERE_HINT: t_order.SHARDING_DATABASE_VALUE=1, t_order.SHARDING_TABLE_VALUE=1 */``
  at the start of the statement (ShardingSphere's syntax); without the ``t_order.`` prefix a value
  applies to every table of the statement.
* Python: ``with sharding_hint("t_order", database=1, table=[1, 2]):`` (ShardingSphere's
  ``HintManager``), for statements whose SQL you do not write.

Values that look like integers are integers (ShardingSphere reads them as BigInteger).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any

__all__ = ["HintValues", "comment_hints", "current_hints", "sharding_hint"]

# (table lower-cased or None for every table, "database" | "table") -> values
HintValues = Mapping[tuple[str | None, str], tuple[Any, ...]]

_NO_HINTS: HintValues = MappingProxyType({})
_HINTS: ContextVar[HintValues] = ContextVar("opensergo_sharding_hints", default=_NO_HINTS)
_KEY = re.compile(r"^(?:(?P<table>[\w$]+)\.)?SHARDING_(?P<kind>DATABASE|TABLE)_VALUE$", re.I)


def _value(text: str) -> Any:
    text = text.strip()
    return int(text) if re.fullmatch(r"[+-]?\d+", text) else text


def comment_hints(pairs: Mapping[str, str]) -> HintValues:
    """Sharding values among the pairs of a ``SHARDINGSPHERE_HINT`` comment."""
    out: dict[tuple[str | None, str], tuple[Any, ...]] = {}
    for key, value in pairs.items():
        match = _KEY.match(key.strip())
        if match is None:
            continue
        table = match.group("table")
        slot = (table.lower() if table else None, match.group("kind").lower())
        out[slot] = (*out.get(slot, ()), _value(value))
    return out


def current_hints() -> HintValues:
    return _HINTS.get()


@contextlib.contextmanager
def sharding_hint(
    table: str | None = None, *, database: Any = None, table_value: Any = None, **kwargs: Any
) -> Iterator[None]:
    """Give hint-strategy sharding values to every statement run inside the block.

    ``database`` / ``table_value`` (or ``table=`` given by keyword when ``table`` names the logic
    table: ``sharding_hint("t_order", database=1, table_value=0)``) are one value or a list.
    ``table`` None applies the values to every logic table.
    """
    if "values" in kwargs:
        raise TypeError("use database= and table_value=")
    merged: dict[tuple[str | None, str], tuple[Any, ...]] = dict(_HINTS.get())
    key = table.lower() if table else None
    for kind, value in (("database", database), ("table", table_value)):
        if value is None:
            continue
        values = tuple(value) if isinstance(value, list | tuple | set | frozenset) else (value,)
        merged[(key, kind)] = values
    token = _HINTS.set(merged)
    try:
        yield
    finally:
        _HINTS.reset(token)


def values_for(hints: Sequence[HintValues], table: str, kind: str) -> tuple[Any, ...] | None:
    """The hint values of ``table`` (lower-cased) for ``kind``; later sources win."""
    found: tuple[Any, ...] | None = None
    for source in hints:
        for slot in ((table, kind), (None, kind)):
            if slot in source:
                found = source[slot]
                break
    return found
