"""Per-statement sharding: route a statement to data nodes and rewrite it for each.

:func:`plan_statement` runs once per SQL string (the result is kept in the runtime's plan cache)
and decides everything that does not depend on parameter values: which logic tables the
statement names, how their names are replaced, which predicates can route it, the derived
columns and rewritten ``LIMIT`` of a cross-node query, and the constructs that cannot run
correctly across nodes. :meth:`ShardedStatement.route` then binds the parameters of one
execution and returns the :class:`Execution`: one :class:`Unit` (data source, SQL, parameters)
per data node, and how to merge their results.

What goes where (ShardingSphere 5.1/5.2):

* a sharded table: the nodes its strategies pick from the WHERE predicates (``=``, ``IN``,
  ranges), or every node; binding tables follow the first sharded table of the FROM clause node
  for node (no Cartesian product); an INSERT routes each row by its values (generating keys
  first) and splits a multi-row INSERT per node; DDL runs on every node;
* a broadcast table: writes and DDL on every data source, reads on one;
* any other table (a "single" table) and statements without tables: the rule's first data
  source.

A statement that cannot be executed correctly across the nodes it routes to is refused with
:class:`~opensergo.database.errors.UnsupportedStatementError` naming the construct; it is never
sent.
"""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from sqlglot import exp

from opensergo.database.errors import UnsupportedStatementError
from opensergo.database.sharding.conditions import (
    EMPTY,
    Predicate,
    ValueSource,
    bind_group,
    extract,
    value_source,
)
from opensergo.database.sharding.hints import HintValues, comment_hints, current_hints, values_for
from opensergo.database.sharding.merge import Aggregate, MergeSpec, OrderItem
from opensergo.database.sharding.rule import ColumnCondition, DataNode, ShardedTable, ShardingRule
from opensergo.database.statement import Statement, parse_sql, render, ss_hints
from opensergo.database.urls import Family

__all__ = ["Execution", "ShardedStatement", "Unit", "plan_statement"]

_LIMIT_PARAM = "__os_limit"
_KEY_PARAM = "__os_key_{}"
_POSITIONAL = "__os_p{}"
_AGGREGATES = (exp.Count, exp.Sum, exp.Min, exp.Max, exp.Avg)


@dataclass(slots=True)
class Unit:
    """One statement for one data source."""

    data_source: str
    sql: str
    params: Any
    rows: tuple[int, ...] = ()  # INSERT: the statement's row indexes in this unit


@dataclass(slots=True)
class Execution:
    units: list[Unit]
    merge: MergeSpec | None = None  # several units of a query: how to merge their rows
    any_one: bool = False  # a broadcast read: run the (single) unit on any data source
    generated: list[Any] = field(default_factory=list)  # generated keys, in row order
    first_rowcount: bool = False  # broadcast writes: every data source reports the same count
    returning_rows: int = 0  # INSERT … RETURNING over several units: rows to put back in order
    bound: Mapping[str, Any] = field(default_factory=dict)  # the parameters the merge reads (LIMIT)


def _refuse(message: str, table: str | None = None, column: str | None = None) -> UnsupportedStatementError:
    return UnsupportedStatementError(f"{message}; the statement was not sent", table=table, column=column)


def _from_tables(select: exp.Expression) -> list[exp.Table]:
    """The tables of a SELECT's own FROM and JOIN clauses (not of subqueries)."""
    out: list[exp.Table] = []
    source = select.args.get("from_") or select.args.get("from")
    if source is not None and isinstance(source.this, exp.Table):
        out.append(source.this)
    for join in select.args.get("joins") or ():
        if isinstance(join.this, exp.Table):
            out.append(join.this)
    return out


def _scope(tables: Sequence[exp.Table]) -> dict[str, str]:
    scope: dict[str, str] = {}
    for table in tables:
        name = table.name.lower()
        scope.setdefault(name, name)
        if table.alias:
            scope[table.alias.lower()] = name
    return scope


def _name_positional(tree: exp.Expression) -> int:
    count = 0
    for node in tree.find_all(exp.Placeholder, bfs=False):
        if not node.name or node.name == "?":
            node.set("this", _POSITIONAL.format(count))
            count += 1
    return count


class _Renderer:
    """Renders a tree with logic table names replaced, cached per replacement."""

    def __init__(
        self, tree: exp.Expression, family: Family, escaped: bool, unaliased: frozenset[str]
    ) -> None:
        self.tree = tree
        self.family = family
        self.escaped = escaped
        self.unaliased = unaliased
        self._cache: dict[Any, str] = {}
        self._lock = threading.Lock()

    def sql(self, mapping: Mapping[str, str], key: Any = None, tree: exp.Expression | None = None) -> str:
        # A plan builds its mappings in one fixed table order: the values identify them.
        cache_key = key if key is not None else tuple(mapping.values())
        found = self._cache.get(cache_key)
        if found is not None:
            return found
        sql = render(_rename(tree or self.tree, mapping, self.unaliased), self.family, False, self.escaped)
        with self._lock:
            if len(self._cache) > 4096:
                self._cache.clear()
            self._cache[cache_key] = sql
        return sql


def _rename(tree: exp.Expression, mapping: Mapping[str, str], unaliased: frozenset[str]) -> exp.Expression:
    def fix(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Table):
            actual = mapping.get(node.name.lower())
            if actual is not None:
                quoted = (
                    bool(node.this.args.get("quoted")) if isinstance(node.this, exp.Identifier) else False
                )
                node.set("this", exp.Identifier(this=actual, quoted=quoted))
                node.set("db", None)
                node.set("catalog", None)
            return node
        if isinstance(node, exp.Column) and node.table:
            qualifier = node.table.lower()
            actual = mapping.get(qualifier)
            if actual is not None and qualifier in unaliased:
                table_id = node.args.get("table")
                quoted = bool(table_id.args.get("quoted")) if isinstance(table_id, exp.Identifier) else False
                node.set("table", exp.Identifier(this=actual, quoted=quoted))
                node.set("db", None)
                node.set("catalog", None)
        return node

    return tree.transform(fix, copy=True)


def _false_where(tree: exp.Expression) -> exp.Expression:
    """The statement with ``AND 1 = 0``: it runs (and returns its columns) but matches nothing."""
    copy = tree.copy()
    if isinstance(copy, exp.Select):
        copy = copy.where(exp.EQ(this=exp.Literal.number(1), expression=exp.Literal.number(0)), copy=False)
        copy.set("limit", None)
        copy.set("offset", None)
    return copy


class ShardedStatement:
    """The sharding plan of one SQL string."""

    def __init__(
        self, planner: _Planner, statement: Statement, tree: exp.Expression | None, positional: int
    ) -> None:
        self.rule = planner.rule
        self.family = planner.family
        self.statement = statement
        self.tree = tree
        self.positional = positional
        self.comment_hints: HintValues = planner.hints

    def bind(self, parameters: Any) -> dict[str, Any]:
        """The parameters by name (positional ones as ``__os_p<n>``); never modified."""
        if type(parameters) is dict and not self.positional:  # the common case, first
            return parameters
        if self.positional or isinstance(parameters, list | tuple):
            values = list(parameters or ())
            return {_POSITIONAL.format(i): v for i, v in enumerate(values)}
        if isinstance(parameters, dict):
            return parameters
        return dict(parameters) if parameters else {}

    def hint_sources(self) -> tuple[HintValues, ...]:
        return (self.comment_hints, current_hints())

    def route(self, parameters: Any) -> Execution:  # pragma: no cover - overridden
        raise NotImplementedError


class _Passthrough(ShardedStatement):
    """Runs unchanged on one data source (single tables, no tables, unparsed SQL)."""

    def __init__(self, planner: _Planner, statement: Statement, data_source: str) -> None:
        super().__init__(planner, statement, None, 0)
        self.data_source = data_source

    def route(self, parameters: Any) -> Execution:
        return Execution([Unit(self.data_source, self.statement.sql, parameters)])


class _Broadcast(ShardedStatement):
    """Broadcast tables only: writes on every data source, reads on any one."""

    def route(self, parameters: Any) -> Execution:
        sources = self.rule.data_sources
        if self.statement.is_write:
            return Execution(
                [Unit(ds, self.statement.sql, parameters) for ds in sources], first_rowcount=True
            )
        return Execution([Unit(random.choice(sources), self.statement.sql, parameters)], any_one=True)


class _Routed(ShardedStatement):
    """SELECT / UPDATE / DELETE / DDL over sharded tables (and broadcast / single tables)."""

    def __init__(
        self,
        planner: _Planner,
        statement: Statement,
        tree: exp.Expression,
        positional: int,
        *,
        sharded: list[ShardedTable],
        aliases: Mapping[str, set[str]],
        groups: list[list[Predicate]],
        single: list[str],
        nested_sharded: list[str],
        ddl: bool = False,
        multi_node_problem: str | None = None,
    ) -> None:
        super().__init__(planner, statement, tree, positional)
        self.sharded = sharded
        self.primary = sharded[0]
        self.groups = groups
        self.single = single
        self.nested = nested_sharded
        self.ddl = ddl
        self.multi_node_problem = multi_node_problem
        keys = {t.logic.lower() for t in sharded}
        unaliased = frozenset(k for k in keys if k in aliases.get(k, set()))
        self.renderer = _Renderer(tree, self.family, statement.escaped, unaliased)
        self.bound = all(self.rule.bound(self.primary.logic, t.logic) for t in sharded)
        # Conditions on a table are read from predicates on it, on tables bound to it, and unqualified.
        self.condition_tables: dict[str, frozenset[str | None]] = {}
        for table in sharded:
            names: set[str | None] = {None}
            for other in sharded:
                if self.rule.bound(table.logic, other.logic):
                    names.add(other.logic.lower())
            self.condition_tables[table.logic.lower()] = frozenset(names)
        self.merge_tree: exp.Expression | None = None
        self.merge_spec: MergeSpec | None = None
        self.merge_problem: str | None = None
        self.merge_renderer: _Renderer | None = None
        self.limit_static: int | None = None
        self.limit_dynamic = False
        self.index_names: list[exp.Expression] = []
        # One sharded table, one AND-group, no hints: the point statement's shortcut in route().
        simple = len(sharded) == 1 and len(groups) == 1 and not ddl and not single and not self.primary.hinted
        self._point: ShardedTable | None = self.primary if simple else None
        self._point_key = self.primary.logic.lower()

    # -- routing
    def _nodes(self, table: ShardedTable, params: Mapping[str, Any]) -> list[DataNode]:
        if self.ddl:
            return list(table.nodes)
        key = table.logic.lower()
        db_hint = table_hint = None
        if table.hinted:
            hints = self.hint_sources()
            db_hint = values_for(hints, key, "database")
            table_hint = values_for(hints, key, "table")
        if len(self.groups) == 1:  # one AND-group: the common case
            conditions = bind_group(self.groups[0], params, self.condition_tables[key])
            if conditions is EMPTY:
                return []
            assert isinstance(conditions, dict)
            return table.route(conditions, db_hint, table_hint)
        found: dict[DataNode, None] = {}
        for group in self.groups:
            conditions = bind_group(group, params, self.condition_tables[key])
            if conditions is EMPTY:
                continue
            assert isinstance(conditions, dict)
            for node in table.route(conditions, db_hint, table_hint):
                found[node] = None
        return list(found)

    def _mappings(self, params: Mapping[str, Any]) -> list[tuple[str, dict[str, str]]]:
        primary = self.primary
        nodes = self._nodes(primary, params)
        if self.bound:
            out = []
            for node in nodes:
                mapping = {primary.logic.lower(): node.table}
                index = primary.index[(node.data_source, node.table)]
                for other in self.sharded[1:]:  # the bound table at the same data node index
                    mapping[other.logic.lower()] = other.nodes[index].table
                out.append((node.data_source, mapping))
            return out
        # Tables that are not bound: correct only within one data source (every combination).
        routes = [nodes] + [self._nodes(t, params) for t in self.sharded[1:]]
        sources = {n.data_source for route in routes for n in route}
        if len(sources) > 1:
            names = ", ".join(t.logic for t in self.sharded)
            raise _refuse(
                f"a join of sharded tables that are not binding tables ({names}) across data sources "
                f"{', '.join(sorted(sources))} is not supported",
                table=self.sharded[1].logic,
            )
        if not sources or any(not route for route in routes):
            return []
        ds = next(iter(sources))
        out = []
        for combination in _product([[n.table for n in route] for route in routes]):
            out.append(
                (ds, {t.logic.lower(): actual for t, actual in zip(self.sharded, combination, strict=True)})
            )
        return out

    def _point_route(
        self, table: ShardedTable, params: Mapping[str, Any], parameters: Any
    ) -> Execution | None:
        """What :meth:`route` does for a statement that hits one node, in fewer steps; None when
        it hits none or several (the general path then decides, raising the same errors)."""
        key = self._point_key
        conditions = bind_group(self.groups[0], params, self.condition_tables[key])
        if conditions is EMPTY:
            return None
        assert isinstance(conditions, dict)
        nodes = table.route(conditions)
        if len(nodes) != 1:
            return None
        node = nodes[0]
        driver_params = params if (self.positional or parameters is not None) else parameters
        return Execution([Unit(node.data_source, self.renderer.sql({key: node.table}), driver_params)])

    def route(self, parameters: Any) -> Execution:
        params = self.bind(parameters)
        if self._point is not None and not self.index_names:
            found = self._point_route(self._point, params, parameters)
            if found is not None:
                return found
        mappings = self._mappings(params)
        if self.single and any(ds != self.rule.default_source for ds, _ in mappings):
            raise _refuse(
                f"table {self.single[0]} is not sharded (it lives on {self.rule.default_source}) and "
                f"cannot be combined with {self.primary.logic} rows on other data sources",
                table=self.single[0],
            )
        driver_params = params if (self.positional or parameters is not None) else parameters
        if not mappings:
            if not isinstance(self.tree, exp.Select | exp.Union):
                return Execution([])  # UPDATE/DELETE matching no node: nothing to do
            node = self.primary.nodes[0]
            mapping = {t.logic.lower(): t.nodes[0].table for t in self.sharded}
            mapping[self.primary.logic.lower()] = node.table
            assert self.tree is not None
            sql = self.renderer.sql(
                mapping, key=("empty", tuple(sorted(mapping.items()))), tree=_false_where(self.tree)
            )
            return Execution([Unit(node.data_source, sql, driver_params)])
        if self.ddl or len(mappings) == 1:
            return Execution([Unit(ds, self._sql(mapping), driver_params) for ds, mapping in mappings])
        if self.multi_node_problem:
            raise _refuse(self.multi_node_problem, table=self.primary.logic)
        if self.nested:
            raise _refuse(
                f"a subquery over sharded table {self.nested[0]} in a statement routed to several data nodes "
                "is not supported (route it to one node, or use binding tables with a sharding condition)",
                table=self.nested[0],
            )
        if not isinstance(self.tree, exp.Select):
            return Execution([Unit(ds, self._sql(mapping), driver_params) for ds, mapping in mappings])
        if self.merge_problem:
            raise _refuse(self.merge_problem, table=self.primary.logic)
        assert self.merge_renderer is not None and self.merge_spec is not None
        unit_params: Any = driver_params
        if self.limit_dynamic:
            spec = self.merge_spec
            offset = int(spec.offset(params)) if spec.offset else 0
            count = int(spec.count(params)) if spec.count else 0
            unit_params = {**params, _LIMIT_PARAM: offset + count}
        units = [Unit(ds, self.merge_renderer.sql(mapping), unit_params) for ds, mapping in mappings]
        return Execution(units, merge=self.merge_spec, bound=params)

    def _sql(self, mapping: Mapping[str, str]) -> str:
        if self.index_names:
            return self.renderer.sql(mapping, tree=_rename_indexes(self.tree, self.index_names, mapping))  # type: ignore[arg-type]
        return self.renderer.sql(mapping)


def _rename_indexes(
    tree: exp.Expression, names: list[exp.Expression], mapping: Mapping[str, str]
) -> exp.Expression:
    """CREATE INDEX / named constraints: ``name`` -> ``name_<actual table>`` (unique per schema)."""
    actual = next(iter(mapping.values()))
    copy = tree.copy()
    for node in copy.find_all(exp.Index, exp.Constraint):
        ident = node.this if isinstance(node.this, exp.Identifier) else None
        if ident is not None and any(ident.name == n.name for n in names):
            node.set(
                "this", exp.Identifier(this=f"{ident.name}_{actual}", quoted=bool(ident.args.get("quoted")))
            )
    return copy


def _product(lists: list[list[str]]) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = [()]
    for options in lists:
        out = [(*prefix, option) for prefix in out for option in options]
    return out


class _Insert(ShardedStatement):
    def __init__(
        self,
        planner: _Planner,
        statement: Statement,
        tree: exp.Insert,
        positional: int,
        table: ShardedTable,
        rows: list[dict[str, ValueSource]],
        generate: bool,
    ) -> None:
        super().__init__(planner, statement, tree, positional)
        self.table = table
        self.rows = rows
        self.generate = generate
        self.returning = tree.args.get("returning") is not None
        escaped = statement.escaped or generate  # generated keys are parameters
        self.renderer = _Renderer(tree, self.family, escaped, frozenset({table.logic.lower()}))

    def _subset(self, indexes: tuple[int, ...]) -> exp.Expression:
        assert self.tree is not None
        copy = self.tree.copy()
        values = copy.expression
        values.set("expressions", [values.expressions[i] for i in indexes])
        return copy

    def route(self, parameters: Any) -> Execution:
        params = dict(self.bind(parameters))  # generated keys are added: never the caller's dict
        table = self.table
        keys: list[Any] = []
        if self.generate:
            assert table.key_generator is not None
            keys = [table.key_generator.generate() for _ in self.rows]
            params.update({_KEY_PARAM.format(i): key for i, key in enumerate(keys)})
        hints = self.hint_sources()
        key = table.logic.lower()
        db_hint = values_for(hints, key, "database")
        table_hint = values_for(hints, key, "table")
        by_node: dict[DataNode, list[int]] = {}
        for index, row in enumerate(self.rows):
            conditions = {column: ColumnCondition((source(params),)) for column, source in row.items()}
            nodes = table.route(conditions, db_hint, table_hint)
            if len(nodes) != 1:
                what = (
                    "no data node" if not nodes else f"{len(nodes)} data nodes ({', '.join(map(str, nodes))})"
                )
                raise _refuse(
                    f"row {index + 1} of the INSERT into {table.logic} routes to {what}; an inserted row "
                    "must route to exactly one (give the sharding columns or hint values)",
                    table=table.logic,
                )
            by_node.setdefault(nodes[0], []).append(index)
        units: list[Unit] = []
        everything = tuple(range(len(self.rows)))
        driver_params = params if (self.positional or self.generate or parameters is not None) else parameters
        for node, indexes in by_node.items():
            subset = tuple(indexes)
            mapping = {key: node.table}
            if subset == everything:
                sql = self.renderer.sql(mapping)
            else:
                sql = self.renderer.sql(mapping, key=(node.table, subset), tree=self._subset(subset))
            units.append(Unit(node.data_source, sql, driver_params, subset))
        return Execution(
            units, generated=keys, returning_rows=len(self.rows) if self.returning and len(units) > 1 else 0
        )


# --- planning ---------------------------------------------------------------------------------


@dataclass
class _Planner:
    rule: ShardingRule
    family: Family
    hints: HintValues


def _named(statement: Statement) -> tuple[exp.Expression, int]:
    assert statement.tree is not None
    tree = statement.tree.copy()
    return tree, _name_positional(tree)


_WORD = re.compile(r"[A-Za-z_][\w$]*")


def _mentions(sql: str, rule: ShardingRule) -> str | None:
    for word in _WORD.findall(sql):
        lowered = word.lower()
        if lowered in rule.tables:
            return rule.tables[lowered].logic
    return None


def _ddl_tables(tree: exp.Expression) -> list[exp.Table]:
    if isinstance(tree, exp.Create):
        target = tree.this
        if isinstance(target, exp.Schema):
            target = target.this
        if isinstance(target, exp.Index):
            table = target.args.get("table")
            return [table] if isinstance(table, exp.Table) else []
        return [target] if isinstance(target, exp.Table) else []
    if isinstance(tree, exp.Drop):
        tables = tree.args.get("tables") or []
        if tables:
            return [t for t in tables if isinstance(t, exp.Table)]
        target = tree.this
        if isinstance(target, exp.Table):
            return [target]
        cluster = tree.args.get("cluster")
        return [cluster] if isinstance(cluster, exp.Table) else []
    if isinstance(tree, exp.Alter):
        return [tree.this] if isinstance(tree.this, exp.Table) else []
    if isinstance(tree, exp.TruncateTable):
        return [t for t in tree.expressions if isinstance(t, exp.Table)]
    return []


def plan_statement(rule: ShardingRule, family: Family, statement: Statement) -> ShardedStatement:
    """The sharding plan of ``statement``; raises UnsupportedStatementError for refusals."""
    planner = _Planner(rule, family, comment_hints(ss_hints(statement)))
    tree = statement.tree
    if tree is None and statement.sql.lstrip().lower().startswith("truncate"):
        parsed = parse_sql(statement.sql, family)
        if parsed is not None:
            tree, positional, escaped = parsed
            statement = Statement(
                statement.sql,
                "ddl",
                True,
                tree=tree,
                comments=statement.comments,
                positional=positional,
                escaped=escaped,
            )
    if tree is None:
        mentioned = _mentions(statement.sql, rule)
        if mentioned is not None:
            if statement.kind == "select" and not statement.is_write:  # SHOW / DESCRIBE / EXPLAIN
                return _Describe(planner, statement, mentioned)
            reason = statement.parse_error or f"{statement.sql.split(None, 1)[0].upper()} statements"
            raise _refuse(f"cannot shard this statement on {mentioned} ({reason})", table=mentioned)
        return _Passthrough(planner, statement, rule.default_source)
    names = [t.name.lower() for t in tree.find_all(exp.Table) if t.name]
    sharded_names = list(dict.fromkeys(n for n in names if n in rule.tables))
    broadcast = [n for n in names if n in rule.broadcast]
    if not sharded_names:
        if broadcast and all(n in rule.broadcast for n in names):
            return _Broadcast(planner, statement, None, 0)
        if broadcast and statement.is_write:
            raise _refuse(
                f"a write to broadcast table {broadcast[0]} that also reads a single table would run on one "
                "data source only",
                table=broadcast[0],
            )
        return _Passthrough(planner, statement, rule.default_source)
    if isinstance(tree, exp.Insert):
        return _plan_insert(planner, statement)
    if statement.kind == "ddl":
        return _plan_ddl(planner, statement)
    if isinstance(tree, exp.Select | exp.Update | exp.Delete | exp.Union):
        return _plan_query(planner, statement)
    logic = rule.tables[sharded_names[0]].logic
    raise _refuse(
        f"cannot shard this kind of statement ({type(tree).__name__}) on {logic}",
        table=logic,
    )


class _Describe(ShardedStatement):
    """SHOW / DESCRIBE / EXPLAIN naming a logic table: asked of its first data node."""

    def __init__(self, planner: _Planner, statement: Statement, logic: str) -> None:
        super().__init__(planner, statement, None, 0)
        table = planner.rule.tables[logic.lower()]
        node = table.nodes[0]
        self.data_source = node.data_source
        pattern = re.compile(rf"(?<![\w$]){re.escape(logic)}(?![\w$])", re.I)
        self.sql = pattern.sub(node.table, statement.sql)

    def route(self, parameters: Any) -> Execution:
        return Execution([Unit(self.data_source, self.sql, parameters)])


def _plan_insert(planner: _Planner, statement: Statement) -> ShardedStatement:  # noqa: C901 (complexity debt, see pyproject [tool.ruff.lint.mccabe])
    rule = planner.rule
    tree, positional = _named(statement)
    assert isinstance(tree, exp.Insert)
    target = tree.this
    table_node = target.this if isinstance(target, exp.Schema) else target
    logic = table_node.name.lower() if isinstance(table_node, exp.Table) else ""
    table = rule.tables.get(logic)
    if table is None:  # inserting into a broadcast or single table FROM a sharded one
        reader = next(t.name for t in tree.find_all(exp.Table) if t.name.lower() in rule.tables)
        raise _refuse(
            f"INSERT … SELECT from sharded table {reader} into {table_node.name} is not supported",
            table=reader,
        )
    if not isinstance(target, exp.Schema) or not target.expressions:
        raise _refuse(f"INSERT into sharded table {table.logic} needs a column list", table=table.logic)
    values = tree.expression
    if not isinstance(values, exp.Values):
        hint = ""
        if any(isinstance(node, exp.Values) for node in values.find_all(exp.Values)):
            hint = " (SQLAlchemy's insertmanyvalues form: create the engine with use_insertmanyvalues=False)"
        raise _refuse(
            f"INSERT … SELECT into sharded table {table.logic} is not supported{hint}", table=table.logic
        )
    columns = [c.name.lower() for c in target.expressions]
    key_column = table.key_column.lower() if table.key_column else None
    generate = key_column is not None and key_column not in columns and table.key_generator is not None
    if generate:
        assert table.key_column is not None
        target.set("expressions", [*target.expressions, exp.to_identifier(table.key_column)])
        for i, row in enumerate(values.expressions):
            if isinstance(row, exp.Tuple):
                row.set("expressions", [*row.expressions, exp.Placeholder(this=_KEY_PARAM.format(i))])
        columns.append(table.key_column.lower())
    sharding = table.sharding_columns
    for column in sharding:
        if column not in columns and table.database.kind != "hint" and table.table.kind != "hint":
            raise _refuse(
                f"INSERT into sharded table {table.logic} must give the sharding column {column}",
                table=table.logic,
                column=column,
            )
    rows: list[dict[str, ValueSource]] = []
    for number, row in enumerate(values.expressions):
        if not isinstance(row, exp.Tuple) or len(row.expressions) != len(columns):
            raise _refuse(
                f"INSERT into {table.logic}: row {number + 1} does not give one value per column",
                table=table.logic,
            )
        sources: dict[str, ValueSource] = {}
        for column, item in zip(columns, row.expressions, strict=True):
            if column not in sharding:
                continue
            source = value_source(item)
            if source is None:
                raise _refuse(
                    f"INSERT into {table.logic}: the sharding value of {column} must be a literal or a "
                    f"parameter, not {item.sql()!r}",
                    table=table.logic,
                    column=column,
                )
            sources[column] = source
        rows.append(sources)
    conflict = tree.args.get("conflict")
    if conflict is not None:
        for node in conflict.find_all(exp.Column):
            if node.name.lower() in sharding and isinstance(node.parent, exp.EQ) and node.parent.this is node:
                raise _refuse(
                    f"Can not update sharding value for table `{table.logic}` "
                    "(ON DUPLICATE KEY / ON CONFLICT)",
                    table=table.logic,
                    column=node.name,
                )
    for other in tree.find_all(exp.Table):
        if other.name.lower() in rule.tables and other is not table_node:
            raise _refuse(
                f"INSERT into {table.logic} reading sharded table {other.name} is not supported",
                table=other.name,
            )
    return _Insert(planner, statement, tree, positional, table, rows, generate)


def _plan_ddl(planner: _Planner, statement: Statement) -> ShardedStatement:
    rule = planner.rule
    tree, positional = _named(statement)
    tables = _ddl_tables(tree)
    sharded = [rule.tables[t.name.lower()] for t in tables if t.name.lower() in rule.tables]
    if len(tables) != 1 or len(sharded) != 1:
        listed = ", ".join(t.name for t in tables) or "?"
        raise _refuse(
            f"DDL over several tables including sharded ones ({listed}): run it per table",
            table=sharded[0].logic if sharded else None,
        )
    table = sharded[0]
    plan = _Routed(
        planner,
        statement,
        tree,
        positional,
        sharded=[table],
        aliases={table.logic.lower(): {table.logic.lower()}},
        groups=[[]],
        single=[],
        nested_sharded=[],
        ddl=True,
    )
    names: list[exp.Expression] = []
    for node in tree.find_all(exp.Index, exp.Constraint):
        if isinstance(node.this, exp.Identifier):
            names.append(node.this)
    plan.index_names = names
    return plan


def _plan_query(planner: _Planner, statement: Statement) -> ShardedStatement:  # noqa: C901 (complexity debt, see pyproject [tool.ruff.lint.mccabe])
    rule = planner.rule
    tree, positional = _named(statement)
    if isinstance(tree, exp.Select):
        top = _from_tables(tree)
    elif isinstance(tree, exp.Update | exp.Delete):
        top = [tree.this] if isinstance(tree.this, exp.Table) else []
        top += _from_tables(tree)
        extra = tree.args.get("tables") or []
        top += [t for t in extra if isinstance(t, exp.Table)]
    else:
        top = []
    top_names = [t.name.lower() for t in top]
    sharded_top = list(dict.fromkeys(n for n in top_names if n in rule.tables))
    all_tables = list(tree.find_all(exp.Table))
    nested = [t.name for t in all_tables if t.name.lower() in rule.tables and t not in top]
    if not sharded_top:  # only inside subqueries, derived tables or set operations
        sharded_top = list(dict.fromkeys(n.lower() for n in nested))
        nested = []
        set_operation = True
    else:
        set_operation = False
    sharded = [rule.tables[n] for n in sharded_top]
    aliases: dict[str, set[str]] = {}
    for t in all_tables:
        aliases.setdefault(t.name.lower(), set()).add((t.alias or t.name).lower())
    single = list(
        dict.fromkeys(
            t.name
            for t in all_tables
            if t.name.lower() not in rule.tables and t.name.lower() not in rule.broadcast
        )
    )
    cte_names = {cte.alias.lower() for cte in tree.find_all(exp.CTE) if cte.alias}
    single = [s for s in single if s.lower() not in cte_names]
    where = tree.args.get("where")
    groups = extract(where, _scope(top)) if not set_operation else [[]]
    problem: str | None = None
    if set_operation:
        problem = (
            f"UNION / INTERSECT / EXCEPT or derived tables over sharded table {sharded[0].logic} "
            "across data nodes are not supported"
        )
    if isinstance(tree, exp.Update | exp.Delete):
        if len(sharded_top) > 1 or (isinstance(tree, exp.Delete) and tree.args.get("tables")):
            raise _refuse(
                f"UPDATE/DELETE over several tables including sharded table {sharded[0].logic} "
                "is not supported (20045)",
                table=sharded[0].logic,
            )
        if isinstance(tree, exp.Update):
            for item in tree.expressions:
                column = item.this if isinstance(item, exp.EQ) else None
                if isinstance(column, exp.Column) and column.name.lower() in sharded[0].sharding_columns:
                    raise _refuse(
                        f"Can not update sharding value for table `{sharded[0].logic}` "
                        f"(column {column.name})",
                        table=sharded[0].logic,
                        column=column.name,
                    )
        if tree.args.get("limit") is not None or tree.args.get("order") is not None:
            problem = (
                f"UPDATE/DELETE … ORDER BY / LIMIT over sharded table {sharded[0].logic} across data "
                "nodes is not supported (20046)"
            )
    plan = _Routed(
        planner,
        statement,
        tree,
        positional,
        sharded=sharded,
        aliases=aliases,
        groups=groups,
        single=single,
        nested_sharded=nested,
        multi_node_problem=problem,
    )
    if isinstance(tree, exp.Select) and not set_operation:
        try:
            _prepare_merge(plan, tree)
        except UnsupportedStatementError as e:
            plan.merge_problem = str(e).removesuffix("; the statement was not sent")
    return plan


# --- cross-node SELECT: derived columns, LIMIT rewrite, merge spec -----------------------------


def _inner(node: exp.Expression) -> exp.Expression:
    return node.this if isinstance(node, exp.Alias) else node


def _output_name(node: exp.Expression) -> str | None:
    if isinstance(node, exp.Alias):
        return node.alias.lower()
    if isinstance(node, exp.Column) and not isinstance(node.this, exp.Star):
        return node.name.lower()
    return None


def _is_star(node: exp.Expression) -> bool:
    inner = _inner(node)
    return isinstance(inner, exp.Star) or (isinstance(inner, exp.Column) and isinstance(inner.this, exp.Star))


def _sql_of(node: exp.Expression) -> str:
    return node.sql().lower()


_Ref = int | tuple[str, int]  # a projection position, or ("d", k): the k-th derived column


@dataclass(frozen=True, slots=True)
class _Pending:
    """An aggregate whose derived-column positions are resolved once all are known."""

    index: _Ref
    function: str
    count_index: _Ref | None = None
    sum_index: _Ref | None = None


def _prepare_merge(plan: _Routed, original: exp.Select) -> None:  # noqa: C901 (complexity debt, see pyproject [tool.ruff.lint.mccabe])
    tree = original.copy()
    projections = list(tree.expressions)
    star = any(_is_star(p) for p in projections)
    derived: list[exp.Expression] = []
    aggregates: list[_Pending] = []

    def refuse(message: str) -> UnsupportedStatementError:
        return _refuse(message, table=plan.primary.logic)

    for node in tree.find_all(exp.Window):
        raise refuse(f"window function {_sql_of(node)} across data nodes is not supported")
    if tree.args.get("having") is not None:
        raise refuse("HAVING across data nodes is not supported (each node would filter partial groups)")
    if tree.args.get("distinct") is not None and tree.args["distinct"].args.get("on") is not None:
        raise refuse("DISTINCT ON across data nodes is not supported")

    def add_derived(expression: exp.Expression, alias: str) -> int:
        derived.append(cast(exp.Expression, exp.alias_(expression.copy(), alias)))
        return len(derived) - 1  # resolved to a negative index once the count is known

    def register_aggregate(inner: exp.Expression, index: _Ref) -> None:
        if isinstance(inner, exp.Count) and isinstance(inner.this, exp.Distinct):
            raise refuse(
                f"{inner.sql()} across data nodes is not supported (COUNT(DISTINCT) cannot be added up)"
            )
        if isinstance(inner, exp.Avg):
            argument = inner.this
            if isinstance(argument, exp.Distinct):
                raise refuse(f"{inner.sql()} across data nodes is not supported")
            n = sum(1 for a in aggregates if a.function == "AVG")
            count_ref = add_derived(exp.Count(this=argument.copy()), f"AVG_DERIVED_COUNT_{n}")
            sum_ref = add_derived(exp.Sum(this=argument.copy()), f"AVG_DERIVED_SUM_{n}")
            aggregates.append(_Pending(index, "AVG", ("d", count_ref), ("d", sum_ref)))
            return
        if isinstance(inner, exp.Sum) and isinstance(inner.this, exp.Distinct):
            raise refuse(f"{inner.sql()} across data nodes is not supported")
        aggregates.append(_Pending(index, type(inner).__name__.upper()))

    for position, projection in enumerate(projections):
        inner = _inner(projection)
        if isinstance(inner, _AGGREGATES):
            if star:
                raise refuse("aggregates beside * across data nodes are not supported")
            register_aggregate(inner, position)
        elif any(True for _ in inner.find_all(exp.AggFunc)):
            raise refuse(f"the expression {inner.sql()} over an aggregate across data nodes is not supported")
        elif any(True for _ in inner.find_all(exp.Subquery)):
            pass  # scalar subqueries over non-sharded tables run on every node

    def locate(item: exp.Expression, kind: str, n: int) -> _Ref:  # noqa: C901 (complexity debt, see pyproject [tool.ruff.lint.mccabe])
        """The row position of an ORDER BY / GROUP BY item, adding a derived column if needed."""
        if isinstance(item, exp.Literal) and not item.is_string:
            position = int(str(item.this)) - 1
            if star or not 0 <= position < len(projections):
                raise refuse(f"{kind} {item.sql()} by position across data nodes needs explicit columns")
            return position
        if not star:
            if isinstance(item, exp.Column) and not item.table:
                for position, projection in enumerate(projections):
                    if _output_name(projection) == item.name.lower():
                        return position
            wanted = _sql_of(item)
            for position, projection in enumerate(projections):
                if _sql_of(_inner(projection)) == wanted:
                    return position
            if isinstance(item, exp.Column):
                matches = [
                    p
                    for p, projection in enumerate(projections)
                    if isinstance(_inner(projection), exp.Column)
                    and _inner(projection).name.lower() == item.name.lower()
                ]
                if len(matches) == 1:
                    return matches[0]
        ref = ("d", add_derived(item, f"{kind.replace(' ', '_').upper()}_DERIVED_{n}"))
        if isinstance(item, _AGGREGATES):
            register_aggregate(item, ref)
        elif any(True for _ in item.find_all(exp.AggFunc)):
            raise refuse(f"{kind} {item.sql()} over an aggregate across data nodes is not supported")
        return ref

    group_node = tree.args.get("group")
    group_items = list(group_node.expressions) if group_node is not None else []
    group_refs = [locate(item, "group by", n) for n, item in enumerate(group_items)]
    order_node = tree.args.get("order")
    ordered = list(order_node.expressions) if order_node is not None else []
    order_refs: list[tuple[_Ref, bool, bool]] = []
    for n, item in enumerate(ordered):
        target = item.this if isinstance(item, exp.Ordered) else item
        desc = bool(item.args.get("desc")) if isinstance(item, exp.Ordered) else False
        nulls_first = bool(item.args.get("nulls_first")) if isinstance(item, exp.Ordered) else not desc
        order_refs.append((locate(target, "order by", n), desc, nulls_first))
    grouped = bool(group_items) or bool(aggregates)
    stream_group = False
    if group_items and not ordered:
        # Sort every node by the group keys so the groups stream past in the same order.
        family_nulls_first = plan.family == "mysql"
        tree.set(
            "order",
            exp.Order(
                expressions=[exp.Ordered(this=g.copy(), nulls_first=family_nulls_first) for g in group_items]
            ),
        )
        order_refs = [(ref, False, family_nulls_first) for ref in group_refs]
        stream_group = True
    elif group_items:
        stream_group = [r for r, _, _ in order_refs] == group_refs
    distinct = tree.args.get("distinct") is not None
    if distinct and aggregates and not group_items:
        distinct = False  # one row anyway
    n_derived = len(derived)
    tree.set("expressions", [*projections, *derived])

    def resolve(ref: _Ref) -> int:
        if isinstance(ref, tuple):
            return ref[1] - n_derived  # derived k of n -> -(n - k)
        return ref

    spec = MergeSpec(
        derived=n_derived,
        order=tuple(OrderItem(resolve(r), desc, nf) for r, desc, nf in order_refs),
        group=tuple(resolve(r) for r in group_refs) if grouped else None,
        aggregates=tuple(
            Aggregate(
                resolve(a.index),
                a.function,
                resolve(a.count_index) if a.count_index is not None else None,
                resolve(a.sum_index) if a.sum_index is not None else None,
            )
            for a in aggregates
        ),
        stream_group=stream_group,
        distinct=distinct,
    )
    # LIMIT n OFFSET o -> LIMIT o + n on every node (when per-node limits keep the merge exact).
    limit = tree.args.get("limit")
    offset = tree.args.get("offset")
    if isinstance(limit, exp.Fetch) or tree.args.get("fetch") is not None:
        raise refuse("FETCH FIRST across data nodes is not supported (use LIMIT)")
    count_source = value_source(limit.expression) if limit is not None else None
    offset_source = value_source(offset.expression) if offset is not None else None
    if limit is not None and count_source is None:
        raise refuse(f"LIMIT {limit.expression.sql()} across data nodes needs a number or a parameter")
    if offset is not None and offset_source is None:
        raise refuse(f"OFFSET {offset.expression.sql()} across data nodes needs a number or a parameter")
    spec.count = count_source
    spec.offset = offset_source
    per_node_limit = not grouped or stream_group or not group_items
    tree.set("offset", None)
    if limit is None or not per_node_limit:
        tree.set("limit", None)
    else:
        static = _static(count_source), _static(offset_source) if offset_source else 0
        if static[0] is not None and static[1] is not None:
            tree.set("limit", exp.Limit(expression=exp.Literal.number(int(static[0]) + int(static[1]))))
        else:
            tree.set("limit", exp.Limit(expression=exp.Placeholder(this=_LIMIT_PARAM)))
            plan.limit_dynamic = True
    plan.merge_tree = tree
    plan.merge_spec = spec
    plan.merge_renderer = _Renderer(
        tree, plan.family, plan.statement.escaped or plan.limit_dynamic, plan.renderer.unaliased
    )


def _static(source: Callable[[Mapping[str, Any]], Any] | None) -> Any:
    if source is None:
        return None
    try:
        return source({})
    except KeyError:
        return None
