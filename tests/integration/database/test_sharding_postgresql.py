"""Sharding on PostgreSQL (two databases of one server as ds_0 and ds_1): the ORM example, whose
inserts use RETURNING here, and merge operators against an unsharded copy."""

from __future__ import annotations

import random
from collections.abc import Iterator
from decimal import Decimal

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from opensergo.database import create_engine
from opensergo.database.rules import DatabaseRules
from opensergo.spec.loader import parse_documents
from tests.integration.database import yamls
from tests.integration.database.servers import PASSWORD, USER, PostgreSQLCluster
from tests.integration.database.test_sharding_mariadb import MERGE_RULE, SALE_DDL, Base, Order, OrderItem

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def pg_shards() -> Iterator[PostgreSQLCluster]:
    cluster = PostgreSQLCluster(standbys=0)
    cluster.start()
    try:
        for db in ("shop0", "shop1", "plain"):
            cluster.primary.sql(
                f"CREATE DATABASE {db} OWNER {USER} TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'"
            )
        yield cluster
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        cluster.stop()
        cluster.cleanup()


def load(rules: DatabaseRules, cluster: PostgreSQLCluster, *documents: str) -> None:
    server = cluster.primary
    endpoints = [yamls.endpoint(f"ds_{i}", server.jdbc(f"shop{i}"), kind="PostgreSQL") for i in range(2)]
    text = "\n".join([*endpoints, *documents])
    rules.replace(parse_documents(text, source="<test>"), namespace="default")


def test_orm_example_with_returning(pg_shards: PostgreSQLCluster, rules: DatabaseRules) -> None:
    load(
        rules,
        pg_shards,
        yamls.SHARDING_DB,
        yamls.sharding_service("sharding_db", "sharding_db", kind="PostgreSQL"),
    )
    engine = create_engine("sharding_db", rules=rules)
    try:
        Base.metadata.create_all(engine)
        with Session(engine) as session:
            orders = [Order(user_id=u, status="new") for u in range(10)]
            session.add_all(orders)
            session.flush()  # INSERT … RETURNING order_id: the generated snowflake keys
            assert len({o.order_id for o in orders}) == 10
            session.add_all([OrderItem(order_id=o.order_id, user_id=o.user_id, status="i") for o in orders])
            session.commit()
            by_user = {o.user_id: o.order_id for o in orders}
        for ds in (0, 1):
            for table in (0, 1):
                found = pg_shards.primary.sql(
                    f"SELECT order_id, user_id FROM t_order_{table}", database=f"shop{ds}"
                )
                assert all(user % 2 == ds and order % 2 == table for order, user in found)
        with Session(engine) as session:
            assert session.get(Order, by_user[4]).user_id == 4
            pairs = session.execute(
                sa.select(Order.user_id, OrderItem.order_item_id)
                .join(OrderItem, Order.order_id == OrderItem.order_id)
                .order_by(Order.user_id)
            ).all()
            assert [u for u, _ in pairs] == list(range(10))
    finally:
        with engine.begin() as conn:
            for table in ("t_order", "t_order_item", "t_config"):
                conn.execute(sa.text(f"DROP TABLE IF EXISTS {table}"))
        engine.dispose()


PG_QUERIES = [
    "SELECT sale_id, shop FROM t_sale ORDER BY shop, sale_id LIMIT 10 OFFSET 5",
    # PostgreSQL: NULLs sort first on DESC
    "SELECT sale_id, amount FROM t_sale ORDER BY amount DESC, sale_id LIMIT 25",
    "SELECT sale_id, amount FROM t_sale ORDER BY amount NULLS FIRST, sale_id LIMIT 9 OFFSET 7",
    "SELECT shop, COUNT(*), SUM(amount), MIN(amount), MAX(amount), SUM(price) FROM t_sale "
    "GROUP BY shop ORDER BY shop",
    "SELECT status, COUNT(*) AS c FROM t_sale GROUP BY status ORDER BY c DESC, status LIMIT 3",
    "SELECT DISTINCT status FROM t_sale ORDER BY status",
    "SELECT COUNT(*), MIN(status), MAX(status), SUM(amount) FROM t_sale",
]


def test_merge_operators_against_an_unsharded_copy(
    pg_shards: PostgreSQLCluster, rules: DatabaseRules
) -> None:
    load(rules, pg_shards, MERGE_RULE, yamls.sharding_service("merge_db", "merge_rule", kind="PostgreSQL"))
    engine = create_engine("merge_db", rules=rules)
    plain = sa.create_engine(
        f"postgresql+psycopg2://{USER}:{PASSWORD}@127.0.0.1:{pg_shards.primary.port}/plain"
    )
    rng = random.Random(7)
    rows = [
        {
            "sale_id": i,
            "region": rng.choice(["north", "south", "asia", "africa"]),
            "shop": rng.randrange(9),
            "amount": None if rng.random() < 0.1 else rng.randrange(-50, 1000),
            "price": Decimal(rng.randrange(100, 100000)) / 100,
            "status": rng.choice(["new", "paid", "Paid", "shipped"]),
        }
        for i in rng.sample(range(1, 100000), 400)
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
        with engine.connect() as sharded, plain.connect() as reference:
            for query in PG_QUERIES:
                assert sharded.execute(sa.text(query)).all() == reference.execute(sa.text(query)).all(), query
            averages = "SELECT shop, AVG(amount) FROM t_sale GROUP BY shop ORDER BY shop"
            for (shop, got), (_, want) in zip(
                sharded.execute(sa.text(averages)), reference.execute(sa.text(averages)), strict=True
            ):
                assert got is not None and abs(got - want) < Decimal("1e-9"), shop  # numeric scale differs
    finally:
        for target in (engine, plain):
            with target.begin() as conn:
                conn.execute(sa.text("DROP TABLE IF EXISTS t_sale"))
        engine.dispose()
        plain.dispose()
