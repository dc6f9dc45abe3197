"""Merging the results of one statement run on several data nodes (ShardingSphere's merge engine).

* ``ORDER BY``: every node sorts its own rows; a heap-based k-way merge (:func:`heapq.merge`)
  interleaves the node streams row by row, so only one row per node is compared at a time.
* ``LIMIT n OFFSET o`` was rewritten to ``LIMIT o+n`` per node; the merge skips ``o`` rows and
  stops after ``n``.
* ``GROUP BY`` / aggregates: ``COUNT`` and ``SUM`` add up, ``MIN``/``MAX`` compare, ``AVG`` is
  Σsum/Σcount from the derived ``COUNT``/``SUM`` columns. When the node rows arrive sorted by the
  group keys (the ORDER BY equals the GROUP BY, or there was none and one was added) groups are
  merged as they stream past; otherwise groups are gathered in memory and sorted afterwards.
* ``DISTINCT``: rows already seen (on all visible columns) are dropped, order kept.
* Hidden derived columns (``ORDER_BY_DERIVED_n`` …) are cut off the end of every row.

Comparisons follow the database: on MySQL/MariaDB, strings compare case-insensitively and
ignoring trailing spaces (the default ``_ci`` PAD SPACE collations); on PostgreSQL by code point
(exact under the ``C`` collation). NULLs sort first or last as the node's ORDER BY put them.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

__all__ = ["Aggregate", "MergeSpec", "OrderItem", "merge"]


@dataclass(frozen=True, slots=True)
class OrderItem:
    index: int  # position in a node row; negative counts from the end (derived columns)
    desc: bool = False
    nulls_first: bool = True


@dataclass(frozen=True, slots=True)
class Aggregate:
    index: int
    function: str  # COUNT | SUM | MIN | MAX | AVG
    count_index: int | None = None  # AVG: its derived COUNT and SUM columns
    sum_index: int | None = None


@dataclass(slots=True)
class MergeSpec:
    derived: int = 0
    order: tuple[OrderItem, ...] = ()
    group: tuple[int, ...] | None = None  # group key positions; () = aggregates without GROUP BY
    aggregates: tuple[Aggregate, ...] = ()
    stream_group: bool = False
    distinct: bool = False
    offset: Callable[[Mapping[str, Any]], Any] | None = None
    count: Callable[[Mapping[str, Any]], Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def normalizer(family: str) -> Callable[[Any], Any]:
    if family == "mysql":

        def mysql(value: Any) -> Any:
            if isinstance(value, str):
                return value.rstrip(" ").casefold()
            return value

        return mysql
    return lambda value: value


def _compare(a: Any, b: Any) -> int:
    try:
        return int((a > b) - (a < b))
    except TypeError:
        x, y = str(a), str(b)
        return (x > y) - (x < y)


class _SortKey:
    __slots__ = ("items", "values")

    def __init__(self, values: tuple[Any, ...], items: tuple[OrderItem, ...]) -> None:
        self.values = values
        self.items = items

    def __lt__(self, other: _SortKey) -> bool:
        for value, theirs, item in zip(self.values, other.values, self.items, strict=True):
            if value is None or theirs is None:
                if value is None and theirs is None:
                    continue
                return (value is None) == item.nulls_first
            c = _compare(value, theirs)
            if c:
                return (c > 0) if item.desc else (c < 0)
        return False

    def __eq__(self, other: object) -> bool:
        # heapq compares [key, stream index, …] lists: equal keys must tie so the index decides.
        return isinstance(other, _SortKey) and not self < other and not other < self

    __hash__ = None  # type: ignore[assignment]


def _key_function(
    items: tuple[OrderItem, ...], norm: Callable[[Any], Any]
) -> Callable[[Sequence[Any]], _SortKey]:
    indexes = tuple(i.index for i in items)

    def key(row: Sequence[Any]) -> _SortKey:
        return _SortKey(tuple(norm(row[i]) for i in indexes), items)

    return key


# Types whose values compare among themselves natively exactly as :func:`_compare` does (never a
# TypeError); numbers of different types compare exactly too.
_NUMBERS = frozenset({int, bool, float, Decimal})
_NATIVE = (_NUMBERS, frozenset({str}), frozenset({bytes}))


def _native_key(
    items: tuple[OrderItem, ...], norm: Callable[[Any], Any], streams: Sequence[Iterable[Sequence[Any]]]
) -> tuple[Callable[[Sequence[Any]], Any], bool] | None:
    """``(key, reverse)`` for :func:`heapq.merge` with plain tuple keys, when they order the
    rows exactly as :class:`_SortKey` would: one direction for every ORDER BY item, and each
    item's values (in fetched node rows) of one family of natively comparable types, no NaN.
    None otherwise. Much cheaper than ``_SortKey``'s Python-level comparisons."""
    reverse = items[0].desc
    if any(item.desc != reverse for item in items) or not all(isinstance(s, list) for s in streams):
        return None
    indexes = tuple(item.index for item in items)
    for index in indexes:
        types = {type(row[index]) for stream in streams for row in stream}
        types.discard(type(None))
        if not types:
            continue
        if not any(types <= family for family in _NATIVE):
            return None
        if float in types or Decimal in types:
            for stream in streams:
                for row in stream:
                    value = row[index]
                    if value != value:  # NaN (float or Decimal)
                        return None
    # A NULL sorts before every value (rank 0) or after (rank 2) in the output order.
    ranks = tuple(0 if item.nulls_first != reverse else 2 for item in items)
    if len(items) == 1:
        index, rank = indexes[0], ranks[0]

        def single(row: Sequence[Any]) -> Any:
            value = row[index]
            return (rank,) if value is None else (1, norm(value))

        return single, reverse
    pairs = tuple(zip(indexes, ranks, strict=True))

    def several(row: Sequence[Any]) -> Any:
        return tuple((r,) if row[i] is None else (1, norm(row[i])) for i, r in pairs)

    return several, reverse


def _ordered(
    streams: Sequence[Iterable[Sequence[Any]]], items: tuple[OrderItem, ...], norm: Callable[[Any], Any]
) -> Iterator[Sequence[Any]]:
    """The node streams (each sorted by ``items``) merged into one sorted stream."""
    native = _native_key(items, norm, streams)
    if native is not None:
        key, reverse = native
        return heapq.merge(*streams, key=key, reverse=reverse)
    return heapq.merge(*streams, key=_key_function(items, norm))


def _fold(
    rows: list[Sequence[Any]], aggregates: tuple[Aggregate, ...], norm: Callable[[Any], Any]
) -> list[Any]:
    """One row out of the rows of one group (from several nodes)."""
    out = list(rows[0])
    for agg in aggregates:
        if agg.function == "COUNT":
            out[agg.index] = sum(int(r[agg.index] or 0) for r in rows)
        elif agg.function == "SUM":
            values = [r[agg.index] for r in rows if r[agg.index] is not None]
            out[agg.index] = _sum(values) if values else None
        elif agg.function in ("MIN", "MAX"):
            values = [r[agg.index] for r in rows if r[agg.index] is not None]
            if not values:
                out[agg.index] = None
                continue
            best = values[0]
            for v in values[1:]:
                c = _compare(norm(v), norm(best))
                if (c < 0) if agg.function == "MIN" else (c > 0):
                    best = v
            out[agg.index] = best
        else:  # AVG
            assert agg.count_index is not None and agg.sum_index is not None
            count = sum(int(r[agg.count_index] or 0) for r in rows)
            sums = [r[agg.sum_index] for r in rows if r[agg.sum_index] is not None]
            if count == 0 or not sums:
                out[agg.index] = None
                continue
            total = _sum(sums)
            out[agg.index] = _average(total, count, [r[agg.index] for r in rows])
            out[agg.count_index] = count
            out[agg.sum_index] = total
    return out


def _sum(values: list[Any]) -> Any:
    total = values[0]
    for v in values[1:]:
        if (isinstance(total, Decimal) and isinstance(v, float)) or (
            isinstance(total, float) and isinstance(v, Decimal)
        ):
            total, v = float(total), float(v)
        total = total + v
    return total


def _average(total: Any, count: int, node_averages: list[Any]) -> Any:
    if isinstance(total, float):
        return total / count
    value = Decimal(total) / Decimal(count)
    # Keep the scale the database gave its own AVG (MySQL: 4 more decimals than the column).
    scales = [-int(v.as_tuple().exponent) for v in node_averages if isinstance(v, Decimal) and v.is_finite()]
    if scales:
        scale = max(scales)
        value = value.quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP)  # as the servers round
    return value


def _group_key(row: Sequence[Any], group: tuple[int, ...], norm: Callable[[Any], Any]) -> tuple[Any, ...]:
    return tuple(_hashable(norm(row[i])) for i in group)


def _hashable(value: Any) -> Any:
    if isinstance(value, list | dict | bytearray):
        return repr(value)
    if isinstance(value, float) and value == int(value):
        return int(value)
    return value


def merge(
    spec: MergeSpec,
    family: str,
    streams: Sequence[Iterable[Sequence[Any]]],
    params: Mapping[str, Any],
) -> Iterator[tuple[Any, ...]]:
    """The merged rows of ``streams`` (one per data node), lazily."""
    norm = normalizer(family)
    rows: Iterable[Sequence[Any]]
    key = _key_function(spec.order, norm) if spec.order else None
    if spec.group is not None:
        if not spec.group:  # aggregates without GROUP BY: exactly one row
            collected = [r for stream in streams for r in stream]
            rows = [_fold(collected, spec.aggregates, norm)] if collected else []
        elif spec.stream_group and key is not None:
            rows = _stream_groups(_ordered(streams, spec.order, norm), spec, norm)
        else:
            groups: dict[tuple[Any, ...], list[Sequence[Any]]] = {}
            for stream in streams:
                for row in stream:
                    groups.setdefault(_group_key(row, spec.group, norm), []).append(row)
            folded = [_fold(g, spec.aggregates, norm) for g in groups.values()]
            if key is not None:
                folded.sort(key=key)
            rows = folded
    elif key is not None:
        rows = _ordered(streams, spec.order, norm)
    else:
        rows = itertools.chain.from_iterable(streams)
    cut = spec.derived
    visible: Iterator[tuple[Any, ...]] = (tuple(r[: len(r) - cut]) if cut else tuple(r) for r in rows)
    if spec.distinct:
        visible = _distinct(visible, norm)
    offset = int(spec.offset(params)) if spec.offset is not None else 0
    if spec.count is not None:
        count = int(spec.count(params))
        return itertools.islice(visible, offset, offset + max(count, 0))
    return itertools.islice(visible, offset, None) if offset else visible


def _stream_groups(
    ordered: Iterable[Sequence[Any]], spec: MergeSpec, norm: Callable[[Any], Any]
) -> Iterator[list[Any]]:
    assert spec.group is not None
    current: list[Sequence[Any]] = []
    current_key: tuple[Any, ...] | None = None
    for row in ordered:
        k = _group_key(row, spec.group, norm)
        if current and k != current_key:
            yield _fold(current, spec.aggregates, norm)
            current = []
        current_key = k
        current.append(row)
    if current:
        yield _fold(current, spec.aggregates, norm)


def _distinct(rows: Iterator[tuple[Any, ...]], norm: Callable[[Any], Any]) -> Iterator[tuple[Any, ...]]:
    seen: set[tuple[Any, ...]] = set()
    for row in rows:
        k = tuple(_hashable(norm(v)) for v in row)
        if k not in seen:
            seen.add(k)
            yield row
