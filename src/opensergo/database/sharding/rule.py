"""A Sharding object compiled: logic tables, their data nodes and strategies, binding and broadcast
tables (ShardingSphere 5.1/5.2 semantics).

* ``tables.<t>.actualDataNodes`` is an inline expression (``ds_${0..1}.t_order_${0..1}``); empty
  means the logic table itself in every data source of the rule.
* ``autoTables.<t>`` gets ``sharding-count`` tables ``<t>_0 … <t>_(n-1)`` spread round-robin over
  ``actualDataSources``; its ``shardingStrategy`` (an auto-table algorithm) picks the table, the
  table picks the data source.
* A table without a database/table strategy uses ``defaultDatabaseStrategy`` /
  ``defaultTableStrategy``; a standard strategy without a column uses ``defaultShardingColumn``;
  a table without ``keyGenerateStrategy`` uses ``defaultKeyGenerateStrategy``.
* Database and table strategies route independently: the database strategy picks data sources,
  then the table strategy picks tables among those of each picked data source. A strategy whose
  column has no condition picks all of its targets.

This module needs neither SQLAlchemy nor sqlglot (the CLI uses it to show data nodes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from opensergo.database.errors import ConfigurationError
from opensergo.database.sharding.algorithms import (
    AUTO_TABLE_TYPES,
    DataNodeInfo,
    RoutingError,
    ValueRange,
    build_algorithm,
)
from opensergo.database.sharding.inline import ExpressionError, expand
from opensergo.database.sharding.keygen import KeyGenerator, build_key_generator
from opensergo.spec import database as spec

__all__ = ["ColumnCondition", "DataNode", "ShardedTable", "ShardingRule", "Strategy"]


@dataclass(frozen=True, slots=True)
class DataNode:
    data_source: str
    table: str

    def __str__(self) -> str:
        return f"{self.data_source}.{self.table}"


@dataclass(frozen=True, slots=True)
class ColumnCondition:
    """What a statement says about one sharding column: ``=``/``IN`` values and/or a range."""

    values: tuple[Any, ...] | None = None
    range: ValueRange | None = None


Conditions = Mapping[str, ColumnCondition]  # lower-cased column -> condition


@dataclass(frozen=True, slots=True)
class Strategy:
    """A compiled database or table strategy."""

    kind: str  # none | standard | complex | hint
    columns: tuple[str, ...] = ()  # as configured (the algorithm binds these names)
    algorithm: Any = None
    algorithm_name: str | None = None

    @property
    def lower_columns(self) -> tuple[str, ...]:
        return tuple(c.lower() for c in self.columns)

    def targets(  # noqa: C901 (complexity debt, see pyproject [tool.ruff.lint.mccabe])
        self,
        available: Sequence[str],
        conditions: Conditions,
        hint_values: Sequence[Any] | None,
        info: DataNodeInfo,
    ) -> Sequence[str]:
        if self.kind == "none" or not available:
            return available
        if self.kind == "hint":
            return self._checked(self.algorithm.shard(available, list(hint_values or ())), available)
        if self.kind == "standard":
            column = self.columns[0]
            condition = conditions.get(column.lower())
            if condition is None:
                return list(available)
            if condition.values is not None:
                found: dict[str, None] = {}
                for value in condition.values:
                    target = self.algorithm.precise(available, column, value, info)
                    if target is not None:
                        found[target] = None
                return self._checked(list(found), available)
            assert condition.range is not None
            return self._checked(self.algorithm.range(available, column, condition.range, info), available)
        values: dict[str, Sequence[Any]] = {}
        ranges: dict[str, ValueRange] = {}
        for column in self.columns:
            condition = conditions.get(column.lower())
            if condition is None:
                continue
            if condition.values is not None:
                values[column] = condition.values
            elif condition.range is not None:
                ranges[column] = condition.range
        if not values and not ranges:
            return list(available)
        return self._checked(self.algorithm.shard(available, values, ranges), available)

    def _checked(self, targets: list[str], available: Sequence[str]) -> list[str]:
        for target in targets:
            if target not in available:
                raise RoutingError(
                    f"Routed target `{target}` does not exist, available targets are "
                    f"`[{', '.join(available)}]` (algorithm {self.algorithm_name})"
                )
        return targets


_NONE = Strategy("none")


@dataclass(slots=True)
class ShardedTable:
    """One logic table: its data nodes, strategies and key generation."""

    logic: str
    nodes: tuple[DataNode, ...]
    database: Strategy
    table: Strategy
    key_column: str | None = None
    key_generator: KeyGenerator | None = None
    key_generator_name: str | None = None
    auto: bool = False
    data_sources: tuple[str, ...] = ()
    tables_in: dict[str, tuple[str, ...]] = field(default_factory=dict)
    index: dict[tuple[str, str], int] = field(default_factory=dict)
    database_info: DataNodeInfo = field(default_factory=lambda: DataNodeInfo("", 0))
    table_info: DataNodeInfo = field(default_factory=lambda: DataNodeInfo("", 0))

    def __post_init__(self) -> None:
        grouped: dict[str, list[str]] = {}
        for i, node in enumerate(self.nodes):
            grouped.setdefault(node.data_source, []).append(node.table)
            self.index[(node.data_source, node.table)] = i
        self.tables_in = {ds: tuple(tables) for ds, tables in grouped.items()}
        self.data_sources = tuple(grouped)
        self.database_info = DataNodeInfo.of(self.data_sources)
        self.table_info = DataNodeInfo.of([n.table for n in self.nodes], self.logic)

    @property
    def hinted(self) -> bool:
        """A strategy of this table reads hint values."""
        return self.database.kind == "hint" or self.table.kind == "hint"

    @property
    def sharding_columns(self) -> frozenset[str]:
        return frozenset((*self.database.lower_columns, *self.table.lower_columns))

    def route(
        self,
        conditions: Conditions,
        database_hint: Sequence[Any] | None = None,
        table_hint: Sequence[Any] | None = None,
    ) -> list[DataNode]:
        """The data nodes a statement with ``conditions`` (and hint values) touches."""
        out: list[DataNode] = []
        nodes, index = self.nodes, self.index
        for ds in self.database.targets(self.data_sources, conditions, database_hint, self.database_info):
            tables = self.tables_in[ds]
            for table in self.table.targets(tables, conditions, table_hint, self.table_info):
                out.append(nodes[index[(ds, table)]])  # targets are checked to be among ``tables``
        return out


def _strategy(
    value: spec.ShardingStrategy | None,
    algorithms: Mapping[str, spec.Algorithm],
    default_column: str | None,
    where: str,
    cache: dict[tuple[str, str], Any],
) -> Strategy:
    if value is None or value.none is not None:
        return _NONE
    if value.standard is not None:
        kind, name = "standard", value.standard.shardingAlgorithmName
        column = value.standard.shardingColumn or default_column or ""
        if not column:
            raise ConfigurationError(
                f"{where}: the standard strategy has no shardingColumn (and no defaultShardingColumn)"
            )
        columns: tuple[str, ...] = (column,)
    elif value.complex is not None:
        kind, name = "complex", value.complex.shardingAlgorithmName
        columns = tuple(c.strip() for c in value.complex.shardingColumns.split(",") if c.strip())
    elif value.hint is not None:
        kind, name = "hint", value.hint.shardingAlgorithmName
        columns = ()
    else:
        return _NONE
    if not name:
        raise ConfigurationError(f"{where}: the {kind} strategy names no sharding algorithm")
    config = algorithms.get(name)
    if config is None:
        raise ConfigurationError(f"{where}: unknown sharding algorithm {name!r}")
    key = (name, kind)
    algorithm = cache.get(key)
    if algorithm is None:
        algorithm = build_algorithm(name, config.type, config.props, kind)
        cache[key] = algorithm
    variables = getattr(algorithm, "variables", None)
    if kind == "standard" and variables and set(variables) - {columns[0]}:
        unknown = ", ".join(sorted(set(variables) - {columns[0]}))
        raise ConfigurationError(
            f"{where}: algorithm {name!r} reads {unknown}, but the strategy's sharding column "
            f"is {columns[0]!r}"
        )
    return Strategy(kind, columns, algorithm, name)


def _parse_nodes(text: str | None, where: str) -> list[DataNode]:
    try:
        names = expand(text)
    except ExpressionError as e:
        raise ConfigurationError(f"{where}: {e}") from None
    nodes: list[DataNode] = []
    for name in names:
        ds, sep, table = name.partition(".")
        if not sep or not ds or not table or "." in table:
            raise ConfigurationError(f"{where}: data node {name!r} is not <data source>.<table>")
        nodes.append(DataNode(ds, table))
    return nodes


class ShardingRule:
    """A compiled Sharding object."""

    def __init__(self, obj: spec.Sharding) -> None:  # noqa: C901 (complexity debt, see pyproject [tool.ruff.lint.mccabe])
        self.name = obj.name
        s = obj.spec
        self.spec = s
        cache: dict[tuple[str, str], Any] = {}
        generators: dict[str, KeyGenerator] = {}

        def generator(
            strategy: spec.KeyGenerateStrategy | None,
        ) -> tuple[str | None, KeyGenerator | None, str | None]:
            chosen = strategy or s.defaultKeyGenerateStrategy
            if chosen is None:
                return None, None, None
            config = s.keyGenerators.get(chosen.keyGeneratorName)
            if config is None:
                raise ConfigurationError(
                    f"Sharding {obj.name!r}: unknown key generator {chosen.keyGeneratorName!r}"
                )
            gen = generators.get(chosen.keyGeneratorName)
            if gen is None:
                gen = build_key_generator(chosen.keyGeneratorName, config.type, config.props)
                generators[chosen.keyGeneratorName] = gen
            return chosen.column, gen, chosen.keyGeneratorName

        explicit: dict[str, list[DataNode]] = {}
        for logic, table in s.tables.items():
            explicit[logic] = _parse_nodes(
                table.actualDataNodes, f"Sharding {obj.name!r} tables.{logic}.actualDataNodes"
            )
        auto_sources: dict[str, list[str]] = {}
        for logic, auto in s.autoTables.items():
            where = f"Sharding {obj.name!r} autoTables.{logic}"
            try:
                if auto.actualDataSources:
                    sources = expand(auto.actualDataSources)
                else:  # the upstream sample writes data nodes here; their data sources are meant
                    sources = list(dict.fromkeys(n.partition(".")[0] for n in expand(auto.actualDataNodes)))
            except ExpressionError as e:
                raise ConfigurationError(f"{where}: {e}") from None
            auto_sources[logic] = sources
        everywhere = list(
            dict.fromkeys(
                [n.data_source for nodes in explicit.values() for n in nodes]
                + [ds for sources in auto_sources.values() for ds in sources]
            )
        )
        self.tables: dict[str, ShardedTable] = {}
        for logic, table in s.tables.items():
            where = f"Sharding {obj.name!r} tables.{logic}"
            nodes = explicit[logic] or [DataNode(ds, logic) for ds in everywhere]
            if not nodes:
                raise ConfigurationError(f"{where}: no actualDataNodes and no data source in the rule")
            column, gen, gen_name = generator(table.keyGenerateStrategy)
            self.tables[logic.lower()] = ShardedTable(
                logic,
                tuple(nodes),
                _strategy(
                    table.databaseStrategy or s.defaultDatabaseStrategy,
                    s.shardingAlgorithms,
                    s.defaultShardingColumn,
                    f"{where}.databaseStrategy",
                    cache,
                ),
                _strategy(
                    table.tableStrategy or s.defaultTableStrategy,
                    s.shardingAlgorithms,
                    s.defaultShardingColumn,
                    f"{where}.tableStrategy",
                    cache,
                ),
                column,
                gen,
                gen_name,
            )
        for logic, auto in s.autoTables.items():
            where = f"Sharding {obj.name!r} autoTables.{logic}"
            strategy = _strategy(
                auto.shardingStrategy,
                s.shardingAlgorithms,
                s.defaultShardingColumn,
                f"{where}.shardingStrategy",
                cache,
            )
            if (
                strategy.kind != "standard"
                or s.shardingAlgorithms[strategy.algorithm_name or ""].type.upper() not in AUTO_TABLE_TYPES
            ):
                raise ConfigurationError(
                    f"{where}: shardingStrategy needs a standard strategy with an auto-table algorithm "
                    f"({', '.join(sorted(AUTO_TABLE_TYPES))})"
                )
            sources = auto_sources[logic] or everywhere
            if not sources:
                raise ConfigurationError(f"{where}: no actualDataSources")
            amount = strategy.algorithm.auto_tables_amount
            nodes = [DataNode(sources[i % len(sources)], f"{logic}_{i}") for i in range(amount)]
            column, gen, gen_name = generator(auto.keyGenerateStrategy)
            self.tables[logic.lower()] = ShardedTable(
                logic, tuple(nodes), _NONE, strategy, column, gen, gen_name, auto=True
            )
        self.broadcast = frozenset(t.strip().lower() for t in s.broadcastTables if t.strip())
        both = self.broadcast & set(self.tables)
        if both:
            raise ConfigurationError(
                f"Sharding {obj.name!r}: {', '.join(sorted(both))} both sharded and broadcast"
            )
        self.binding: dict[str, frozenset[str]] = {}
        for index, group in enumerate(s.bindingTables):
            members = [t.strip().lower() for t in group.split(",") if t.strip()]
            for member in members:
                if member not in self.tables:
                    raise ConfigurationError(
                        f"Sharding {obj.name!r} bindingTables[{index}]: {member!r} is not a sharded table"
                    )
            self._check_binding(members, index)
            group_set = frozenset(members)
            for member in members:
                self.binding[member] = self.binding.get(member, frozenset()) | group_set
        self.data_sources: tuple[str, ...] = tuple(everywhere) or tuple(
            dict.fromkeys(n.data_source for t in self.tables.values() for n in t.nodes)
        )
        if not self.data_sources:
            raise ConfigurationError(
                f"Sharding {obj.name!r}: no data source (give tables or autoTables data nodes)"
            )

    def _check_binding(self, members: list[str], index: int) -> None:
        first = self.tables[members[0]]
        layout = {ds: len(tables) for ds, tables in first.tables_in.items()}
        for member in members[1:]:
            other = self.tables[member]
            if {ds: len(t) for ds, t in other.tables_in.items()} != layout:
                raise ConfigurationError(
                    f"Sharding {self.name!r} bindingTables[{index}]: {first.logic} and {other.logic} must "
                    "have the same data sources and the same number of tables in each (error 20005)"
                )

    @property
    def default_source(self) -> str:
        """Where statements on tables that are neither sharded nor broadcast go."""
        return self.data_sources[0]

    def table(self, name: str) -> ShardedTable | None:
        return self.tables.get(name.lower())

    def bound(self, left: str, right: str) -> bool:
        """True when ``left`` and ``right`` are in one binding group (or are the same table)."""
        a, b = left.lower(), right.lower()
        return a == b or b in self.binding.get(a, frozenset())

    def describe(self) -> dict[str, Any]:
        """Plain data: every logic table with its data nodes and strategies (``opensergo describe``)."""

        def strategy(value: Strategy) -> str:
            if value.kind == "none":
                return "none"
            return (
                f"{value.kind}({', '.join(value.columns)}) -> {value.algorithm_name} ({value.algorithm.type})"
            )

        return {
            "name": self.name,
            "data_sources": list(self.data_sources),
            "tables": {
                t.logic: {
                    "auto": t.auto,
                    "data_nodes": [str(n) for n in t.nodes],
                    "database_strategy": strategy(t.database),
                    "table_strategy": strategy(t.table),
                    "key": f"{t.key_column} <- {t.key_generator_name} ({t.key_generator.type})"
                    if t.key_generator is not None
                    else None,
                }
                for t in self.tables.values()
            },
            "binding_tables": sorted({",".join(sorted(g)) for g in self.binding.values()}),
            "broadcast_tables": sorted(self.broadcast),
            "default_data_source": self.default_source,
        }
