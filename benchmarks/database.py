"""opensergo.database per-statement overhead beside plain SQLAlchemy, on one real MariaDB.

Starts a MariaDB server (Debian ``mariadb-server``) on a free port in a temp dir, then times,
in interleaved rounds against the same server and the same table:

* a primary-key ``SELECT`` and an ``INSERT`` through plain ``sqlalchemy.create_engine``
  (mysql+pymysql, QueuePool);
* the same through ``opensergo.database.create_engine`` with read/write splitting only (the read
  source and the write source are the same server, so only the routing layer differs);
* the same with an Encryption rule on the selected / inserted column (AES).

Each figure is the median of ROUNDS rounds (best-of not used: the machine is shared), GC off while
timing. Then the plan-cache hit rate under a realistic ORM mix (a few dozen statement shapes
with varying parameters, IN lists of varying length).

Sharding (a second MariaDB server; ``t_bench`` sharded by ``id % 2`` over both, plain
SQLAlchemy on an unsharded copy on the first server):

* a point ``SELECT`` by the sharding key (one data node);
* ``ORDER BY … LIMIT 100`` over both shards (the k-way merge, nodes queried concurrently);
* a transaction inserting one row on each shard, committed locally and with XA (two-phase).

Usage: python benchmarks/database.py [STATEMENTS_PER_ROUND] [ROUNDS]
Targets: routing <= 5 %, with encryption <= 15 %, sharded point select <= 10 % over plain SQLAlchemy.
"""

from __future__ import annotations

import gc
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from opensergo.database import create_engine, describe  # noqa: E402
from opensergo.database.rules import DatabaseRules  # noqa: E402
from opensergo.spec.loader import parse_documents  # noqa: E402
from tests.integration.database.servers import PASSWORD, USER, MariaDBCluster  # noqa: E402

RULES = """
apiVersion: database.opensergo.io/v1alpha1
kind: DatabaseEndpoint
metadata: {{name: ds}}
spec:
  database:
    MySQL: {{url: "{jdbc}", username: {user}, password: {password}, maxPoolSize: 4}}
---
apiVersion: database.opensergo.io/v1alpha1
kind: ReadWriteSplitting
metadata: {{name: rw}}
spec:
  rules:
    staticStrategy: {{writeDataSourceName: ds, readDataSourceNames: [ds]}}
---
apiVersion: database.opensergo.io/v1alpha1
kind: Encryption
metadata: {{name: enc}}
spec:
  encryptors:
    aes: {{type: AES, props: {{aes-key-value: 123456abc}}}}
  tables:
    t_enc:
      columns:
        phone: {{cipherColumn: phone_cipher, encryptorName: aes}}
    t_ins_enc:
      columns:
        phone: {{cipherColumn: phone_cipher, encryptorName: aes}}
---
apiVersion: database.opensergo.io/v1alpha1
kind: VirtualDatabase
metadata: {{name: bench}}
spec:
  services:
    - name: routing_db
      databaseMySQL: {{db: bench, host: 127.0.0.1, port: {port}}}
      readWriteSplitting: rw
    - name: encrypt_db
      databaseMySQL: {{db: bench, host: 127.0.0.1, port: {port}}}
      readWriteSplitting: rw
      encryption: enc
"""

SELECT_PLAIN = sa.text("SELECT id, phone FROM t_plain WHERE id = :id")
SELECT_ENC = sa.text("SELECT id, phone FROM t_enc WHERE id = :id")


def timed(fn: Callable[[int], None], n: int) -> float:
    return timed_both(fn, n)[0]


def timed_both(fn: Callable[[int], None], n: int, start: int = 0) -> tuple[float, float]:
    """(wall, CPU of this process) microseconds per call; the CPU figure is what the routing
    layer adds on the client, unaffected by other load on a shared machine."""
    gc.collect()
    gc.disable()
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(start, start + n):
            fn(i)
        return (time.perf_counter() - wall) / n * 1e6, (time.process_time() - cpu) / n * 1e6
    finally:
        gc.enable()


def interleaved(
    cases: dict[str, tuple[Callable[[int], None], int]], rounds: int, slices: int = 20
) -> tuple[dict[str, float], dict[str, float]]:
    """Median (wall, CPU) microseconds per call of each case over ``rounds`` rounds. Each round
    runs every case's count in ``slices`` slices, the cases taking turns slice by slice, so that
    load changes on a shared machine hit every case alike instead of whichever ran then."""
    samples: dict[str, list[tuple[float, float]]] = {k: [] for k in cases}
    for _ in range(rounds):
        totals = {k: [0.0, 0.0] for k in cases}
        for part in range(slices):
            for name, (fn, count) in cases.items():
                size = count // slices + (1 if part < count % slices else 0)
                if size:
                    wall, cpu = timed_both(fn, size, start=part * (count // slices + 1))
                    totals[name][0] += wall * size
                    totals[name][1] += cpu * size
        for name, (_, count) in cases.items():
            samples[name].append((totals[name][0] / count, totals[name][1] / count))
    wall_med = {k: statistics.median(w for w, _ in v) for k, v in samples.items()}
    cpu_med = {k: statistics.median(c for _, c in v) for k, v in samples.items()}
    return wall_med, cpu_med


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    base = Path(tempfile.mkdtemp(prefix="opensergo-bench-db-"))
    cluster = MariaDBCluster(base / "a", replicas=0)
    second = MariaDBCluster(base / "b", replicas=0)
    cluster.start()
    second.start()
    try:
        cluster.primary.sql(
            "CREATE DATABASE bench",
            "USE bench",
            "CREATE TABLE t_plain (id INT PRIMARY KEY, phone VARCHAR(128))",
            "CREATE TABLE t_enc (id INT PRIMARY KEY, phone_cipher VARCHAR(128))",
            "CREATE TABLE t_ins (id INT AUTO_INCREMENT PRIMARY KEY, phone VARCHAR(128))",
            "CREATE TABLE t_ins_enc (id INT AUTO_INCREMENT PRIMARY KEY, phone_cipher VARCHAR(128))",
        )
        run(cluster, n, rounds)
        run_sharding(cluster, second, n, rounds, base / "xa-log")
    finally:
        cluster.stop()
        second.stop()


def run(cluster: MariaDBCluster, n: int, rounds: int) -> None:
    port = cluster.primary.port
    jdbc = cluster.primary.jdbc("bench")
    rules = DatabaseRules()
    text = RULES.format(jdbc=jdbc, user=USER, password=PASSWORD, port=port)
    rules.replace(parse_documents(text, source="<bench>"), namespace="default")
    plain = sa.create_engine(f"mysql+pymysql://{USER}:{PASSWORD}@127.0.0.1:{port}/bench?charset=utf8mb4")
    routing = create_engine("routing_db", rules=rules)
    encrypt = create_engine("encrypt_db", rules=rules)
    with plain.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO t_plain VALUES (:id, :p)"),
            [{"id": i, "p": f"1380000{i:04d}"} for i in range(100)],
        )
    with encrypt.begin() as conn:
        conn.execute(sa.text("INSERT INTO t_enc (id, phone) VALUES (:id, :p)"),
                     [{"id": i, "p": f"1380000{i:04d}"} for i in range(100)])  # fmt: skip

    def select(engine: sa.Engine, query: sa.TextClause) -> Callable[[int], None]:
        def go(i: int) -> None:
            with engine.connect() as conn:
                conn.execute(query, {"id": i % 100}).all()

        return go

    def insert(engine: sa.Engine, table: str) -> Callable[[int], None]:
        query = sa.text(f"INSERT INTO {table} (phone) VALUES (:p)")

        def go(i: int) -> None:
            with engine.begin() as conn:
                conn.execute(query, {"p": f"139{i:08d}"})

        return go

    cases = {
        "select plain": select(plain, SELECT_PLAIN),
        "select routing": select(routing, SELECT_PLAIN),
        "select encrypt": select(encrypt, SELECT_ENC),
        "insert plain": insert(plain, "t_ins"),
        "insert routing": insert(routing, "t_ins"),
        "insert encrypt": insert(encrypt, "t_ins_enc"),
    }
    for fn in cases.values():  # warm up pools, compiled caches, plan caches
        timed(fn, 200)
    med, cpu = interleaved({k: (fn, n) for k, fn in cases.items()}, rounds)
    version = cluster.primary.sql("SELECT VERSION() AS v")[0]["v"]
    print(f"MariaDB {version}, {n} statements x {rounds} rounds (median)")
    print("cpu = this process's CPU per statement")
    print(f"{'statement':<10} {'plain SQLAlchemy':>18} {'routing':>18} {'routing+encrypt':>18}")
    for kind in ("select", "insert"):
        for figures, label in ((med, kind), (cpu, f"{kind} cpu")):
            p, r, e = figures[f"{kind} plain"], figures[f"{kind} routing"], figures[f"{kind} encrypt"]
            print(f"{label:<10} {p:>15.1f} us {r:>9.1f} us ({100 * (r / p - 1):+.1f} %) "
                  f"{e:>9.1f} us ({100 * (e / p - 1):+.1f} %)")  # fmt: skip
    mix(encrypt)
    for engine in (plain, routing, encrypt):
        engine.dispose()


def mix(engine: sa.Engine) -> None:
    """Plan-cache hit rate under a realistic mix of ORM-style statements."""
    rng = random.Random(1)
    state = describe(engine)["runtime"]["plan_cache"]
    before_hits, before_misses = state["hits"], state["misses"]
    t = sa.table("t_plain", sa.column("id"), sa.column("phone"))
    e = sa.table("t_enc", sa.column("id"), sa.column("phone"))
    shapes: list[Callable[[sa.Connection], object]] = [
        lambda c: c.execute(sa.select(t.c.phone).where(t.c.id == rng.randrange(100))).all(),
        lambda c: c.execute(sa.select(e.c.id, e.c.phone).where(e.c.id == rng.randrange(100))).all(),
        lambda c: c.execute(sa.select(e.c.id).where(e.c.phone == f"1380000{rng.randrange(100):04d}")).all(),
        lambda c: c.execute(
            sa.select(t.c.id).where(t.c.id.in_(rng.sample(range(100), rng.randrange(1, 8))))
        ).all(),
        lambda c: c.execute(sa.select(sa.func.count()).select_from(t)).all(),
        lambda c: c.execute(sa.select(t).order_by(t.c.id).limit(rng.choice([5, 10, 20]))).all(),
        lambda c: c.execute(sa.update(t).where(t.c.id == rng.randrange(100)).values(phone="x")),
        lambda c: c.execute(sa.update(e).where(e.c.id == rng.randrange(100)).values(phone="y")),
    ]
    ops = 5000
    for _ in range(ops):
        with engine.begin() as conn:
            rng.choice(shapes)(conn)
    state = describe(engine)["runtime"]["plan_cache"]
    hits, misses = state["hits"] - before_hits, state["misses"] - before_misses
    rate = 100 * hits / (hits + misses)
    print(f"plan cache, {len(shapes)} ORM statement shapes, {ops} statements: hit rate {rate:.2f} % "
          f"({misses} parses, {state['size']} plans cached)")  # fmt: skip


SHARDING_RULES = """
apiVersion: database.opensergo.io/v1alpha1
kind: DatabaseEndpoint
metadata: {{name: ds_0}}
spec:
  database:
    MySQL: {{url: "{jdbc_0}", username: {user}, password: {password}, maxPoolSize: 8}}
---
apiVersion: database.opensergo.io/v1alpha1
kind: DatabaseEndpoint
metadata: {{name: ds_1}}
spec:
  database:
    MySQL: {{url: "{jdbc_1}", username: {user}, password: {password}, maxPoolSize: 8}}
---
apiVersion: database.opensergo.io/v1alpha1
kind: Sharding
metadata: {{name: bench_shards}}
spec:
  tables:
    t_bench:
      actualDataNodes: "ds_${{0..1}}.t_bench"
      databaseStrategy:
        standard: {{shardingColumn: id, shardingAlgorithmName: by_id}}
  shardingAlgorithms:
    by_id: {{type: INLINE, props: {{algorithm-expression: "ds_${{id % 2}}"}}}}
---
apiVersion: database.opensergo.io/v1alpha1
kind: DistributedTransaction
metadata: {{name: two_phase}}
spec:
  transaction: {{defaultType: xa}}
---
apiVersion: database.opensergo.io/v1alpha1
kind: VirtualDatabase
metadata: {{name: shards}}
spec:
  services:
    - name: shard_local
      databaseMySQL: {{db: shard, host: 127.0.0.1, port: 3306}}
      sharding: bench_shards
    - name: shard_xa
      databaseMySQL: {{db: shard, host: 127.0.0.1, port: 3306}}
      sharding: bench_shards
      distributedTransaction: two_phase
"""

BENCH_TABLE = "CREATE TABLE {name} (id BIGINT PRIMARY KEY, v INT, note VARCHAR(32))"


def run_sharding(first: MariaDBCluster, second: MariaDBCluster, n: int, rounds: int, log_dir: Path) -> None:  # noqa: C901 (complexity debt, see pyproject [tool.ruff.lint.mccabe])
    for cluster in (first, second):
        cluster.primary.sql("CREATE DATABASE shard", "USE shard", BENCH_TABLE.format(name="t_bench"))
    first.primary.sql("USE bench", BENCH_TABLE.format(name="t_bench"))
    rules = DatabaseRules()
    text = SHARDING_RULES.format(
        jdbc_0=first.primary.jdbc("shard"), jdbc_1=second.primary.jdbc("shard"), user=USER, password=PASSWORD
    )
    rules.replace(parse_documents(text, source="<bench>"), namespace="default")
    port = first.primary.port
    plain = sa.create_engine(f"mysql+pymysql://{USER}:{PASSWORD}@127.0.0.1:{port}/bench?charset=utf8mb4")
    local = create_engine("shard_local", rules=rules)
    xa = create_engine("shard_xa", rules=rules, transaction_log_dir=str(log_dir))
    rng = random.Random(3)
    rows = [{"id": i, "v": rng.randrange(1_000_000), "note": f"row {i}"} for i in range(20_000)]
    insert = sa.text("INSERT INTO t_bench (id, v, note) VALUES (:id, :v, :note)")
    for engine in (plain, local):
        with engine.begin() as conn:
            conn.execute(insert, rows)
    point = sa.text("SELECT id, v, note FROM t_bench WHERE id = :id")
    top = sa.text("SELECT id, v FROM t_bench ORDER BY v DESC LIMIT 100")
    counter = iter(range(1_000_000, 100_000_000, 2))

    def select(engine: sa.Engine) -> Callable[[int], None]:
        def go(i: int) -> None:
            with engine.connect() as conn:
                conn.execute(point, {"id": (i * 7919) % 20_000}).all()

        return go

    def merge(engine: sa.Engine) -> Callable[[int], None]:
        def go(i: int) -> None:
            with engine.connect() as conn:
                conn.execute(top).all()

        return go

    def commit(engine: sa.Engine) -> Callable[[int], None]:
        def go(i: int) -> None:
            key = next(counter)  # an even and an odd key: one row on each shard
            with engine.begin() as conn:
                conn.execute(insert, [{"id": key, "v": 1, "note": "t"}, {"id": key + 1, "v": 1, "note": "t"}])

        return go

    small = max(50, n // 10)  # the merge and commit cases are slower per operation
    cases: dict[str, tuple[Callable[[int], None], int]] = {
        "point plain": (select(plain), n),
        "point sharded": (select(local), n),
        "merge plain": (merge(plain), small),
        "merge sharded": (merge(local), small),
        "commit plain": (commit(plain), small),
        "commit local": (commit(local), small),
        "commit xa": (commit(xa), small),
    }
    for fn, count in cases.values():  # warm up pools, compiled caches, plan caches
        timed(fn, min(count, 100))
    med, cpu = interleaved(cases, rounds)

    def versus(name: str, base: str) -> str:
        return (
            f"{med[name]:>9.1f} us ({100 * (med[name] / med[base] - 1):+.1f} %)"
            f"  cpu {cpu[name]:>7.1f} us ({100 * (cpu[name] / cpu[base] - 1):+.1f} %)"
        )

    def alone(name: str) -> str:
        return f"{med[name]:>15.1f} us  cpu {cpu[name]:>7.1f} us"

    print(f"\nsharding over 2 MariaDB servers, {rounds} rounds (median)")
    print("plain SQLAlchemy on one unsharded server; cpu = this process's CPU per operation")
    rows_out = [
        ("point SELECT by sharding key", "point plain", "point sharded"),
        ("ORDER BY v LIMIT 100, 2 shards", "merge plain", "merge sharded"),
        ("commit 2 rows, local, 2 shards", "commit plain", "commit local"),
    ]
    for label, base, ours in rows_out:
        print(f"{label:<31} plain {alone(base)}   opensergo {versus(ours, base)}")
    label = "commit 2 rows, XA vs local"
    print(f"{label:<31} {'':>35}   opensergo {versus('commit xa', 'commit local')}")
    for engine in (plain, local, xa):
        engine.dispose()


if __name__ == "__main__":
    main()
