"""Unit tests of opensergo.database: encryptor vectors, rewrites, JDBC URLs, the plan cache,
shadow decisions, load balancers and the heartbeat cron."""

from __future__ import annotations

import random

import pytest

from opensergo.database.discovery import parse_cron
from opensergo.database.encrypt import AESEncryptor, EncryptRule, MD5Encryptor, plan_rewrite
from opensergo.database.errors import ConfigurationError, UnsupportedStatementError
from opensergo.database.readwrite import RoundRobin, WeightBalancer
from opensergo.database.shadow import ShadowRule
from opensergo.database.statement import PlanCache, analyze, hint_pairs, ss_hints
from opensergo.database.urls import translate
from opensergo.governance.routing.lanes import LaneMark
from opensergo.spec.loader import parse_documents

pytestmark = pytest.mark.unit

ENCRYPTION = """
apiVersion: database.opensergo.io/v1alpha1
kind: Encryption
metadata: {name: enc}
spec:
  encryptors:
    aes: {type: AES, props: {aes-key-value: 123456abc}}
    md5: {type: MD5}
  tables:
    t_user:
      columns:
        phone: {cipherColumn: phone_cipher, plainColumn: phone_plain, assistedQueryColumn: phone_assist,
                encryptorName: aes}
        pwd: {cipherColumn: pwd_cipher, encryptorName: md5}
"""


def rule(text: str = ENCRYPTION) -> EncryptRule:
    [obj] = parse_documents(text, source="<test>")
    return EncryptRule.compile(obj)  # type: ignore[arg-type]


# --- encryptors (vectors from ShardingSphere's tests, reference doc §4) ---


def test_aes_vectors() -> None:
    assert AESEncryptor({"aes-key-value": "test"}).encrypt("test") == "dSpPiyENQGDUXMKFMJPGWA=="
    aes = AESEncryptor({"aes-key-value": "123456abc"})
    assert aes.encrypt("abc") == "xdpUjIyP5dJQfX+2tOVbYg=="
    assert aes.decrypt("xdpUjIyP5dJQfX+2tOVbYg==") == "abc"
    assert aes.encrypt(None) is None and aes.decrypt(None) is None
    assert aes.decrypt(aes.encrypt(12345)) == "12345"  # String.valueOf; decrypt returns a string
    assert aes.encrypt(True) == aes.encrypt("true")
    with pytest.raises(ConfigurationError):
        AESEncryptor({})


def test_md5_vectors() -> None:
    assert MD5Encryptor({}).encrypt("test") == "098f6bcd4621d373cade4e832627b4f6"
    assert MD5Encryptor({"salt": "202cb962ac5907"}).encrypt("test") == "0c243d2934937738f36514035d95344a"
    assert MD5Encryptor({}).decrypt("098f6bcd4621d373cade4e832627b4f6") == "098f6bcd4621d373cade4e832627b4f6"


# --- rewrites ---


def rewrite(sql: str, text: str = ENCRYPTION) -> tuple[str, dict[str, object]]:
    plan = plan_rewrite(rule(text), analyze(sql, "mysql"), "mysql")
    assert plan is not None
    return plan.sql, plan.bind({"phone": "abc", "p": "abc", "id": 1, "a": "abc", "b": "x"})


def test_insert_stores_cipher_plain_and_assisted() -> None:
    sql, params = rewrite("INSERT INTO t_user (id, phone) VALUES (%(id)s, %(phone)s)")
    assert sql == (
        "INSERT INTO t_user (id, phone_cipher, phone_plain, phone_assist) "
        "VALUES (%(id)s, %(phone__os_e1)s, %(phone)s, %(phone__os_e2)s)"
    )
    assert params["phone__os_e1"] == "xdpUjIyP5dJQfX+2tOVbYg==" and params["phone"] == "abc"


def test_select_decrypts_under_the_logic_name_and_rewrites_predicates() -> None:
    plan = plan_rewrite(rule(), analyze("SELECT id, phone FROM t_user WHERE phone = %(p)s", "mysql"), "mysql")
    assert plan is not None
    assert plan.sql == "SELECT id, phone_cipher AS phone FROM t_user WHERE phone_assist = %(p__os_e1)s"
    assert plan.decrypt_row((1, "xdpUjIyP5dJQfX+2tOVbYg==")) == (1, "abc")


def test_md5_column_compares_the_cipher_literal_and_in_lists() -> None:
    sql, _ = rewrite("SELECT id FROM t_user WHERE pwd IN ('x', 'y') AND pwd IS NOT NULL")
    assert "pwd_cipher IN ('9dd4e461268c8034f5c8564e155c67a6', '415290769594460e2e485922904f345d')" in sql
    assert "NOT pwd_cipher IS NULL" in sql


def test_update_sets_every_stored_column() -> None:
    sql, _ = rewrite("UPDATE t_user SET phone = %(p)s WHERE id = %(id)s")
    assert sql == (
        "UPDATE t_user SET phone_cipher = %(p__os_e1)s, phone_plain = %(p)s, phone_assist = %(p__os_e2)s "
        "WHERE id = %(id)s"
    )


def test_positional_parameters() -> None:
    plan = plan_rewrite(rule(), analyze("DELETE FROM t_user WHERE phone = %s AND id = %s", "mysql"), "mysql")
    assert plan is not None
    assert plan.bind(("abc", 3)) == {"__os_p0": "abc", "__os_p1": 3, "__os_p0__os_e1": AESEncryptor(
        {"aes-key-value": "123456abc"}).encrypt("abc")}  # fmt: skip


def test_query_with_cipher_column_false_uses_the_plain_column() -> None:
    sql, _ = rewrite(
        "SELECT phone FROM t_user WHERE phone = %(p)s", ENCRYPTION + "  queryWithCipherColumn: false\n"
    )
    assert sql == "SELECT phone_plain AS phone FROM t_user WHERE phone_plain = %(p)s"


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT id FROM t_user WHERE phone LIKE %(p)s",
        "SELECT id FROM t_user WHERE phone > %(p)s",
        "SELECT id FROM t_user WHERE phone BETWEEN 'a' AND 'b'",
        "SELECT id FROM t_user ORDER BY phone",
        "SELECT count(phone) FROM t_user",
        "SELECT * FROM t_user",
        "INSERT INTO t_user VALUES (1, 'abc')",
        "INSERT INTO t_user (id, phone) SELECT id, name FROM other",
        "SELECT id FROM t_user WHERE phone = name",
        "SELECT id FROM t_user WHERE phone = upper(%(p)s)",
        "SELEC phone FROM t_user",  # unparsable but names the table
    ],
)
def test_unsafe_statements_are_refused_with_the_table_and_column(sql: str) -> None:
    with pytest.raises(UnsupportedStatementError) as info:
        plan_rewrite(rule(), analyze(sql, "mysql"), "mysql")
    assert info.value.table == "t_user"
    assert "not sent" in str(info.value)


def test_statements_on_other_tables_are_untouched() -> None:
    assert (
        plan_rewrite(rule(), analyze("SELECT phone FROM t_other WHERE phone = 'x'", "mysql"), "mysql") is None
    )


# --- statement analysis and the plan cache ---


def test_classification_and_hints() -> None:
    assert not analyze("SELECT a FROM t WHERE id = %(id)s", "mysql").is_write
    assert analyze("SELECT a FROM t FOR UPDATE", "mysql").is_write
    assert analyze("SELECT a FROM t LOCK IN SHARE MODE", "mysql").locks
    assert analyze("SELECT LAST_INSERT_ID()", "mysql").is_write
    assert analyze("SAVEPOINT sa_1", "mysql").is_write
    assert analyze("CREATE TABLE x (a INT)", "mysql").kind == "ddl"
    assert not analyze("SHOW VARIABLES LIKE 'x'", "mysql").is_write
    assert analyze(
        "WITH w AS (INSERT INTO t (a) VALUES (1) RETURNING a) SELECT * FROM w", "postgresql"
    ).is_write
    st = analyze("/* SHARDINGSPHERE_HINT: WRITE_ROUTE_ONLY=true, DATA_SOURCE_NAME=ds_0 */ SELECT 1", "mysql")
    assert ss_hints(st) == {"WRITE_ROUTE_ONLY": "true", "DATA_SOURCE_NAME": "ds_0"}
    assert ss_hints(analyze("SELECT 1 /* SHARDINGSPHERE_HINT: WRITE_ROUTE_ONLY=true */", "mysql")) == {}
    pairs = hint_pairs(analyze("SELECT 1 /*shadow:true, foo:bar @TRACE_CONTEXT@x@TRACE_CONTEXT@*/", "mysql"))
    assert pairs == {"shadow": "true", "foo": "bar"}


def test_plan_cache_parses_once_and_is_bounded() -> None:
    built: list[str] = []
    cache: PlanCache[str] = PlanCache(lambda sql: built.append(sql) or sql.upper(), maxsize=4)
    for _ in range(3):
        assert cache.get("select 1") == "SELECT 1"
    assert built == ["select 1"] and cache.hits == 2 and cache.misses == 1
    for i in range(10):
        cache.get(f"select {i}")
    assert len(cache) == 4
    assert round(cache.hit_rate, 2) == round(3 / 13, 2)


# --- JDBC URLs ---


def test_jdbc_translation() -> None:
    url = translate("jdbc:mysql://db.example:3307/shop?useSSL=false&characterEncoding=utf8&connectTimeout=2500",
                    username="u", password="p@ss")  # fmt: skip
    assert url.family == "mysql"
    assert url.url.render_as_string(hide_password=False) == (
        "mysql+pymysql://u:p%40ss@db.example:3307/shop?charset=utf8mb4&connect_timeout=2"
    )
    assert "p@ss" not in url.redacted() and "p%40ss" not in url.redacted()
    assert translate("jdbc:mariadb://h/db").url.port == 3306
    pg = translate(
        "jdbc:postgresql://h:5433/app?currentSchema=s1&sslmode=disable&ApplicationName=x", username="u"
    )
    assert pg.url.drivername == "postgresql+psycopg2"
    assert dict(pg.url.query) == {
        "options": "-csearch_path=s1",
        "sslmode": "disable",
        "application_name": "x",
    }
    assert translate("jdbc:mysql://h:1/db", asynchronous=True).url.drivername == "mysql+aiomysql"
    assert translate("jdbc:postgresql://h/db", asynchronous=True).url.drivername == "postgresql+asyncpg"
    assert translate("mysql+mysqldb://h/db").url.drivername == "mysql+mysqldb"
    with pytest.raises(ConfigurationError, match="multi-host"):
        translate("jdbc:mysql://h1:3306,h2:3306/db")
    with pytest.raises(ConfigurationError, match="unsupported"):
        translate("jdbc:oracle:thin:@h:1521:db")


# --- shadow ---

SHADOW = """
apiVersion: database.opensergo.io/v1alpha1
kind: Shadow
metadata: {name: shadow}
spec:
  dataSources:
    sds: {sourceDataSourceName: ds, shadowDataSourceName: shadow_ds}
  tables:
    t_order: {dataSourceNames: [sds], shadowAlgorithmNames: [insert-match, select-regex, hint]}
    t_order_item: {dataSourceNames: [sds], shadowAlgorithmNames: [update-match]}
  defaultShadowAlgorithmName: lane
  shadowAlgorithms:
    insert-match: {type: VALUE_MATCH, props: {operation: insert, column: user_id, value: 1}}
    update-match: {type: VALUE_MATCH, props: {operation: update, column: user_id, value: 1}}
    select-regex: {type: REGEX_MATCH, props: {operation: select, column: user_id, regex: "[1]"}}
    hint: {type: SIMPLE_HINT, props: {shadow: true, foo: bar}}
    lane: {type: SIMPLE_HINT, props: {x-opensergo-traffic: Gray}}
"""


def shadow_decides(sql: str, params: object = None, lane: LaneMark | None = None) -> bool:
    [obj] = parse_documents(SHADOW, source="<test>")
    shadow = ShadowRule(obj)  # type: ignore[arg-type]
    return shadow.decide(shadow.plan(analyze(sql, "mysql")), params, lane)


def test_shadow_decisions_follow_the_spec_sample() -> None:
    assert shadow_decides("INSERT INTO t_order (user_id, order_id) VALUES (1, 10)")
    assert not shadow_decides("INSERT INTO t_order (user_id, order_id) VALUES (11, 10)")
    assert shadow_decides("INSERT INTO t_order (user_id, x) VALUES (%(u)s, 1), (%(v)s, 2)", {"u": 3, "v": 1})
    assert not shadow_decides("UPDATE t_order SET status = 'x' WHERE user_id = 1")  # no update algorithm
    assert shadow_decides("UPDATE t_order_item SET status = 'x' WHERE user_id = 1")
    assert shadow_decides("SELECT * FROM t_order WHERE user_id = %s", (1,))
    assert not shadow_decides("SELECT * FROM t_order WHERE user_id = 11")  # a full regex match
    assert shadow_decides("SELECT * FROM t_order WHERE user_id IN (5, 1)")
    assert shadow_decides("SELECT * FROM t_order WHERE x = 2 /*foo:bar, shadow:true*/")
    assert not shadow_decides("SELECT * FROM t_order WHERE x = 2 /*shadow:true*/")
    # no shadow table involved: the default (lane) algorithm decides
    assert shadow_decides("SELECT 1 FROM t_other", lane=LaneMark("Gray"))
    assert not shadow_decides("SELECT 1 FROM t_other", lane=LaneMark("Blue"))
    assert not shadow_decides("SELECT 1 FROM t_other")


# --- load balancers and cron ---


def test_round_robin_and_weight() -> None:
    rr = RoundRobin()
    assert [rr.pick(["a", "b", "c"]) for _ in range(4)] == ["a", "b", "c", "a"]
    weight = WeightBalancer({"a": 3, "b": 1}, random.Random(7))
    picks = [weight.pick(["a", "b"]) for _ in range(4000)]
    assert 0.7 < picks.count("a") / 4000 < 0.8
    assert {weight.pick(["b"]) for _ in range(10)} == {"b"}


def test_quartz_cron() -> None:
    cron = parse_cron("0/5 * * * * ?")
    first, second = cron.get_next(float), cron.get_next(float)
    assert second - first == 5
    with pytest.raises(ConfigurationError):
        parse_cron("* * * *")
