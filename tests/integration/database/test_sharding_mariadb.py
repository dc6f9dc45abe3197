"""Sharding on two real MariaDB servers (ds_0, ds_1): the spec's sharding_db example through the
ORM with rows checked in the physical tables, merge operators against an unsharded copy of the
same data, refusals, hints, DDL, broadcast tables, the async engine, and XA transactions."""

from __future__ import annotations

import asyncio
import random
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from opensergo.database import (
    UnsupportedStatementError,
    create_async_engine,
    create_engine,
    describe,
    sharding_hint,
)
from opensergo.database.rules import DatabaseRules
from opensergo.spec.loader import parse_documents
from tests.integration.database import yamls
from tests.integration.database.servers import PASSWORD, USER, MariaDB

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def load(rules: DatabaseRules, *documents: str) -> None:
    rules.replace(parse_documents("\n".join(documents), source="<test>"), namespace="default")


def endpoints(servers: list[MariaDB], database: str = "shop") -> list[str]:
    return [yamls.endpoint(f"ds_{i}", s.jdbc(database)) for i, s in enumerate(servers)]


def physical(server: MariaDB, sql: str, database: str = "shop") -> list[dict[str, Any]]:
    return server.sql(f"USE {database}", sql)


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "t_order"
    order_id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.Integer)
    status: Mapped[str] = mapped_column(sa.String(32))


class OrderItem(Base):
    __tablename__ = "t_order_item"
    order_item_id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    order_id: Mapped[int] = mapped_column(sa.BigInteger)
    user_id: Mapped[int] = mapped_column(sa.Integer)
    status: Mapped[str] = mapped_column(sa.String(32))


class Config(Base):
    __tablename__ = "t_config"
    name: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    value: Mapped[str] = mapped_column(sa.String(64))


def test_sharding_db_example_through_the_orm(shard_logs: list[MariaDB], rules: DatabaseRules) -> None:
    servers = shard_logs
    load(rules, *endpoints(servers), yamls.SHARDING_DB, yamls.sharding_service("sharding_db", "sharding_db"))
    engine = create_engine("sharding_db", rules=rules)
    try:
        Base.metadata.create_all(engine)  # every actual table, the broadcast table on both
        for server in servers:
            tables = {r["Tables_in_shop"] for r in physical(server, "SHOW TABLES")}
            assert tables == {"t_order_0", "t_order_1", "t_order_item_0", "t_order_item_1", "t_config"}
        Base.metadata.create_all(
            engine
        )  # checkfirst: DESCRIBE t_order reads a data node, nothing created twice

        with Session(engine) as session:
            orders = [Order(user_id=u, status=f"new-{u}") for u in range(12)]
            session.add_all(orders)
            session.flush()  # snowflake keys, read back through lastrowid
            assert len({o.order_id for o in orders}) == 12 and all(o.order_id > 1 << 40 for o in orders)
            session.add_all(
                [
                    OrderItem(order_id=o.order_id, user_id=o.user_id, status="item")
                    for o in orders
                    for _ in range(2)
                ]
            )
            session.add(Config(name="currency", value="EUR"))
            session.commit()
            ids = {o.user_id: o.order_id for o in orders}

        # Rows sit where the rule says: ds_{user_id % 2}.t_order_{order_id % 2}.
        total = 0
        for ds, server in enumerate(servers):
            for table in (0, 1):
                rows = physical(server, f"SELECT order_id, user_id FROM t_order_{table}")
                assert all(r["user_id"] % 2 == ds and r["order_id"] % 2 == table for r in rows)
                items = physical(server, f"SELECT order_id, user_id FROM t_order_item_{table}")
                assert all(r["user_id"] % 2 == ds and r["order_id"] % 2 == table for r in items)
                total += len(rows)
            assert physical(server, "SELECT value FROM t_config") == [{"value": "EUR"}]  # broadcast: both
        assert total == 12

        with Session(engine) as session:
            assert session.get(Order, ids[5]).user_id == 5  # by order_id: t_order_{id%2} on both data sources
            mine = session.scalars(sa.select(Order).where(Order.user_id == 3)).all()
            assert [o.order_id for o in mine] == [ids[3]]
            joined = session.execute(
                sa.select(Order.user_id, sa.func.count(OrderItem.order_item_id))
                .join(OrderItem, Order.order_id == OrderItem.order_id)
                .group_by(Order.user_id)
                .order_by(Order.user_id)
            ).all()
            assert joined == [(u, 2) for u in range(12)]  # binding tables: no Cartesian product
            newest = session.scalars(sa.select(Order).order_by(Order.order_id.desc()).limit(3)).all()
            assert [o.order_id for o in newest] == sorted(ids.values(), reverse=True)[:3]
            assert session.scalar(sa.select(sa.func.count()).select_from(Order)) == 12
            assert session.get(Config, "currency").value == "EUR"

            order = session.get(Order, ids[7])
            order.status = "paid"  # UPDATE … WHERE order_id = ?: rowcount summed over data sources
            session.commit()
            assert physical(
                servers[1], f"SELECT status FROM t_order_{ids[7] % 2} WHERE order_id = {ids[7]}"
            ) == [{"status": "paid"}]
            session.delete(session.get(Order, ids[8]))
            session.commit()
            assert session.scalar(sa.select(sa.func.count()).select_from(Order)) == 11

            with pytest.raises(UnsupportedStatementError, match="Can not update sharding value"):
                session.execute(sa.update(Order).where(Order.order_id == ids[1]).values(user_id=2))
            session.rollback()
        with engine.connect() as conn:
            with pytest.raises(UnsupportedStatementError, match="range query"):
                conn.execute(sa.text("SELECT * FROM t_order WHERE order_id BETWEEN 1 AND 5"))
            with pytest.raises(UnsupportedStatementError, match="does not exist"):
                conn.execute(sa.text("SELECT * FROM t_order WHERE user_id = -3"))  # Groovy: ds_-1
        runtime = describe(engine)["runtime"]
        assert runtime["sharding"]["tables"]["t_order"]["data_nodes"] == [
            "ds_0.t_order_0",
            "ds_0.t_order_1",
            "ds_1.t_order_0",
            "ds_1.t_order_1",
        ]
    finally:
        with engine.begin() as conn:
            for table in ("t_order", "t_order_item", "t_config"):
                conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        engine.dispose()


MERGE_RULE = """
apiVersion: database.opensergo.io/v1alpha1
kind: Sharding
metadata: {name: merge_rule, labels: {app: db-app}}
spec:
  tables:
    t_sale:
      actualDataNodes: "ds_${0..1}.t_sale_${0..2}"
      databaseStrategy:
        standard: {shardingColumn: region, shardingAlgorithmName: by_region}
      tableStrategy:
        standard: {shardingColumn: sale_id, shardingAlgorithmName: by_id}
  shardingAlgorithms:
    by_region: {type: HASH_MOD, props: {sharding-count: 2}}
    by_id: {type: MOD, props: {sharding-count: 3}}
---"""

SALE_DDL = (
    "CREATE TABLE t_sale (sale_id INT PRIMARY KEY, region VARCHAR(16), shop INT, "
    "amount INT NULL, price DECIMAL(10,2), status VARCHAR(16))"
)

# (query, compare as a set?) — every query also runs on the unsharded copy.
MERGE_QUERIES: list[tuple[str, bool]] = [
    ("SELECT sale_id, shop FROM t_sale ORDER BY shop, sale_id LIMIT 10 OFFSET 5", False),
    ("SELECT sale_id, amount FROM t_sale ORDER BY amount DESC, sale_id LIMIT 25", False),
    ("SELECT sale_id, amount FROM t_sale ORDER BY amount, sale_id DESC LIMIT 7, 9", False),  # NULLs first
    ("SELECT sale_id FROM t_sale WHERE region IN ('north', 'asia') ORDER BY sale_id", False),
    (
        "SELECT shop, COUNT(*), SUM(amount), MIN(amount), MAX(amount), AVG(amount), AVG(price) "
        "FROM t_sale GROUP BY shop ORDER BY shop",
        False,
    ),
    ("SELECT status, COUNT(*) AS c FROM t_sale GROUP BY status ORDER BY c DESC, status LIMIT 3", False),
    ("SELECT shop, status, SUM(price) FROM t_sale GROUP BY shop, status", True),
    (
        "SELECT COUNT(*), COUNT(amount), SUM(amount), AVG(amount), MIN(status), MAX(status), SUM(price) "
        "FROM t_sale",
        False,
    ),
    ("SELECT DISTINCT status FROM t_sale ORDER BY status", False),
    ("SELECT DISTINCT shop FROM t_sale", True),
    ("SELECT DISTINCT region, status FROM t_sale ORDER BY region, status LIMIT 4", False),
    ("SELECT region, MAX(price) FROM t_sale WHERE shop < 5 GROUP BY region ORDER BY region", False),
    ("SELECT shop, AVG(amount) FROM t_sale GROUP BY shop ORDER BY AVG(amount) DESC, shop LIMIT 5", False),
]


def _folded(row: Any) -> tuple[Any, ...]:
    return tuple(v.lower() if isinstance(v, str) else v for v in row)


def test_merge_operators_against_an_unsharded_copy(shard_logs: list[MariaDB], rules: DatabaseRules) -> None:
    servers = shard_logs
    load(rules, *endpoints(servers), MERGE_RULE, yamls.sharding_service("merge_db", "merge_rule"))
    engine = create_engine("merge_db", rules=rules)
    plain = sa.create_engine(f"mysql+pymysql://{USER}:{PASSWORD}@127.0.0.1:{servers[0].port}/plain")
    rng = random.Random(20261203)
    rows = [
        {
            "sale_id": i,
            "region": rng.choice(["north", "south", "asia", "africa"]),
            "shop": rng.randrange(12),
            "amount": None if rng.random() < 0.1 else rng.randrange(-50, 1000),
            "price": Decimal(rng.randrange(100, 100000)) / 100,
            "status": rng.choice(["new", "paid", "shipped", "returned", "Paid"]),
        }
        for i in rng.sample(range(1, 100000), 600)
    ]
    insert = sa.text(
        "INSERT INTO t_sale (sale_id, region, shop, amount, price, status) "
        "VALUES (:sale_id, :region, :shop, :amount, :price, :status)"
    )
    try:
        for target in (engine, plain):
            with target.begin() as conn:
                conn.execute(sa.text("DROP TABLE IF EXISTS t_sale"))
                conn.execute(sa.text(SALE_DDL))
                conn.execute(insert, rows)
        spread = [len(physical(s, f"SELECT 1 FROM t_sale_{t}")) for s in servers for t in range(3)]
        assert sum(spread) == len(rows) and min(spread) > 0
        with engine.connect() as sharded, plain.connect() as reference:
            for query, as_set in MERGE_QUERIES:
                # 'paid' and 'Paid' are one group under MariaDB's _ci collation; which spelling
                # represents it is arbitrary there too, so strings compare case-insensitively.
                got = [_folded(r) for r in sharded.execute(sa.text(query))]
                want = [_folded(r) for r in reference.execute(sa.text(query))]
                if as_set:
                    got, want = sorted(got, key=repr), sorted(want, key=repr)
                assert got == want, query
            # Parameters in LIMIT/OFFSET and IN lists (SQLAlchemy Core renders them as parameters).
            sale = sa.table("t_sale", sa.column("sale_id"), sa.column("shop"), sa.column("region"))
            query = (
                sa.select(sale.c.sale_id).where(sale.c.shop.in_([1, 2, 3])).order_by(sale.c.sale_id.desc())
            )
            for limit, offset in ((5, 0), (10, 20), (3, 500)):
                page = query.limit(limit).offset(offset)
                assert sharded.execute(page).all() == reference.execute(page).all()
            # A point read by both sharding columns touches one node.
            one = rows[17]
            point = sa.text("SELECT shop FROM t_sale WHERE region = :r AND sale_id = :i")
            assert sharded.execute(point, {"r": one["region"], "i": one["sale_id"]}).all() == [(one["shop"],)]
            for bad, construct in (
                ("SELECT COUNT(DISTINCT shop) FROM t_sale", "COUNT\\(DISTINCT"),
                ("SELECT shop, COUNT(*) FROM t_sale GROUP BY shop HAVING COUNT(*) > 3", "HAVING"),
                ("SELECT shop, SUM(amount) + 1 FROM t_sale GROUP BY shop", "over an aggregate"),
                ("SELECT sale_id FROM (SELECT * FROM t_sale) AS x", "derived tables"),
                ("DELETE FROM t_sale WHERE shop = 1 LIMIT 1", "20046"),
            ):
                with pytest.raises(UnsupportedStatementError, match=construct):
                    sharded.execute(sa.text(bad))
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE IF EXISTS t_sale"))
        with plain.begin() as conn:
            conn.execute(sa.text("DROP TABLE IF EXISTS t_sale"))
        engine.dispose()
        plain.dispose()


HINT_RULE = """
apiVersion: database.opensergo.io/v1alpha1
kind: Sharding
metadata: {name: hint_rule, labels: {app: db-app}}
spec:
  tables:
    t_log:
      actualDataNodes: "ds_${0..1}.t_log"
      databaseStrategy:
        hint: {shardingAlgorithmName: by_hint}
    t_user:
      actualDataNodes: "ds_${0..1}.t_user"
      databaseStrategy:
        complex: {shardingColumns: "tenant,user_id", shardingAlgorithmName: by_both}
      tableStrategy:
        none: {}
  autoTables:
    t_event:
      actualDataSources: "ds_${0..1}"
      shardingStrategy:
        standard: {shardingColumn: event_id, shardingAlgorithmName: four}
  shardingAlgorithms:
    by_hint: {type: HINT_INLINE, props: {algorithm-expression: "ds_${value % 2}"}}
    by_both: {type: COMPLEX_INLINE, props: {sharding-columns: "tenant,user_id",
              algorithm-expression: "ds_${(tenant.hashCode() + user_id) % 2}"}}
    four: {type: MOD, props: {sharding-count: 4}}
---"""


def test_hint_complex_and_auto_tables(shard_logs: list[MariaDB], rules: DatabaseRules) -> None:
    servers = shard_logs
    load(rules, *endpoints(servers), HINT_RULE, yamls.sharding_service("hint_db", "hint_rule"))
    engine = create_engine("hint_db", rules=rules)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE t_log (id INT PRIMARY KEY, note VARCHAR(32))"))
            conn.execute(
                sa.text("CREATE TABLE t_user (tenant VARCHAR(8), user_id INT, PRIMARY KEY (tenant, user_id))")
            )
            conn.execute(sa.text("CREATE TABLE t_event (event_id INT PRIMARY KEY, kind VARCHAR(8))"))
        # auto table: t_event_0..3 spread ds_0, ds_1, ds_0, ds_1
        assert {next(iter(r.values())) for r in physical(servers[0], "SHOW TABLES LIKE 't_event%'")} == {
            "t_event_0",
            "t_event_2",
        }
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "/* SHARDINGSPHERE_HINT: t_log.SHARDING_DATABASE_VALUE=3 */ "
                    "INSERT INTO t_log (id, note) VALUES (1, 'comment hint')"
                )
            )
            with sharding_hint("t_log", database=4):
                conn.execute(sa.text("INSERT INTO t_log (id, note) VALUES (2, 'python hint')"))
            conn.execute(sa.text("INSERT INTO t_user (tenant, user_id) VALUES ('acme', 1), ('acme', 2)"))
            conn.execute(
                sa.text("INSERT INTO t_event (event_id, kind) VALUES (:e, 'x')"), [{"e": e} for e in range(8)]
            )
        assert physical(servers[1], "SELECT id FROM t_log") == [{"id": 1}]
        assert physical(servers[0], "SELECT id FROM t_log") == [{"id": 2}]
        acme = (
            sum(ord(c) * 31 ** (3 - i) for i, c in enumerate("acme")) % (1 << 32)
        ) % 2**31  # fits in an int
        for user in (1, 2):
            ds = (acme + user) % 2
            assert (
                physical(servers[ds], f"SELECT COUNT(*) AS n FROM t_user WHERE user_id = {user}")[0]["n"] == 1
            )
        assert sorted(r["event_id"] for r in physical(servers[1], "SELECT event_id FROM t_event_3")) == [3, 7]
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT COUNT(*) FROM t_log")).scalar() == 2  # no hint: every node
            with sharding_hint("t_log", database=1):
                assert conn.execute(sa.text("SELECT id FROM t_log")).all() == [(1,)]
            assert conn.execute(
                sa.text("SELECT user_id FROM t_user WHERE tenant = 'acme' AND user_id = 2")
            ).all() == [(2,)]
            with pytest.raises(UnsupportedStatementError, match="sharding columns"):
                conn.execute(sa.text("SELECT * FROM t_user WHERE user_id = 2"))  # one of the two columns
            assert (
                conn.execute(sa.text("SELECT COUNT(*) FROM t_event WHERE event_id BETWEEN 1 AND 2")).scalar()
                == 2
            )
    finally:
        with engine.begin() as conn:
            for table in ("t_log", "t_user", "t_event"):
                conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        engine.dispose()


def test_async_engine_queries_nodes_concurrently(shard_logs: list[MariaDB], rules: DatabaseRules) -> None:
    servers = shard_logs
    load(rules, *endpoints(servers), yamls.SHARDING_DB, yamls.sharding_service("sharding_db", "sharding_db"))

    async def scenario() -> None:
        engine = create_async_engine("sharding_db", rules=rules)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    sa.text(
                        "CREATE TABLE t_order (order_id BIGINT PRIMARY KEY, user_id INT, status VARCHAR(32))"
                    )
                )
            async with engine.begin() as conn:
                await conn.execute(
                    sa.text("INSERT INTO t_order (user_id, status) VALUES (:u, 'a')"),
                    [{"u": u} for u in range(20)],
                )
            async with engine.connect() as conn:
                # Rows of users 0 and 1 live on two data sources; SLEEP(1) runs once per row, so
                # concurrent nodes finish in about 1 s and nodes run in turn in 2 s (the old 0.3 s
                # sleeps with a 1 s bound passed either way).
                loop = asyncio.get_running_loop()
                started = loop.time()
                result = await conn.execute(
                    sa.text("SELECT user_id, SLEEP(1) FROM t_order WHERE user_id IN (0, 1) ORDER BY user_id")
                )
                elapsed = loop.time() - started
                assert [r[0] for r in result] == [0, 1]
                assert elapsed < 1.7, elapsed
                count = await conn.execute(sa.text("SELECT COUNT(*) FROM t_order"))
                assert count.scalar() == 20
            async with engine.begin() as conn:
                await conn.execute(sa.text("DROP TABLE t_order"))
        finally:
            await engine.dispose()

    asyncio.run(scenario())


def test_sync_engine_queries_nodes_concurrently_within_the_limit(
    shard_logs: list[MariaDB], rules: DatabaseRules
) -> None:
    servers = shard_logs
    load(rules, *endpoints(servers), yamls.SHARDING_DB, yamls.sharding_service("sharding_db", "sharding_db"))
    timings = {}
    for limit in (1, 8):
        engine = create_engine("sharding_db", rules=rules, shard_concurrency=limit)
        try:
            with engine.begin() as conn:
                conn.execute(
                    sa.text(
                        "CREATE TABLE t_order (order_id BIGINT PRIMARY KEY, user_id INT, status VARCHAR(32))"
                    )
                )
                conn.execute(sa.text("INSERT INTO t_order (user_id, status) VALUES (0, 'a'), (1, 'b')"))
            with engine.connect() as conn:
                import time

                started = time.monotonic()
                conn.execute(sa.text("SELECT SLEEP(0.3) FROM t_order WHERE user_id IN (0, 1)")).all()
                timings[limit] = time.monotonic() - started
        finally:
            with engine.begin() as conn:
                conn.execute(sa.text("DROP TABLE IF EXISTS t_order"))
            engine.dispose()
    # Two data sources, each with one row and two tables run in turn: ~0.3 s per data source.
    assert timings[8] < timings[1] - 0.15, timings


def test_xa_commit_and_rollback_across_data_sources(
    shard_logs: list[MariaDB], rules: DatabaseRules, tmp_path: Path
) -> None:
    servers = shard_logs
    load(
        rules,
        *endpoints(servers),
        yamls.SHARDING_DB,
        yamls.transaction("xa_tx", "xa"),
        yamls.sharding_service("sharding_db", "sharding_db", transaction="xa_tx"),
    )
    engine = create_engine("sharding_db", rules=rules, transaction_log_dir=str(tmp_path / "xa"))
    try:
        with engine.begin() as conn:  # DDL runs outside XA (MariaDB refuses DDL in an XA branch)
            conn.execute(
                sa.text("CREATE TABLE t_order (order_id BIGINT PRIMARY KEY, user_id INT, status VARCHAR(32))")
            )
        with engine.begin() as conn:
            conn.execute(
                sa.text("INSERT INTO t_order (user_id, status) VALUES (:u, 'xa')"),
                [{"u": u} for u in range(6)],
            )
        assert [
            physical(s, "SELECT COUNT(*) AS n FROM t_order_0")[0]["n"]
            + physical(s, "SELECT COUNT(*) AS n FROM t_order_1")[0]["n"]
            for s in servers
        ] == [3, 3]
        with pytest.raises(RuntimeError), engine.begin() as conn:
            conn.execute(
                sa.text("INSERT INTO t_order (user_id, status) VALUES (:u, 'gone')"),
                [{"u": u} for u in range(4)],
            )
            raise RuntimeError("the application gives up")
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT COUNT(*) FROM t_order")).scalar() == 6
        for server in servers:
            assert server.sql("XA RECOVER") == []
        assert describe(engine)["runtime"]["transactions"] == "xa"
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE IF EXISTS t_order"))
        engine.dispose()


def test_base_transactions_are_refused_when_a_transaction_starts(
    shard_logs: list[MariaDB], rules: DatabaseRules
) -> None:
    servers = shard_logs
    load(
        rules,
        *endpoints(servers),
        yamls.SHARDING_DB,
        yamls.transaction("seata", "base"),
        yamls.sharding_service("sharding_db", "sharding_db", transaction="seata"),
    )
    engine = create_engine("sharding_db", rules=rules)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar() == 1  # reads outside a transaction work
        with pytest.raises(UnsupportedStatementError, match="Seata"), engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO t_config (name, value) VALUES ('a', 'b')"))
    finally:
        engine.dispose()


COMBINED = """
apiVersion: database.opensergo.io/v1alpha1
kind: Sharding
metadata: {name: user_rule, labels: {app: db-app}}
spec:
  tables:
    t_member:
      actualDataNodes: "ds_${0..1}.t_member"
      databaseStrategy: {standard: {shardingColumn: user_id, shardingAlgorithmName: by_user}}
  shardingAlgorithms:
    by_user: {type: INLINE, props: {algorithm-expression: "ds_${user_id % 2}"}}
---
apiVersion: database.opensergo.io/v1alpha1
kind: Encryption
metadata: {name: member_enc, labels: {app: db-app}}
spec:
  encryptors:
    aes: {type: AES, props: {aes-key-value: 123456abc}}
  tables:
    t_member:
      columns:
        phone: {cipherColumn: phone_cipher, assistedQueryColumn: phone_assist, encryptorName: aes}
---
apiVersion: database.opensergo.io/v1alpha1
kind: Shadow
metadata: {name: member_shadow, labels: {app: db-app}}
spec:
  dataSources:
    shadow_0: {sourceDataSourceName: ds_0, shadowDataSourceName: ds_0_shadow}
    shadow_1: {sourceDataSourceName: ds_1, shadowDataSourceName: ds_1_shadow}
  tables:
    t_member: {dataSourceNames: [shadow_0, shadow_1], shadowAlgorithmNames: [hint]}
  shadowAlgorithms:
    hint: {type: SIMPLE_HINT, props: {shadow: "true"}}
---"""


def test_sharding_with_encryption_and_shadow(shard_logs: list[MariaDB], rules: DatabaseRules) -> None:
    servers = shard_logs
    for server in servers:
        server.sql("CREATE DATABASE IF NOT EXISTS shop_shadow")
    shadows = [yamls.endpoint(f"ds_{i}_shadow", s.jdbc("shop_shadow")) for i, s in enumerate(servers)]
    service = yamls.sharding_service(
        "member_db", "user_rule", extra="\n      encryption: member_enc\n      shadow: member_shadow"
    )
    load(rules, *endpoints(servers), *shadows, COMBINED, service)
    engine = create_engine("member_db", rules=rules)
    ddl = "CREATE TABLE t_member (user_id INT PRIMARY KEY, phone_cipher TEXT, phone_assist TEXT)"
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(ddl))
            conn.execute(sa.text(f"/*shadow:true*/ {ddl}"))  # DDL follows hints: the shadow databases
        insert = sa.text("INSERT INTO t_member (user_id, phone) VALUES (:u, :p)")
        with engine.begin() as conn:
            conn.execute(insert, [{"u": u, "p": f"1380000{u:04d}"} for u in range(6)])
        with engine.begin() as conn:
            conn.execute(
                sa.text("/*shadow:true*/ INSERT INTO t_member (user_id, phone) VALUES (7, 'test-only')")
            )
        for ds, server in enumerate(servers):
            stored = physical(server, "SELECT user_id, phone_cipher FROM t_member")
            assert sorted(r["user_id"] for r in stored) == [u for u in range(6) if u % 2 == ds]
            assert all(
                r["phone_cipher"] and not r["phone_cipher"].startswith("138") for r in stored
            )  # encrypted
        assert [
            r["user_id"] for r in physical(servers[1], "SELECT user_id FROM t_member", "shop_shadow")
        ] == [7]
        assert physical(servers[0], "SELECT user_id FROM t_member", "shop_shadow") == []
        with engine.connect() as conn:
            # the encrypted predicate goes to every node (no sharding key), decrypted after the merge
            found = conn.execute(
                sa.text("SELECT user_id, phone FROM t_member WHERE phone = :p"), {"p": "13800000003"}
            )
            assert found.all() == [(3, "13800000003")]
            ordered = conn.execute(
                sa.text("SELECT user_id, phone FROM t_member ORDER BY user_id DESC LIMIT 2")
            )
            assert ordered.all() == [(5, "13800000005"), (4, "13800000004")]
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE IF EXISTS t_member"))
            conn.execute(sa.text("/*shadow:true*/ DROP TABLE IF EXISTS t_member"))
        engine.dispose()


def test_async_engine_xa(shard_logs: list[MariaDB], rules: DatabaseRules, tmp_path: Path) -> None:
    servers = shard_logs
    load(rules, *endpoints(servers), yamls.SHARDING_DB, yamls.transaction("xa_tx", "xa"),
         yamls.sharding_service("sharding_db", "sharding_db", transaction="xa_tx"))  # fmt: skip

    async def scenario() -> None:
        engine = create_async_engine("sharding_db", rules=rules, transaction_log_dir=str(tmp_path / "xa"))
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    sa.text(
                        "CREATE TABLE t_order (order_id BIGINT PRIMARY KEY, user_id INT, status VARCHAR(32))"
                    )
                )
            async with engine.begin() as conn:
                await conn.execute(sa.text("INSERT INTO t_order (user_id, status) VALUES (0, 'a'), (1, 'b')"))
            with pytest.raises(RuntimeError):
                async with engine.begin() as conn:
                    await conn.execute(
                        sa.text("INSERT INTO t_order (user_id, status) VALUES (0, 'x'), (1, 'y')")
                    )
                    raise RuntimeError("rolled back")
            async with engine.connect() as conn:
                assert (await conn.execute(sa.text("SELECT COUNT(*) FROM t_order"))).scalar() == 2
            async with engine.begin() as conn:
                await conn.execute(sa.text("DROP TABLE t_order"))
        finally:
            await engine.dispose()

    asyncio.run(scenario())
    for server in servers:
        assert server.sql("XA RECOVER") == []
