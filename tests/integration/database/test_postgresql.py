"""opensergo.database on real PostgreSQL: a primary and a streaming standby (pg_basebackup),
discovered by ``pg_is_in_recovery()``; promotion of the standby takes the writes."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from opensergo.database import create_engine, describe
from opensergo.database.rules import DatabaseRules
from opensergo.spec.loader import parse_documents
from tests.integration.database import yamls
from tests.integration.database.servers import PostgreSQLCluster, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

RECOVERY = sa.text("SELECT pg_is_in_recovery()")


def test_discovery_splitting_encryption_and_promotion(postgres: PostgreSQLCluster) -> None:
    cluster = postgres
    cluster.primary.sql(
        "CREATE TABLE t_user (id INT PRIMARY KEY, name TEXT, phone_cipher TEXT, phone_plain TEXT,"
        " phone_assist TEXT, pwd_cipher TEXT)",
        "CREATE TABLE t_item (item_id SERIAL PRIMARY KEY, note TEXT)",
    )
    rules = DatabaseRules()
    names = ["pg_0", "pg_1"]
    docs = [
        yamls.endpoint(n, s.jdbc("postgres"), kind="PostgreSQL")
        for n, s in zip(names, cluster.servers, strict=True)
    ]
    docs += [
        yamls.dynamic_rw("rw", "pg_group", names, "PostgreSQL.NORMAL_REPLICATION"),
        yamls.ENCRYPTION,
        yamls.virtual_database(
            "pg_db", rw="rw", encryption="encrypt_db", kind="PostgreSQL", port=cluster.primary.port
        ),
    ]
    rules.replace(parse_documents("\n".join(docs), source="<test>"), namespace="default")
    engine = create_engine("pg_db", rules=rules, wait=10, failover_timeout=15)
    try:
        wait_for(lambda: describe(engine)["discovery"][0]["replicas"] == ["pg_1"], what="standby discovered")
        assert describe(engine)["discovery"][0]["primary"] == "pg_0"
        with engine.connect() as conn:
            assert conn.execute(RECOVERY).scalar() is True  # a read: the standby
        with engine.begin() as conn:
            assert conn.execute(RECOVERY).scalar() is False
            conn.execute(sa.text("INSERT INTO t_user (id, phone) VALUES (1, 'abc')"))
        assert cluster.primary.sql("SELECT phone_cipher FROM t_user")[0][0] == "xdpUjIyP5dJQfX+2tOVbYg=="
        wait_for(lambda: cluster.standbys[0].sql("SELECT count(*) FROM t_user")[0][0] == 1, what="replay")
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT phone FROM t_user WHERE phone = 'abc'")).scalar() == "abc"

        cluster.standbys[0].sql("SELECT pg_promote()")
        cluster.primary.stop()
        stopped_at = time.monotonic()
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO t_item (note) VALUES ('after promotion')"))
            assert conn.execute(RECOVERY).scalar() is False
        failover = time.monotonic() - stopped_at
        for i in range(20):
            with engine.begin() as conn:
                conn.execute(sa.text("INSERT INTO t_item (note) VALUES (:n)"), {"n": f"n{i}"})
        assert cluster.standbys[0].sql("SELECT count(*) FROM t_item")[0][0] == 21
        assert describe(engine)["discovery"][0]["primary"] == "pg_1"
        print(
            f"\nPostgreSQL promotion: first write after the old primary stopped succeeded in {failover:.2f} s"
        )
    finally:
        engine.dispose()
