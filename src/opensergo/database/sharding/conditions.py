"""Sharding conditions: what a statement's WHERE says about sharding columns.

At plan time the WHERE clause of the statement itself (not of its subqueries) is turned into an
OR of AND-groups of simple predicates on columns: ``col = v``, ``col IN (v, …)``, ``col BETWEEN a
AND b``, ``col < v`` (and ``<=``, ``>``, ``>=``, either side). ``v`` must be a literal or a
parameter; anything else (functions, ``NOT``, ``<>``, ``IS NULL``, other columns) constrains
nothing, so the route can only grow, never miss a row. At execution the parameters are bound
and each group becomes :class:`ColumnCondition` values per column (an AND of conditions on one
column intersects them: ``id = 1 AND id = 2`` routes nowhere).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlglot import exp

from opensergo.database.sharding.algorithms import ValueRange
from opensergo.database.sharding.rule import ColumnCondition

__all__ = ["EMPTY", "Predicate", "ValueSource", "bind_group", "extract", "value_source"]

MAX_GROUPS = 64  # an OR/AND tree that expands to more groups constrains nothing


class _Empty:
    """An AND-group that no row satisfies (``id = 1 AND id = 2``)."""


EMPTY = _Empty()

ValueSource = Callable[[Mapping[str, Any]], Any]


def value_source(node: exp.Expression) -> ValueSource | None:
    """How to get the value of ``node`` at execution: literals now, parameters from the bound
    parameters; None when it is not a plain value (an expression, a column …)."""
    while isinstance(node, exp.Cast | exp.Paren):  # PostgreSQL: %(x)s::INTEGER
        node = node.this
    if isinstance(node, exp.Placeholder):
        name = node.name
        if not name or name == "?":
            return None
        return lambda params: params[name]
    if isinstance(node, exp.Neg):
        inner = value_source(node.this)
        if inner is None:
            return None
        return lambda params: -inner(params)
    if isinstance(node, exp.Null):
        return lambda params: None
    if isinstance(node, exp.Boolean):
        flag = bool(node.this)
        return lambda params: flag
    if isinstance(node, exp.Literal):
        if node.is_string:
            text = node.name
            return lambda params: text
        raw = str(node.this)
        number: Any
        try:
            number = int(raw)
        except ValueError:
            try:
                number = Decimal(raw)
            except ArithmeticError:
                return None
        return lambda params: number
    return None


@dataclass(frozen=True, slots=True)
class Predicate:
    """One simple predicate on ``table.column`` (``table`` None when unqualified)."""

    table: str | None
    column: str
    op: str  # in | range
    values: tuple[ValueSource, ...] = ()
    lower: ValueSource | None = None
    lower_closed: bool = True
    upper: ValueSource | None = None
    upper_closed: bool = True


_FLIP: dict[type[exp.Expression], type[exp.Expression]] = {
    exp.GT: exp.LT,
    exp.GTE: exp.LTE,
    exp.LT: exp.GT,
    exp.LTE: exp.GTE,
}


def _column(node: exp.Expression, scope: Mapping[str, str]) -> tuple[str | None, str] | None:
    if not isinstance(node, exp.Column) or isinstance(node.this, exp.Star):
        return None
    qualifier = node.table.lower() if node.table else None
    if qualifier is not None:
        table = scope.get(qualifier)
        if table is None:
            return None  # a table of an outer query or unknown: not ours
        return table, node.name.lower()
    return None, node.name.lower()


def _leaf(node: exp.Expression, scope: Mapping[str, str]) -> Predicate | None:  # noqa: C901 (complexity debt, see pyproject [tool.ruff.lint.mccabe])
    if isinstance(node, exp.EQ):
        for col_node, value_node in ((node.this, node.expression), (node.expression, node.this)):
            column = _column(col_node, scope)
            source = value_source(value_node) if column else None
            if column and source:
                return Predicate(column[0], column[1], "in", (source,))
        return None
    if isinstance(node, exp.In):
        column = _column(node.this, scope)
        if column is None or node.args.get("query") is not None or node.args.get("unnest") is not None:
            return None
        sources = [value_source(item) for item in node.expressions]
        if not sources or any(s is None for s in sources):
            return None
        return Predicate(column[0], column[1], "in", tuple(s for s in sources if s is not None))
    if isinstance(node, exp.Between):
        column = _column(node.this, scope)
        low, high = value_source(node.args["low"]), value_source(node.args["high"])
        if column is None or low is None or high is None:
            return None
        return Predicate(column[0], column[1], "range", lower=low, upper=high)
    if isinstance(node, exp.GT | exp.GTE | exp.LT | exp.LTE):
        kind: type[exp.Expression] = type(node)
        column = _column(node.this, scope)
        value = value_source(node.expression)
        if column is None:
            column = _column(node.expression, scope)
            value = value_source(node.this)
            kind = _FLIP[kind]
        if column is None or value is None:
            return None
        if kind in (exp.GT, exp.GTE):
            return Predicate(column[0], column[1], "range", lower=value, lower_closed=kind is exp.GTE)
        return Predicate(column[0], column[1], "range", upper=value, upper_closed=kind is exp.LTE)
    return None


def _groups(node: exp.Expression, scope: Mapping[str, str]) -> list[list[Predicate]]:
    if isinstance(node, exp.Paren):
        return _groups(node.this, scope)
    if isinstance(node, exp.And):
        left, right = _groups(node.this, scope), _groups(node.expression, scope)
        if len(left) * len(right) > MAX_GROUPS:
            return [[]]
        return [a + b for a in left for b in right]
    if isinstance(node, exp.Or):
        out = _groups(node.this, scope) + _groups(node.expression, scope)
        return out if len(out) <= MAX_GROUPS else [[]]
    leaf = _leaf(node, scope)
    return [[leaf]] if leaf is not None else [[]]


def extract(where: exp.Expression | None, scope: Mapping[str, str]) -> list[list[Predicate]]:
    """The OR-of-AND predicate groups of a WHERE clause (``scope``: alias or name -> table)."""
    if where is None:
        return [[]]
    node = where.this if isinstance(where, exp.Where) else where
    return _groups(node, scope)


def _compare(a: Any, b: Any) -> int | None:
    try:
        return int((a > b) - (a < b))
    except TypeError:
        return None


def _in_range(value: Any, rng: ValueRange) -> bool:
    if rng.has_lower:
        c = _compare(value, rng.lower)
        if c is not None and (c < 0 or (c == 0 and not rng.lower_closed)):
            return False
    if rng.has_upper:
        c = _compare(value, rng.upper)
        if c is not None and (c > 0 or (c == 0 and not rng.upper_closed)):
            return False
    return True


def _intersect(a: ValueRange, b: ValueRange) -> ValueRange:
    lower, lower_closed = a.lower, a.lower_closed
    if b.has_lower:
        c = _compare(b.lower, lower) if a.has_lower else 1
        if c is None:
            c = 0
        if c > 0 or (c == 0 and not b.lower_closed):
            lower, lower_closed = b.lower, b.lower_closed
    upper, upper_closed = a.upper, a.upper_closed
    if b.has_upper:
        c = _compare(b.upper, upper) if a.has_upper else -1
        if c is None:
            c = 0
        if c < 0 or (c == 0 and not b.upper_closed):
            upper, upper_closed = b.upper, b.upper_closed
    return ValueRange(lower, lower_closed, upper, upper_closed)


def _same(a: Any, b: Any) -> bool:
    if a == b:
        return True
    return str(a) == str(b)  # 5 and '5' meet in SQL


def _bind_values(sources: tuple[ValueSource, ...], params: Mapping[str, Any]) -> tuple[Any, ...]:
    """The distinct values of an ``=`` / ``IN`` predicate."""
    if len(sources) == 1:  # ``column = value``: the common case
        value = _hashable(sources[0](params))
        hash(value)  # an unhashable value fails here as it does in dict.fromkeys
        return (value,)
    return tuple(dict.fromkeys(_hashable(s(params)) for s in sources))


def bind_group(
    group: Sequence[Predicate], params: Mapping[str, Any], tables: frozenset[str | None]
) -> dict[str, ColumnCondition] | _Empty:
    """The conditions of one AND-group for the tables in ``tables`` (None = unqualified)."""
    values: dict[str, tuple[Any, ...]] = {}
    ranges: dict[str, ValueRange] = {}
    for predicate in group:
        if predicate.table not in tables:
            continue
        column = predicate.column
        if predicate.op == "in":
            bound = _bind_values(predicate.values, params)
            if column in values:
                bound = tuple(v for v in values[column] if any(_same(v, w) for w in bound))
                if not bound:
                    return EMPTY
            values[column] = bound
        else:
            rng = ValueRange(
                predicate.lower(params) if predicate.lower else None,
                predicate.lower_closed,
                predicate.upper(params) if predicate.upper else None,
                predicate.upper_closed,
            )
            ranges[column] = _intersect(ranges[column], rng) if column in ranges else rng
    out: dict[str, ColumnCondition] = {}
    for column, vals in values.items():
        rng_or_none = ranges.pop(column, None)
        if rng_or_none is not None:
            vals = tuple(v for v in vals if _in_range(v, rng_or_none))
            if not vals:
                return EMPTY
        out[column] = ColumnCondition(values=vals)
    for column, rng in ranges.items():
        if rng.has_lower and rng.has_upper:
            c = _compare(rng.lower, rng.upper)
            if c is not None and (c > 0 or (c == 0 and not (rng.lower_closed and rng.upper_closed))):
                return EMPTY
        out[column] = ColumnCondition(range=rng)
    return out


def _hashable(value: Any) -> Any:
    return value if not isinstance(value, list | dict | bytearray) else repr(value)
