"""opensergo.database on real MariaDB servers: read/write splitting, hints, transactions,
shadow routing, encryption, live rule updates and draining (one primary, one replica)."""

from __future__ import annotations

import asyncio
import base64
import hashlib

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from opensergo.database import (
    UnsupportedStatementError,
    create_async_engine,
    create_engine,
    describe,
    primary,
)
from opensergo.database.engine import state_of
from opensergo.database.rules import DatabaseRules
from opensergo.governance.routing import lanes
from opensergo.spec.loader import parse_documents
from tests.integration.database import yamls
from tests.integration.database.servers import MariaDBCluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

SERVER_ID = sa.text("SELECT @@server_id")


def load(rules: DatabaseRules, *documents: str) -> None:
    rules.replace(parse_documents("\n".join(documents), source="<test>"), namespace="default")


def rw_rules(cluster: MariaDBCluster, rules: DatabaseRules, *extra: str) -> None:
    load(
        rules,
        yamls.endpoint("write_ds", cluster.primary.jdbc("app")),
        yamls.endpoint("read_ds_0", cluster.replicas[0].jdbc("app")),
        yamls.endpoint("shadow_ds", cluster.primary.jdbc("app_shadow")),
        yamls.static_rw("rw", "write_ds", ["read_ds_0"]),
        *extra,
    )


def test_static_read_write_splitting_hints_and_transactions(
    mariadb_logs: MariaDBCluster, rules: DatabaseRules
) -> None:
    rw_rules(mariadb_logs, rules, yamls.virtual_database("readwrite_db", rw="rw"))
    engine = create_engine("readwrite_db", rules=rules)
    try:
        with engine.connect() as conn:
            assert conn.execute(SERVER_ID).scalar() == 2  # a read: the replica
            conn.execute(sa.text("INSERT INTO t_item (note) VALUES ('x')"))
            # read-your-writes: after a write, this connection reads from the primary
            assert conn.execute(SERVER_ID).scalar() == 1
            conn.commit()
            assert conn.execute(SERVER_ID).scalar() == 1
        with engine.connect() as conn:
            assert conn.execute(SERVER_ID).scalar() == 2
            assert conn.execute(sa.text("SELECT @@server_id FROM t_item LIMIT 1 FOR UPDATE")).scalar() == 1
        with engine.connect() as conn:
            hint = "/* SHARDINGSPHERE_HINT: WRITE_ROUTE_ONLY=true */ SELECT @@server_id"
            assert conn.execute(sa.text(hint)).scalar() == 1
            assert conn.execute(SERVER_ID).scalar() == 2
            with primary():
                assert conn.execute(SERVER_ID).scalar() == 1
            assert conn.execute(SERVER_ID).scalar() == 2
        with engine.begin() as conn:  # an explicit transaction: everything on the primary
            assert conn.execute(SERVER_ID).scalar() == 1
        # ORM: autobegun session reads go to the replica; after a flush, to the primary
        with Session(engine) as session:
            assert session.execute(SERVER_ID).scalar() == 2
            session.execute(sa.text("INSERT INTO t_item (note) VALUES ('orm')"))
            assert session.execute(SERVER_ID).scalar() == 1
            session.commit()
            assert session.execute(SERVER_ID).scalar() == 1  # read-your-writes across commits
        with Session(engine) as session, session.begin():
            assert session.execute(SERVER_ID).scalar() == 1  # session.begin(): explicit
        stats = describe(engine)["runtime"]["plan_cache"]
        assert stats["hits"] > 0
    finally:
        engine.dispose()


def test_round_robin_and_weight_balancers(mariadb_logs: MariaDBCluster, rules: DatabaseRules) -> None:
    cluster = mariadb_logs
    load(
        rules,
        yamls.endpoint("write_ds", cluster.primary.jdbc("app")),
        yamls.endpoint("read_ds_0", cluster.replicas[0].jdbc("app")),
        yamls.endpoint("read_ds_1", cluster.primary.jdbc("app")),  # the primary as a second read source
        yamls.static_rw("rw", "write_ds", ["read_ds_0", "read_ds_1"]),
        yamls.virtual_database("readwrite_db", rw="rw"),
    )
    engine = create_engine("readwrite_db", rules=rules)
    try:
        with engine.connect() as conn:
            seen = [conn.execute(SERVER_ID).scalar() for _ in range(4)]
        assert seen == [2, 1, 2, 1]
        load(
            rules,
            yamls.endpoint("write_ds", cluster.primary.jdbc("app")),
            yamls.endpoint("read_ds_0", cluster.replicas[0].jdbc("app")),
            yamls.endpoint("read_ds_1", cluster.primary.jdbc("app")),
            yamls.static_rw(
                "rw", "write_ds", ["read_ds_0", "read_ds_1"], "WEIGHT", "read_ds_0: 1, read_ds_1: 0"
            ),
            yamls.virtual_database("readwrite_db", rw="rw"),
        )
        with engine.connect() as conn:
            assert {conn.execute(SERVER_ID).scalar() for _ in range(20)} == {2}
    finally:
        engine.dispose()


def test_live_update_drains_removed_endpoint_and_keeps_transactions(
    mariadb_logs: MariaDBCluster, rules: DatabaseRules
) -> None:
    cluster = mariadb_logs
    rw_rules(cluster, rules, yamls.virtual_database("readwrite_db", rw="rw"))
    engine = create_engine("readwrite_db", rules=rules)
    try:
        state = state_of(engine)
        old_pool = state.current().pools["write_ds"]
        conn = engine.connect()
        tx = conn.begin()
        conn.execute(sa.text("INSERT INTO t_item (note) VALUES ('in-flight')"))
        # the write source moves to a new endpoint (same server, another name) mid-transaction
        load(
            rules,
            yamls.endpoint("write_ds_new", cluster.primary.jdbc("app")),
            yamls.endpoint("read_ds_0", cluster.replicas[0].jdbc("app")),
            yamls.static_rw("rw", "write_ds_new", ["read_ds_0"]),
            yamls.virtual_database("readwrite_db", rw="rw"),
        )
        assert old_pool.drained
        conn.execute(sa.text("INSERT INTO t_item (note) VALUES ('same-tx')"))  # finishes where it started
        tx.commit()
        conn.close()
        assert old_pool.size == 0  # the drained pool closed its connection on release
        with engine.begin() as conn2:
            conn2.execute(sa.text("INSERT INTO t_item (note) VALUES ('after')"))
        assert set(state.current().pools) == {"write_ds_new", "read_ds_0"}
        notes = {
            r[0] for r in cluster.primary.sql("SELECT note FROM app.t_item") for r in [tuple(r.values())]
        }
        assert {"in-flight", "same-tx", "after"} <= notes
    finally:
        engine.dispose()


def _aes(key: str, value: str) -> str:
    padder = padding.PKCS7(128).padder()
    data = padder.update(value.encode()) + padder.finalize()
    enc = Cipher(algorithms.AES(hashlib.sha1(key.encode()).digest()[:16]), modes.ECB()).encryptor()
    return base64.b64encode(enc.update(data) + enc.finalize()).decode()


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "t_user"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    name: Mapped[str | None]
    phone: Mapped[str | None]
    pwd: Mapped[str | None]


def test_encryption_through_the_orm(mariadb_logs: MariaDBCluster, rules: DatabaseRules) -> None:
    cluster = mariadb_logs
    rw_rules(
        cluster,
        rules,
        yamls.ENCRYPTION,
        yamls.virtual_database("encrypt_db", rw="rw", encryption="encrypt_db"),
    )
    engine = create_engine("encrypt_db", rules=rules)
    try:
        maker = sessionmaker(engine)
        with maker.begin() as session:
            session.add_all([User(id=1, name="ann", phone="13800001111", pwd="secret"),
                             User(id=2, name="bob", phone="abc", pwd="x")])  # fmt: skip
        stored = cluster.primary.sql("SELECT * FROM app.t_user WHERE id = 2")[0]
        assert stored["phone_cipher"] == "xdpUjIyP5dJQfX+2tOVbYg=="  # ShardingSphere's AES vector
        assert stored["phone_plain"] == "abc"
        assert stored["phone_assist"] == _aes("123456abc", "abc")
        assert stored["pwd_cipher"] == hashlib.md5(b"x").hexdigest()
        cluster.wait_replicated()
        with maker() as session:
            user = session.scalars(sa.select(User).where(User.phone == "13800001111")).one()
            assert (user.id, user.name, user.phone) == (1, "ann", "13800001111")
            assert session.scalars(sa.select(User.name).where(User.pwd == "x")).all() == ["bob"]
            query = sa.text("SELECT id, phone FROM t_user WHERE phone IN (:a, :b) ORDER BY id")
            rows = session.execute(query,
                                   {"a": "abc", "b": "13800001111"}).all()  # fmt: skip
            assert [tuple(r) for r in rows] == [(1, "13800001111"), (2, "abc")]
        with maker.begin() as session:
            session.execute(sa.update(User).where(User.id == 2).values(phone="def"))
        assert cluster.primary.sql("SELECT phone_cipher FROM app.t_user WHERE id = 2")[0][
            "phone_cipher"
        ] == _aes("123456abc", "def")
        with engine.connect() as conn:
            for unsafe in (
                "SELECT id FROM t_user WHERE phone LIKE '138%%'",
                "SELECT id FROM t_user ORDER BY phone",
                "SELECT * FROM t_user",
                "SELECT id FROM t_user WHERE phone > 'a'",
            ):
                with pytest.raises(UnsupportedStatementError) as info:
                    conn.exec_driver_sql(unsafe)
                assert info.value.table == "t_user"
        assert (
            cluster.primary.sql("SELECT COUNT(*) AS n FROM app.t_user WHERE phone_plain = '138%'")[0]["n"]
            == 0
        )
    finally:
        engine.dispose()
        cluster.primary.sql("DELETE FROM app.t_user")


def test_query_with_plain_column(mariadb_logs: MariaDBCluster, rules: DatabaseRules) -> None:
    cluster = mariadb_logs
    plain = yamls.ENCRYPTION.replace("queryWithCipherColumn: true", "queryWithCipherColumn: false")
    rw_rules(cluster, rules, plain, yamls.virtual_database("encrypt_db", rw="rw", encryption="encrypt_db"))
    engine = create_engine("encrypt_db", rules=rules)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO t_user (id, phone) VALUES (7, '555')"))
        cluster.primary.sql("UPDATE app.t_user SET phone_plain = 'plain-only' WHERE id = 7")
        with engine.begin() as conn:
            # reads and predicates use the plain column
            assert (
                conn.execute(sa.text("SELECT phone FROM t_user WHERE phone = 'plain-only'")).scalar()
                == "plain-only"
            )
    finally:
        engine.dispose()
        cluster.primary.sql("DELETE FROM app.t_user")


def test_shadow_algorithms_and_lane(mariadb_logs: MariaDBCluster, rules: DatabaseRules) -> None:
    cluster = mariadb_logs
    rw_rules(cluster, rules, yamls.shadow("write_ds", "shadow_ds"),
             yamls.virtual_database("shadow_db", rw="rw", shadow="shadow_db"))  # fmt: skip
    engine = create_engine("shadow_db", rules=rules)

    def where(db: str, order_id: int) -> bool:
        return bool(cluster.primary.sql(f"SELECT 1 FROM {db}.t_order WHERE order_id = {order_id}"))

    try:
        with engine.begin() as conn:
            insert = sa.text("INSERT INTO t_order (order_id, user_id, status) VALUES (:o, :u, 'new')")
            conn.execute(insert, {"o": 1, "u": 1})  # VALUE_MATCH insert user_id=1 -> shadow
            conn.execute(insert, {"o": 2, "u": 11})  # production
            conn.execute(
                sa.text(
                    "INSERT INTO t_order (order_id, user_id, status) "
                    "VALUES (3, 5, 'x') /*shadow:true,foo:bar*/"
                )
            )
            conn.execute(
                sa.text("INSERT INTO t_order (order_id, user_id, status) VALUES (4, 5, 'x') /*shadow:true*/")
            )
        assert where("app_shadow", 1) and not where("app", 1)
        assert where("app", 2) and not where("app_shadow", 2)
        assert where("app_shadow", 3) and where("app", 4)  # SIMPLE_HINT needs every prop
        with lanes.use("loadtest"), engine.begin() as conn:  # the traffic lane
            conn.execute(sa.text("INSERT INTO t_item (note) VALUES ('lane')"))
            conn.execute(sa.text("INSERT INTO t_order (order_id, user_id, status) VALUES (5, 7, 'lane')"))
        assert where("app_shadow", 5) and not where("app", 5)
        assert cluster.primary.sql("SELECT note FROM app_shadow.t_item WHERE note = 'lane'")
        cluster.wait_replicated()
        with engine.connect() as conn:
            # REGEX_MATCH select, full match: user_id 1 -> shadow, 11 -> production
            q = sa.text("SELECT order_id FROM t_order WHERE user_id = :u")
            assert conn.execute(q, {"u": 1}).scalars().all() == [1]
            assert conn.execute(q, {"u": 11}).scalars().all() == [2]
            with lanes.use("loadtest"):
                assert conn.execute(
                    sa.text("SELECT order_id FROM t_order WHERE user_id = 7")
                ).scalars().all() == [5]
            with lanes.use("other-lane"):
                assert (
                    conn.execute(sa.text("SELECT order_id FROM t_order WHERE user_id = 7")).scalars().all()
                    == []
                )
    finally:
        engine.dispose()
        for db in ("app", "app_shadow"):
            cluster.primary.sql(f"DELETE FROM {db}.t_order", f"DELETE FROM {db}.t_item")


def test_async_engine(mariadb_logs: MariaDBCluster, rules: DatabaseRules) -> None:
    cluster = mariadb_logs
    rw_rules(
        cluster,
        rules,
        yamls.ENCRYPTION,
        yamls.virtual_database("encrypt_db", rw="rw", encryption="encrypt_db"),
    )

    async def run() -> None:
        engine = create_async_engine("encrypt_db", rules=rules)
        try:
            async with engine.connect() as conn:
                assert (await conn.execute(SERVER_ID)).scalar() == 2
            async with engine.begin() as conn:
                assert (await conn.execute(SERVER_ID)).scalar() == 1
                await conn.execute(sa.text("INSERT INTO t_user (id, phone) VALUES (30, 'abc')"))
            async with engine.begin() as conn:
                assert (
                    await conn.execute(sa.text("SELECT phone FROM t_user WHERE id = 30"))
                ).scalar() == "abc"
        finally:
            await engine.dispose()

    try:
        asyncio.run(run())
        assert cluster.primary.sql("SELECT phone_cipher FROM app.t_user WHERE id = 30")[0][
            "phone_cipher"
        ] == ("xdpUjIyP5dJQfX+2tOVbYg==")
    finally:
        cluster.primary.sql("DELETE FROM app.t_user")
