"""Fixtures: real MariaDB / PostgreSQL clusters, logs printed when a test fails."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from opensergo.database.rules import DatabaseRules
from tests.integration.database.servers import MariaDB, MariaDBCluster, PostgreSQLCluster

SCHEMA = (
    "CREATE TABLE t_user (id INT PRIMARY KEY, name VARCHAR(64), phone_cipher VARCHAR(128), "
    "phone_plain VARCHAR(64), phone_assist VARCHAR(128), pwd_cipher VARCHAR(64))",
    "CREATE TABLE t_order (order_id INT PRIMARY KEY, user_id INT, status VARCHAR(32))",
    "CREATE TABLE t_item (item_id INT AUTO_INCREMENT PRIMARY KEY, note VARCHAR(64))",
)


def _print_on_failure(request: pytest.FixtureRequest, logs: str) -> None:
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(logs)


@pytest.fixture(scope="module")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDBCluster]:
    """A primary and one replica, shared by a module; databases ``app`` and ``app_shadow``."""
    cluster = MariaDBCluster(tmp_path_factory.mktemp("mariadb"), replicas=1)
    cluster.start()
    for database in ("app", "app_shadow"):
        cluster.primary.sql(f"CREATE DATABASE {database}", f"USE {database}", *SCHEMA)
    cluster.wait_replicated()
    yield cluster
    cluster.stop()


@pytest.fixture
def mariadb_logs(request: pytest.FixtureRequest, mariadb: MariaDBCluster) -> Iterator[MariaDBCluster]:
    yield mariadb
    _print_on_failure(request, mariadb.logs())


@pytest.fixture
def own_mariadb(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[MariaDBCluster]:
    """A primary and two replicas for one test (failover tests stop and promote servers)."""
    cluster = MariaDBCluster(tmp_path / "mariadb", replicas=2)
    cluster.start()
    cluster.primary.sql("CREATE DATABASE app", "USE app", *SCHEMA)
    cluster.wait_replicated()
    yield cluster
    cluster.stop()
    _print_on_failure(request, cluster.logs())


@pytest.fixture
def postgres(request: pytest.FixtureRequest) -> Iterator[PostgreSQLCluster]:
    cluster = PostgreSQLCluster(standbys=1)
    cluster.start()
    yield cluster
    cluster.stop()
    _print_on_failure(request, cluster.logs())
    cluster.cleanup()


@pytest.fixture
def rules() -> DatabaseRules:
    """A private rule set (tests never share the process-wide one)."""
    return DatabaseRules()


@pytest.fixture(scope="module")
def shard_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[MariaDB]]:
    """Two independent MariaDB servers for data sources ds_0 and ds_1 (database ``shop``), and a
    database ``plain`` on the first for unsharded copies of the data."""
    clusters = [MariaDBCluster(tmp_path_factory.mktemp(f"shard{i}"), replicas=0) for i in range(2)]
    try:
        for cluster in clusters:
            cluster.start()
            cluster.primary.sql("CREATE DATABASE shop")
        clusters[0].primary.sql("CREATE DATABASE plain")
        yield [c.primary for c in clusters]
    finally:
        for cluster in clusters:
            cluster.stop()


@pytest.fixture
def shard_logs(request: pytest.FixtureRequest, shard_servers: list[MariaDB]) -> Iterator[list[MariaDB]]:
    yield shard_servers
    _print_on_failure(request, "\n".join(s.logs() for s in shard_servers))
