"""Shadow: send test traffic to a shadow database (ShardingSphere 5.1/5.2 semantics).

Algorithms:

* ``VALUE_MATCH`` (props ``operation``, ``column``, ``value``) and ``REGEX_MATCH`` (``operation``,
  ``column``, ``regex``, a *full* match as Java's ``matches()``): for statements of that operation
  (insert, update, delete, select), over the values the statement gives the column in INSERT
  VALUES (every row) and in WHERE ``=``, ``IN`` and ``LIKE``. Values are compared as strings.
* ``SIMPLE_HINT`` (props ``k: v`` …): the statement is shadow when every prop appears with the same
  value in its comments, written ``/*shadow:true,foo:bar*/`` anywhere in the SQL. The current
  **traffic lane** counts as one more pair: a request in lane ``Gray`` (``x-opensergo-traffic``
  header or baggage, see :mod:`opensergo.governance.routing.lanes`) carries
  ``x-opensergo-traffic: Gray`` (the lane's baggage key), so a ``SIMPLE_HINT`` with the prop
  ``x-opensergo-traffic: Gray`` sends every statement of that lane to the shadow database.

Decision (``decide``): when the statement involves no shadow table, the
``defaultShadowAlgorithmName`` (a hint algorithm) decides. Otherwise, for each involved shadow
table, any of its hint algorithms or any of its column algorithms for the statement's operation
that matches makes it shadow. DDL is decided by hints only. Anything else goes to production.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlglot import exp

from opensergo.database.encrypt import java_string
from opensergo.database.errors import ConfigurationError
from opensergo.database.statement import Statement, hint_pairs
from opensergo.governance.routing.lanes import LaneMark
from opensergo.spec.database import Algorithm, Shadow

__all__ = ["ShadowPlan", "ShadowRule"]

_OPERATIONS = frozenset({"insert", "update", "delete", "select"})


@dataclass(frozen=True, slots=True)
class _ColumnAlgorithm:
    operation: str
    column: str
    value: str | None
    regex: re.Pattern[str] | None

    def matches(self, value: Any) -> bool:
        if value is None:
            return False
        text = java_string(value)
        if self.regex is not None:
            return self.regex.fullmatch(text) is not None
        return text == self.value


@dataclass(frozen=True, slots=True)
class _HintAlgorithm:
    props: tuple[tuple[str, str], ...]

    def matches(self, pairs: Mapping[str, str]) -> bool:
        return all(pairs.get(k) == v for k, v in self.props)


def _compile_algorithm(name: str, algorithm: Algorithm) -> _ColumnAlgorithm | _HintAlgorithm:
    kind = algorithm.type.upper()
    props = {str(k): v for k, v in algorithm.props.items()}
    if kind == "SIMPLE_HINT":
        if not props:
            raise ConfigurationError(f"shadow algorithm {name!r}: SIMPLE_HINT needs at least one prop")
        return _HintAlgorithm(tuple((k, java_string(v)) for k, v in props.items()))
    if kind in ("VALUE_MATCH", "REGEX_MATCH"):
        operation = str(props.get("operation", "")).lower()
        column = str(props.get("column", ""))
        if operation not in _OPERATIONS or not column:
            raise ConfigurationError(
                f"shadow algorithm {name!r}: {kind} needs operation (insert|update|delete|select) and column"
            )
        if kind == "VALUE_MATCH":
            if "value" not in props:
                raise ConfigurationError(f"shadow algorithm {name!r}: VALUE_MATCH needs value")
            return _ColumnAlgorithm(operation, column.lower(), java_string(props["value"]), None)
        if "regex" not in props:
            raise ConfigurationError(f"shadow algorithm {name!r}: REGEX_MATCH needs regex")
        try:
            pattern = re.compile(str(props["regex"]))
        except re.error as e:
            raise ConfigurationError(f"shadow algorithm {name!r}: invalid regex: {e}") from None
        return _ColumnAlgorithm(operation, column.lower(), None, pattern)
    raise ConfigurationError(
        f"shadow algorithm {name!r}: type {algorithm.type!r} is not supported "
        "(VALUE_MATCH, REGEX_MATCH, SIMPLE_HINT)"
    )


@dataclass(frozen=True, slots=True)
class _Value:
    """Where a column's value is: a parameter name / position, or a literal."""

    param: str | None = None
    index: int | None = None
    literal: Any = None

    def resolve(self, params: Any) -> Any:
        if self.param is not None:
            return params.get(self.param) if isinstance(params, Mapping) else None
        if self.index is not None:
            if isinstance(params, list | tuple) and self.index < len(params):
                return params[self.index]
            return None
        return self.literal


@dataclass(frozen=True, slots=True)
class ShadowPlan:
    """What shadow routing needs from one statement: involved shadow tables, the statement's own
    hint pairs, and where each column's values are."""

    tables: tuple[str, ...]
    operation: str
    pairs: Mapping[str, str]
    values: Mapping[str, tuple[_Value, ...]]  # column (lower) -> values


def _value_of(node: exp.Expression, positions: Mapping[int, int]) -> _Value | None:
    if isinstance(node, exp.Placeholder):
        if node.name and node.name != "?":
            return _Value(param=node.name)
        return _Value(index=positions.get(id(node)))
    if isinstance(node, exp.Literal):
        return _Value(literal=node.name if node.is_string else node.this)
    return None


def _column_values(tree: exp.Expression) -> dict[str, tuple[_Value, ...]]:  # noqa: C901 (complexity debt, see pyproject [tool.ruff.lint.mccabe])
    anonymous = (p for p in tree.find_all(exp.Placeholder, bfs=False) if not p.name or p.name == "?")
    positions = {id(p): i for i, p in enumerate(anonymous)}
    found: dict[str, list[_Value]] = {}

    def add(column: str, node: exp.Expression) -> None:
        value = _value_of(node, positions)
        if value is not None:
            found.setdefault(column.lower(), []).append(value)

    if isinstance(tree, exp.Insert) and isinstance(tree.this, exp.Schema):
        names = [c.name for c in tree.this.expressions]
        values = tree.expression
        if isinstance(values, exp.Values):
            for row in values.expressions:
                if isinstance(row, exp.Tuple):
                    for name, item in zip(names, row.expressions, strict=False):
                        add(name, item)
    where = tree.args.get("where")
    if where is not None:
        for node in where.find_all(exp.EQ, exp.Like, exp.In):
            if node.find_ancestor(exp.Subquery) is not None:
                continue
            if isinstance(node, exp.In):
                if isinstance(node.this, exp.Column):
                    for item in node.expressions:
                        add(node.this.name, item)
                continue
            left, right = node.this, node.expression
            if isinstance(left, exp.Column):
                add(left.name, right)
            elif isinstance(right, exp.Column):
                add(right.name, left)
    return {k: tuple(v) for k, v in found.items()}


class ShadowRule:
    """A Shadow object compiled."""

    def __init__(self, obj: Shadow) -> None:
        spec = obj.spec
        self.name = obj.name
        self.mappings: dict[str, str] = {
            m.sourceDataSourceName: m.shadowDataSourceName for m in spec.dataSources.values()
        }
        algorithms = {name: _compile_algorithm(name, a) for name, a in spec.shadowAlgorithms.items()}
        self.tables: dict[str, tuple[tuple[_HintAlgorithm, ...], tuple[_ColumnAlgorithm, ...]]] = {}
        for table, table_spec in spec.tables.items():
            chosen = [algorithms[n] for n in table_spec.shadowAlgorithmNames]
            hints = tuple(a for a in chosen if isinstance(a, _HintAlgorithm))
            columns = tuple(a for a in chosen if isinstance(a, _ColumnAlgorithm))
            self.tables[table.lower()] = (hints, columns)
        default = algorithms.get(spec.defaultShadowAlgorithmName or "")
        if default is not None and not isinstance(default, _HintAlgorithm):
            raise ConfigurationError(
                f"defaultShadowAlgorithmName {spec.defaultShadowAlgorithmName!r} must be a hint algorithm"
            )
        self.default: _HintAlgorithm | None = default
        self.uses_lane = any(
            isinstance(a, _HintAlgorithm) for a in algorithms.values()
        )  # only hint algorithms read the lane

    def plan(self, statement: Statement) -> ShadowPlan:
        tables = tuple(t for t in statement.tables if t in self.tables)
        values = _column_values(statement.tree) if tables and statement.tree is not None else {}
        return ShadowPlan(tables, statement.kind, hint_pairs(statement), values)

    def decide(self, plan: ShadowPlan, params: Any, lane: LaneMark | None) -> bool:
        """Whether the statement goes to the shadow data source."""
        pairs: Mapping[str, str] = plan.pairs
        if lane is not None and lane.key not in pairs:
            pairs = {**pairs, lane.key: lane.name}
        if not plan.tables:
            return self.default is not None and self.default.matches(pairs)
        for table in plan.tables:
            hints, columns = self.tables[table]
            if any(h.matches(pairs) for h in hints):
                return True
            if plan.operation == "ddl":
                continue
            for algorithm in columns:
                if algorithm.operation != plan.operation:
                    continue
                if any(algorithm.matches(v.resolve(params)) for v in plan.values.get(algorithm.column, ())):
                    return True
        return False

    def target(self, source: str, write_source: str | None) -> str | None:
        """The shadow of ``source``; a read routed to a replica without its own shadow uses the
        write source's shadow (shadow databases seldom have replicas)."""
        shadow = self.mappings.get(source)
        if shadow is None and write_source is not None:
            shadow = self.mappings.get(write_source)
        return shadow
