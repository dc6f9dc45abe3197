"""Failover on real MariaDB: a replica stops, a replica is promoted and the old primary stops.

Dynamic read/write splitting with DatabaseDiscovery (``MySQL.NORMAL_REPLICATION``, probes every
second). The timings are printed for the report (``-s``).
"""

from __future__ import annotations

import threading
import time

import pytest
import sqlalchemy as sa

from opensergo.database import create_engine, describe
from opensergo.database.rules import DatabaseRules
from opensergo.spec.loader import parse_documents
from tests.integration.database import yamls
from tests.integration.database.servers import MariaDBCluster, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

SERVER_ID = sa.text("SELECT @@server_id")


def dynamic_rules(cluster: MariaDBCluster, rules: DatabaseRules) -> None:
    names = ["ds_0", "ds_1", "ds_2"]
    docs = [yamls.endpoint(n, s.jdbc("app")) for n, s in zip(names, cluster.servers, strict=True)]
    docs.append(yamls.dynamic_rw("rw", "replica_group", names, "MySQL.NORMAL_REPLICATION"))
    docs.append(yamls.virtual_database("readwrite_db", rw="rw"))
    rules.replace(parse_documents("\n".join(docs), source="<test>"), namespace="default")


class Load:
    """Threads running statements in a loop, recording where they ran and every failure."""

    def __init__(self, work: object, threads: int = 2) -> None:
        self.work = work
        self.results: list[tuple[float, object]] = []
        self.errors: list[BaseException] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                value = self.work()  # type: ignore[operator]
                self.results.append((time.monotonic(), value))
            except BaseException as e:  # recorded: the test asserts there are none
                self.errors.append(e)
            time.sleep(0.005)

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=30)


def test_replica_stopped_reads_move_without_a_failed_statement(own_mariadb: MariaDBCluster) -> None:
    cluster = own_mariadb
    rules = DatabaseRules()
    dynamic_rules(cluster, rules)
    engine = create_engine("readwrite_db", rules=rules, wait=10)
    try:
        wait_for(
            lambda: set(describe(engine)["discovery"][0]["replicas"]) == {"ds_1", "ds_2"}, what="replicas"
        )

        def read() -> object:
            with engine.connect() as conn:
                return conn.execute(SERVER_ID).scalar()

        with Load(read, threads=3) as load:
            wait_for(lambda: {v for _, v in load.results} == {2, 3}, what="reads on both replicas")
            stopped_at = time.monotonic()
            cluster.replicas[0].stop()
            wait_for(lambda: describe(engine)["discovery"][0]["replicas"] == ["ds_2"], what="ds_1 leaves")
            left_at = time.monotonic()
            count = len(load.results)
            wait_for(lambda: len(load.results) > count + 50, what="more reads")
        assert load.errors == []
        after = {v for t, v in load.results if t > left_at}
        assert after == {3}
        print(f"\nreplica stopped: discovery removed it after {left_at - stopped_at:.2f} s; "
              f"{len(load.results)} reads, 0 failed")  # fmt: skip
    finally:
        engine.dispose()


def test_promoted_replica_takes_the_writes(own_mariadb: MariaDBCluster) -> None:
    cluster = own_mariadb
    rules = DatabaseRules()
    dynamic_rules(cluster, rules)
    engine = create_engine("readwrite_db", rules=rules, wait=10, failover_timeout=15)
    counter = iter(range(1, 1_000_000))

    def write() -> object:
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO t_item (note) VALUES (:n)"), {"n": f"w{next(counter)}"})
            return conn.execute(SERVER_ID).scalar()

    try:
        assert {write() for _ in range(5)} == {1}
        cluster.wait_replicated()
        new_primary, other = cluster.replicas
        cluster.promote(new_primary)
        cluster.primary.stop()
        stopped_at = time.monotonic()
        cluster.replicate(other, new_primary)
        first = write()  # waits for discovery to see the new primary, then succeeds
        failover = time.monotonic() - stopped_at
        assert first == new_primary.server_id
        with Load(write, threads=2) as load:
            wait_for(lambda: len(load.results) >= 40, what="writes on the new primary")
        assert load.errors == []
        assert {v for _, v in load.results} == {new_primary.server_id}
        rows = new_primary.sql("SELECT COUNT(*) AS n FROM app.t_item")[0]["n"]
        assert rows >= 5 + 1 + 40
        print(f"\npromotion: first write after the old primary stopped succeeded in {failover:.2f} s")
    finally:
        engine.dispose()
