"""Routing vectors (input row or statement -> data nodes) from ShardingSphere's documentation, the
per-node rewrite, the refusals, and the result merge.

The ``ROUTING_VECTORS`` table is the one docs/database.md shows: every row is what ShardingSphere
routes for the same rule and statement.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import sqlglot
from sqlglot import exp

from opensergo.database import sharding_hint
from opensergo.database.errors import ConfigurationError, UnsupportedStatementError
from opensergo.database.sharding.merge import Aggregate, MergeSpec, OrderItem, merge
from opensergo.database.sharding.planner import plan_statement
from opensergo.database.sharding.rule import ShardingRule
from opensergo.database.statement import analyze
from opensergo.spec.loader import parse_documents

pytestmark = pytest.mark.unit

SHARDING_DB = """
apiVersion: database.opensergo.io/v1alpha1
kind: Sharding
metadata: {name: sharding_db}
spec:
  tables:
    t_order:
      actualDataNodes: "ds_${0..1}.t_order_${0..1}"
      tableStrategy: {standard: {shardingColumn: order_id, shardingAlgorithmName: t_order_inline}}
      keyGenerateStrategy: {column: order_id, keyGeneratorName: snowflake}
    t_order_item:
      actualDataNodes: "ds_${0..1}.t_order_item_${0..1}"
      tableStrategy: {standard: {shardingColumn: order_id, shardingAlgorithmName: t_order_item_inline}}
    t_log:
      actualDataNodes: "ds_${0..1}.t_log"
      databaseStrategy: {hint: {shardingAlgorithmName: hinted}}
  autoTables:
    t_event:
      actualDataSources: "ds_${0..1}"
      shardingStrategy: {standard: {shardingColumn: event_id, shardingAlgorithmName: mod4}}
  bindingTables: ["t_order,t_order_item"]
  broadcastTables: [t_config]
  defaultDatabaseStrategy: {standard: {shardingColumn: user_id, shardingAlgorithmName: database_inline}}
  shardingAlgorithms:
    database_inline: {type: INLINE, props: {algorithm-expression: "ds_${user_id % 2}"}}
    t_order_inline: {type: INLINE, props: {algorithm-expression: "t_order_${order_id % 2}"}}
    t_order_item_inline: {type: INLINE, props: {algorithm-expression: "t_order_item_${order_id % 2}"}}
    hinted: {type: HINT_INLINE, props: {algorithm-expression: "ds_${value % 2}"}}
    mod4: {type: MOD, props: {sharding-count: 4}}
  keyGenerators:
    snowflake: {type: SNOWFLAKE}
"""

# Table-only sharding, one data source: ShardingSphere's binding-table example (route.en.md).
TABLE_ONLY = """
apiVersion: database.opensergo.io/v1alpha1
kind: Sharding
metadata: {name: table_only}
spec:
  tables:
    t_order:
      actualDataNodes: "ds.t_order_${0..1}"
      tableStrategy: {standard: {shardingColumn: order_id, shardingAlgorithmName: o}}
    t_order_item:
      actualDataNodes: "ds.t_order_item_${0..1}"
      tableStrategy: {standard: {shardingColumn: order_id, shardingAlgorithmName: i}}
  bindingTables: [BINDING]
  shardingAlgorithms:
    o: {type: INLINE, props: {algorithm-expression: "t_order_${order_id % 2}"}}
    i: {type: INLINE, props: {algorithm-expression: "t_order_item_${order_id % 2}"}}
"""


def compile_rule(text: str) -> ShardingRule:
    [obj] = parse_documents(text, source="<test>")
    return ShardingRule(obj)  # type: ignore[arg-type]


RULE = compile_rule(SHARDING_DB)
JOIN_10_11 = (
    "SELECT i.* FROM t_order o JOIN t_order_item i ON o.order_id = i.order_id WHERE o.order_id IN (10, 11)"
)
BOUND = compile_rule(TABLE_ONLY.replace("BINDING", '"t_order,t_order_item"'))
UNBOUND = compile_rule(TABLE_ONLY.replace("bindingTables: [BINDING]", "bindingTables: []"))


def route(rule: ShardingRule, sql: str, params: Any = None, family: str = "mysql") -> list[tuple[str, str]]:
    plan = plan_statement(rule, family, analyze(sql, family))  # type: ignore[arg-type]
    return [(u.data_source, u.sql) for u in plan.route(params).units]


def nodes(rule: ShardingRule, sql: str, params: Any = None) -> list[str]:
    """``ds.table`` of every unit (``+`` joins the tables of one unit)."""
    out = []
    for ds, sql_text in route(rule, sql, params):
        tree = sqlglot.parse_one(sql_text.replace("%(", ":").replace(")s", ""), read="mysql")
        tables = [t.name for t in tree.find_all(exp.Table)]
        out.append(f"{ds}.{'+'.join(dict.fromkeys(tables))}")
    return out


ROUTING_VECTORS: list[tuple[str, str, Any, list[str]]] = [
    # (rule, statement, parameters, data nodes) — ShardingSphere routes the same
    (
        "sharding_db",
        "INSERT INTO t_order (user_id, order_id, status) VALUES (3, 10, 'a')",
        None,
        ["ds_1.t_order_0"],
    ),
    (
        "sharding_db",
        "INSERT INTO t_order (user_id, order_id) VALUES (%(u)s, %(o)s)",
        {"u": 2, "o": 11},
        ["ds_0.t_order_1"],
    ),
    (
        "sharding_db",
        "INSERT INTO t_order (user_id, order_id) VALUES (1, 1), (2, 2), (3, 3)",
        None,
        ["ds_1.t_order_1", "ds_0.t_order_0"],
    ),  # split per node: rows 1 and 3 together
    ("sharding_db", "SELECT * FROM t_order WHERE user_id = 2", None, ["ds_0.t_order_0", "ds_0.t_order_1"]),
    ("sharding_db", "SELECT * FROM t_order WHERE order_id = 10", None, ["ds_0.t_order_0", "ds_1.t_order_0"]),
    (
        "sharding_db",
        "SELECT * FROM t_order",
        None,
        ["ds_0.t_order_0", "ds_0.t_order_1", "ds_1.t_order_0", "ds_1.t_order_1"],
    ),
    (
        "sharding_db",
        "SELECT * FROM t_order WHERE user_id = 3 AND order_id IN (1, 2)",
        None,
        ["ds_1.t_order_1", "ds_1.t_order_0"],
    ),
    (
        "sharding_db",
        "SELECT * FROM t_order WHERE user_id IN (%s, %s) AND order_id = %s",
        [1, 2, 5],
        ["ds_1.t_order_1", "ds_0.t_order_1"],
    ),
    (
        "sharding_db",
        "SELECT * FROM t_order WHERE user_id = 1 OR user_id = 3",
        None,
        ["ds_1.t_order_0", "ds_1.t_order_1"],
    ),
    (
        "sharding_db",
        "SELECT * FROM t_order WHERE user_id = 1 AND user_id = 2",
        None,
        ["ds_0.t_order_0"],
    ),  # matches nothing
    (
        "sharding_db",
        "UPDATE t_order SET status = 'x' WHERE order_id = 7 AND user_id = 4",
        None,
        ["ds_0.t_order_1"],
    ),
    ("sharding_db", "DELETE FROM t_order WHERE order_id = 8", None, ["ds_0.t_order_0", "ds_1.t_order_0"]),
    (
        "sharding_db",
        "SELECT o.status FROM t_order o JOIN t_order_item i ON o.order_id = i.order_id "
        "WHERE o.user_id = 1 AND o.order_id = 3",
        None,
        ["ds_1.t_order_1+t_order_item_1"],
    ),
    (
        "sharding_db",
        "/* SHARDINGSPHERE_HINT: t_log.SHARDING_DATABASE_VALUE=3 */ SELECT * FROM t_log",
        None,
        ["ds_1.t_log"],
    ),
    ("sharding_db", "SELECT * FROM t_log", None, ["ds_0.t_log", "ds_1.t_log"]),  # no hint: all
    (
        "sharding_db",
        "SELECT * FROM t_event WHERE event_id = 7",
        None,
        ["ds_1.t_event_3"],
    ),  # auto table: MOD 4
    (
        "sharding_db",
        "SELECT * FROM t_event WHERE event_id BETWEEN 5 AND 6",
        None,
        ["ds_0.t_event_2", "ds_1.t_event_1"],
    ),
    (
        "sharding_db",
        "CREATE TABLE t_order_item (order_item_id BIGINT, order_id BIGINT, user_id INT)",
        None,
        ["ds_0.t_order_item_0", "ds_0.t_order_item_1", "ds_1.t_order_item_0", "ds_1.t_order_item_1"],
    ),
    # ShardingSphere's binding example: 2 statements with binding tables, 4 without
    (
        "bound",
        JOIN_10_11,
        None,
        ["ds.t_order_0+t_order_item_0", "ds.t_order_1+t_order_item_1"],
    ),
    (
        "unbound",
        JOIN_10_11,
        None,
        [
            "ds.t_order_0+t_order_item_0",
            "ds.t_order_0+t_order_item_1",
            "ds.t_order_1+t_order_item_0",
            "ds.t_order_1+t_order_item_1",
        ],
    ),
]

RULES = {"sharding_db": RULE, "bound": BOUND, "unbound": UNBOUND}


@pytest.mark.parametrize(("rule", "sql", "params", "expected"), ROUTING_VECTORS)
def test_routing_vectors(rule: str, sql: str, params: Any, expected: list[str]) -> None:
    assert nodes(RULES[rule], sql, params) == expected


def test_binding_and_broadcast_and_single_tables() -> None:
    # the binding table is renamed to the same node index; column qualifiers follow the table name
    [(ds, sql)] = route(
        RULE,
        "SELECT t_order.status FROM t_order JOIN t_order_item ON t_order.order_id = "
        "t_order_item.order_id WHERE t_order.user_id = 2 AND t_order.order_id = 4",
    )
    assert ds == "ds_0"
    assert sql == (
        "SELECT t_order_0.status FROM t_order_0 JOIN t_order_item_0 ON t_order_0.order_id = "
        "t_order_item_0.order_id WHERE t_order_0.user_id = 2 AND t_order_0.order_id = 4"
    )
    # broadcast: written everywhere, read from one
    assert [d for d, _ in route(RULE, "INSERT INTO t_config (k, v) VALUES ('a', 'b')")] == ["ds_0", "ds_1"]
    assert len(route(RULE, "SELECT * FROM t_config")) == 1
    # a sharded table joined with a broadcast table: the broadcast table is not renamed
    [(_, sql)] = route(
        RULE, "SELECT * FROM t_order o JOIN t_config c ON c.k = o.status WHERE user_id = 1 AND order_id = 1"
    )
    assert "t_config" in sql and "t_order_1" in sql
    # single tables and statements without tables: the first data source, unchanged
    assert route(RULE, "SELECT * FROM t_user WHERE id = 1") == [("ds_0", "SELECT * FROM t_user WHERE id = 1")]
    assert route(RULE, "SELECT 1") == [("ds_0", "SELECT 1")]
    with pytest.raises(UnsupportedStatementError, match="t_user is not sharded"):
        route(RULE, "SELECT * FROM t_order o JOIN t_user u ON u.id = o.user_id WHERE o.user_id = 1")


def test_hint_values_from_python() -> None:
    with sharding_hint("t_log", database=[0, 1]):
        assert nodes(RULE, "SELECT * FROM t_log") == ["ds_0.t_log", "ds_1.t_log"]
    with sharding_hint("t_log", database=5):
        assert nodes(RULE, "INSERT INTO t_log (id) VALUES (1)") == ["ds_1.t_log"]
    with pytest.raises(UnsupportedStatementError, match="routes to 2 data nodes"):
        route(RULE, "INSERT INTO t_log (id) VALUES (1)")


def test_insert_generates_keys_and_refuses_missing_sharding_values() -> None:
    plan = plan_statement(
        RULE, "mysql", analyze("INSERT INTO t_order (user_id, status) VALUES (%(u)s, 'x')", "mysql")
    )
    execution = plan.route({"u": 1})
    [unit] = execution.units
    assert (
        unit.sql == f"INSERT INTO t_order_{execution.generated[0] % 2} (user_id, status, order_id) "
        "VALUES (%(u)s, 'x', %(__os_key_0)s)"
    )
    assert unit.params["__os_key_0"] == execution.generated[0] and unit.data_source == "ds_1"
    with pytest.raises(UnsupportedStatementError, match="must give the sharding column user_id"):
        route(RULE, "INSERT INTO t_order (order_id) VALUES (1)")
    with pytest.raises(UnsupportedStatementError, match="needs a column list"):
        route(RULE, "INSERT INTO t_order VALUES (1, 2, 'x')")
    with pytest.raises(UnsupportedStatementError, match="literal or a parameter"):
        route(RULE, "INSERT INTO t_order (user_id, order_id) VALUES (1 + 1, 2)")
    with pytest.raises(UnsupportedStatementError, match="Can not update sharding value"):
        route(
            RULE, "INSERT INTO t_order (user_id, order_id) VALUES (1, 2) ON DUPLICATE KEY UPDATE user_id = 3"
        )


def test_cross_node_select_is_rewritten_for_the_merge() -> None:
    sql = (
        "SELECT user_id, AVG(order_id) FROM t_order GROUP BY user_id ORDER BY user_id "
        "LIMIT %(n)s OFFSET %(o)s"
    )
    plan = plan_statement(RULE, "mysql", analyze(sql, "mysql"))
    execution = plan.route({"n": 10, "o": 5})
    assert len(execution.units) == 4
    assert execution.units[0].sql == (
        "SELECT user_id, AVG(order_id), COUNT(order_id) AS AVG_DERIVED_COUNT_0, "
        "SUM(order_id) AS AVG_DERIVED_SUM_0 FROM t_order_0 GROUP BY user_id ORDER BY user_id "
        "LIMIT %(__os_limit)s"
    )
    assert execution.units[0].params["__os_limit"] == 15  # LIMIT o, n -> LIMIT 0, o + n
    # a single node is not rewritten
    [(_, single)] = route(
        RULE, "SELECT user_id, AVG(order_id) FROM t_order WHERE user_id = 1 AND order_id = 1 LIMIT 3, 2"
    )
    assert (
        single
        == "SELECT user_id, AVG(order_id) FROM t_order_1 WHERE user_id = 1 AND order_id = 1 LIMIT 2 OFFSET 3"
    )
    # ORDER BY a column not selected: a hidden derived column; a literal LIMIT is computed once
    [(_, hidden), *_] = route(RULE, "SELECT status FROM t_order ORDER BY order_id DESC LIMIT 10, 20")
    assert (
        hidden
        == "SELECT status, order_id AS ORDER_BY_DERIVED_0 FROM t_order_0 ORDER BY order_id DESC LIMIT 30"
    )
    # GROUP BY without ORDER BY gains one, so that groups stream;
    # ORDER BY an aggregate drops the per-node LIMIT
    [(_, grouped), *_] = route(RULE, "SELECT status, COUNT(*) FROM t_order GROUP BY status")
    assert grouped.endswith("GROUP BY status ORDER BY status")  # MySQL: NULLs first already
    [(_, counted), *_] = route(
        RULE, "SELECT status, COUNT(*) AS c FROM t_order GROUP BY status ORDER BY c DESC LIMIT 3"
    )
    assert "LIMIT" not in counted
    # percent signs of an escaped statement survive the rewrite
    [(_, escaped), *_] = route(
        RULE, "SELECT user_id %% 2 FROM t_order WHERE status LIKE 'a%%' AND user_id = %(u)s", {"u": 1}
    )
    assert escaped == "SELECT user_id %% 2 FROM t_order_0 WHERE status LIKE 'a%%' AND user_id = %(u)s"


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT * FROM t_order WHERE order_id BETWEEN 1 AND 5", "range query"),
        ("SELECT * FROM t_order WHERE user_id = -3", "Routed target `ds_-1` does not exist"),
        (
            "UPDATE t_order SET user_id = 3 WHERE order_id = 1",
            "Can not update sharding value for table `t_order`",
        ),
        ("UPDATE t_order SET status = 'x' ORDER BY order_id LIMIT 1", "20046"),
        ("DELETE o, i FROM t_order o JOIN t_order_item i ON o.order_id = i.order_id", "several tables"),
        ("SELECT COUNT(DISTINCT user_id) FROM t_order", "COUNT\\(DISTINCT user_id\\)"),
        ("SELECT user_id FROM t_order GROUP BY user_id HAVING COUNT(*) > 1", "HAVING"),
        ("SELECT SUM(order_id) / COUNT(*) FROM t_order", "over an aggregate"),
        ("SELECT ROW_NUMBER() OVER (ORDER BY order_id) FROM t_order", "window function"),
        (
            "SELECT * FROM t_order WHERE order_id IN (SELECT order_id FROM t_order_item)",
            "subquery over sharded table t_order_item",
        ),
        ("SELECT status FROM t_order UNION SELECT status FROM t_order_item", "UNION"),
        ("SELECT * FROM t_order o JOIN t_event e ON e.event_id = o.order_id", "not binding tables"),
        (
            "INSERT INTO t_order (user_id, order_id) SELECT user_id, order_id FROM t_order_item",
            "INSERT … SELECT",
        ),
        ("LOCK TABLES t_order WRITE", "cannot shard this statement on t_order"),
    ],
)
def test_refusals_name_the_construct(sql: str, message: str) -> None:
    with pytest.raises(UnsupportedStatementError, match=message):
        route(RULE, sql)


def test_statements_on_one_node_are_not_refused() -> None:
    sql = "SELECT COUNT(DISTINCT status) FROM t_order WHERE user_id = 1 AND order_id = 1"
    assert len(route(RULE, sql)) == 1
    assert len(route(RULE, "UPDATE t_order SET status = 'x' WHERE user_id = 1 AND order_id = 1 LIMIT 1")) == 1


def test_ddl_renames_indexes_and_describe_reads_the_first_node() -> None:
    units = route(RULE, "CREATE INDEX idx_status ON t_order (status)", family="postgresql")
    assert units[1] == ("ds_0", "CREATE INDEX idx_status_t_order_1 ON t_order_1(status)")
    assert route(RULE, "TRUNCATE TABLE t_event")[2] == ("ds_0", "TRUNCATE TABLE t_event_2")
    assert route(RULE, "DESCRIBE `shop`.`t_order`") == [("ds_0", "DESCRIBE `shop`.`t_order_0`")]


def test_rule_errors_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="must have the same data sources"):
        compile_rule(
            SHARDING_DB.replace('"ds_${0..1}.t_order_item_${0..1}"', '"ds_${0..1}.t_order_item_${0..2}"')
        )
    with pytest.raises(
        ConfigurationError, match="reads order_id, but the strategy's sharding column is 'id'"
    ):
        compile_rule(
            SHARDING_DB.replace(
                "shardingColumn: order_id, shardingAlgorithmName: t_order_inline",
                "shardingColumn: id, shardingAlgorithmName: t_order_inline",
            )
        )
    with pytest.raises(ConfigurationError, match="auto-table algorithm"):
        compile_rule(
            SHARDING_DB.replace(
                "mod4: {type: MOD, props: {sharding-count: 4}}",
                'mod4: {type: INLINE, props: {algorithm-expression: "t_event_${event_id % 4}"}}',
            )
        )
    with pytest.raises(ConfigurationError, match="CLASS_BASED"):
        compile_rule(
            SHARDING_DB.replace(
                "type: MOD, props: {sharding-count: 4}", "type: CLASS_BASED, props: {algorithmClassName: a.B}"
            )
        )
    with pytest.raises(ConfigurationError, match=r"not <data source>\.<table>"):
        compile_rule(SHARDING_DB.replace('"ds_${0..1}.t_log"', '"t_log_${0..1}"'))


def test_describe_lists_data_nodes_and_strategies() -> None:
    described = RULE.describe()
    assert described["tables"]["t_event"]["data_nodes"] == [
        "ds_0.t_event_0",
        "ds_1.t_event_1",
        "ds_0.t_event_2",
        "ds_1.t_event_3",
    ]
    assert (
        described["tables"]["t_order"]["database_strategy"] == "standard(user_id) -> database_inline (INLINE)"
    )
    assert described["binding_tables"] == ["t_order,t_order_item"] and described["broadcast_tables"] == [
        "t_config"
    ]


# --- merge --------------------------------------------------------------------------------------


def test_order_by_merge_streams_and_applies_limit_and_offset() -> None:
    spec = MergeSpec(
        order=(OrderItem(0, desc=False, nulls_first=True),), offset=lambda p: 2, count=lambda p: 3
    )
    streams = [[(None,), (1,), (4,), (9,)], [(2,), (3,), (8,)], []]
    assert list(merge(spec, "mysql", streams, {})) == [(2,), (3,), (4,)]
    consumed: list[int] = []

    def lazy() -> Any:
        for v in range(1000):
            consumed.append(v)
            yield (v,)

    first = merge(MergeSpec(order=(OrderItem(0),), count=lambda p: 2), "mysql", [lazy(), [(0,)]], {})
    assert list(first) == [(0,), (0,)] and len(consumed) <= 3  # a k-way merge, not a sort of everything


def test_group_merge_streaming_and_in_memory() -> None:
    spec = MergeSpec(
        order=(OrderItem(0),),
        group=(0,),
        aggregates=(
            Aggregate(1, "COUNT"),
            Aggregate(2, "SUM"),
            Aggregate(3, "MIN"),
            Aggregate(4, "MAX"),
            Aggregate(5, "AVG", count_index=-2, sum_index=-1),
        ),
        stream_group=True,
        derived=2,
    )
    a = [
        ("a", 2, Decimal(5), 1, 4, Decimal("2.5000"), 2, Decimal(5)),
        ("B", 1, None, None, None, None, 0, None),
    ]
    b = [
        ("b", 3, Decimal(6), 0, 9, Decimal("2.0000"), 3, Decimal(6)),
        ("c", 1, Decimal(1), 1, 1, Decimal("1.0000"), 1, Decimal(1)),
    ]
    merged = list(merge(spec, "mysql", [a, b], {}))
    # 'B' and 'b' are one group under MySQL's case-insensitive collation; AVG = Σsum / Σcount = 6 / 3
    assert merged == [
        ("a", 2, Decimal(5), 1, 4, Decimal("2.5000")),
        ("B", 4, Decimal(6), 0, 9, Decimal("2.0000")),
        ("c", 1, Decimal(1), 1, 1, Decimal("1.0000")),
    ]
    in_memory = MergeSpec(
        order=(OrderItem(1, desc=True),), group=(0,), aggregates=(Aggregate(1, "COUNT"),), count=lambda p: 2
    )
    rows = list(merge(in_memory, "postgresql", [[("x", 1), ("y", 5)], [("x", 7), ("z", 2)]], {}))
    assert rows == [("x", 8), ("y", 5)]


def test_aggregates_without_group_and_distinct() -> None:
    spec = MergeSpec(group=(), aggregates=(Aggregate(0, "COUNT"), Aggregate(1, "MAX")))
    assert list(merge(spec, "mysql", [[(3, "b")], [(0, None)], [(2, "C")]], {})) == [(5, "C")]
    distinct = MergeSpec(order=(OrderItem(0),), distinct=True)
    assert list(merge(distinct, "postgresql", [[("a",), ("b",)], [("a",), ("c",)]], {})) == [
        ("a",),
        ("b",),
        ("c",),
    ]
    nulls_last = MergeSpec(order=(OrderItem(0, desc=False, nulls_first=False),))
    assert list(merge(nulls_last, "postgresql", [[(1,), (None,)], [(0,), (None,)]], {})) == [
        (0,),
        (1,),
        (None,),
        (None,),
    ]


DEFAULTS = """
apiVersion: database.opensergo.io/v1alpha1
kind: Sharding
metadata: {name: defaults}
spec:
  tables:
    t_a: {actualDataNodes: "ds_${0..1}.t_a_${0..1}"}
    t_b:
      actualDataNodes: "ds_${0..1}.t_b"
      tableStrategy: {none: {}}
      keyGenerateStrategy: {column: b_id, keyGeneratorName: uuid}
  defaultDatabaseStrategy: {standard: {shardingColumn: "", shardingAlgorithmName: by_tenant}}
  defaultTableStrategy: {standard: {shardingColumn: "", shardingAlgorithmName: by_tenant_table}}
  defaultShardingColumn: tenant
  defaultKeyGenerateStrategy: {column: id, keyGeneratorName: snowflake}
  shardingAlgorithms:
    by_tenant: {type: INLINE, props: {algorithm-expression: "ds_${tenant % 2}"}}
    by_tenant_table: {type: INLINE, props: {algorithm-expression: "t_a_${tenant.intdiv(2) % 2}"}}
  keyGenerators:
    snowflake: {type: SNOWFLAKE}
    uuid: {type: UUID}
"""


def test_default_strategies_column_and_key_generator() -> None:
    rule = compile_rule(DEFAULTS)
    assert nodes(rule, "SELECT * FROM t_a WHERE tenant = 3") == ["ds_1.t_a_1"]
    assert nodes(rule, "SELECT * FROM t_b WHERE tenant = 3") == ["ds_1.t_b"]  # table strategy none
    plan = plan_statement(rule, "mysql", analyze("INSERT INTO t_a (tenant) VALUES (2)", "mysql"))
    [key] = plan.route(None).generated
    assert isinstance(key, int)  # the default SNOWFLAKE generator on the default column
    plan = plan_statement(rule, "mysql", analyze("INSERT INTO t_b (tenant, note) VALUES (2, 'x')", "mysql"))
    execution = plan.route(None)
    assert len(execution.generated[0]) == 32 and "b_id" in execution.units[0].sql  # its own UUID generator
