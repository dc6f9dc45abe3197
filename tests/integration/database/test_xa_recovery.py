"""XA recovery: a process killed with SIGKILL between prepare and commit leaves branches prepared
on the servers; the next start of an engine with the same transaction log resolves every branch,
all or nothing (MariaDB and PostgreSQL)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa

from opensergo.database import create_engine
from opensergo.database.rules import DatabaseRules
from opensergo.spec.loader import parse_documents
from tests.helpers import ROOT
from tests.integration.database import yamls
from tests.integration.database.servers import MariaDB, PostgreSQLCluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

DDL = "CREATE TABLE t_order (order_id BIGINT PRIMARY KEY, user_id INT, status VARCHAR(32))"


def run_child(rules_file: Path, log_dir: Path, mode: str, marker: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.integration.database.xa_crash",
            str(rules_file),
            str(log_dir),
            mode,
            marker,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def scenario(
    rules_text: str,
    tmp_path: Path,
    prepared: Callable[[], int],
    rows: Callable[[str], int],
) -> None:
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(rules_text)
    log_dir = tmp_path / "xa-log"
    for mode, marker, expected in (("before-decision", "lost", 0), ("after-first-commit", "kept", 2)):
        child = run_child(rules_file, log_dir, mode, marker)
        assert child.returncode == -9, (child.returncode, child.stdout, child.stderr)
        left = prepared()
        assert left >= 1, f"{mode}: no branch was left prepared"
        assert rows(marker) == (1 if mode == "after-first-commit" else 0)  # the kill left it half done
        restart = run_child(rules_file, log_dir, "recover", "")
        assert restart.returncode == 0, restart.stderr
        assert prepared() == 0, f"{mode}: branches still prepared after the restart"
        assert rows(marker) == expected, mode  # all or nothing
        assert list(log_dir.glob("*.xalog")) == [], "the dead process's log is gone once resolved"


def test_mariadb_xa_branches_are_resolved_after_kill_9(
    shard_logs: list[MariaDB], tmp_path: Path, rules: DatabaseRules
) -> None:
    servers = shard_logs
    text = "\n".join(
        [
            *(yamls.endpoint(f"ds_{i}", s.jdbc("shop")) for i, s in enumerate(servers)),
            yamls.SHARDING_DB,
            yamls.transaction("xa_tx", "xa"),
            yamls.sharding_service("sharding_db", "sharding_db", transaction="xa_tx"),
        ]
    )
    rules.replace(parse_documents(text, source="<test>"), namespace="default")
    engine = create_engine("sharding_db", rules=rules, transaction_log_dir=str(tmp_path / "setup"))
    with engine.begin() as conn:
        conn.execute(sa.text(DDL))

    def prepared() -> int:
        return sum(len(s.sql("XA RECOVER")) for s in servers)

    def rows(marker: str) -> int:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    sa.text("SELECT COUNT(*) FROM t_order WHERE status = :m"), {"m": marker}
                ).scalar()
            )

    try:
        scenario(text, tmp_path, prepared, rows)
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE IF EXISTS t_order"))
        engine.dispose()


def test_postgresql_xa_branches_are_resolved_after_kill_9(tmp_path: Path, rules: DatabaseRules) -> None:
    cluster = PostgreSQLCluster(standbys=0)  # max_prepared_transactions=10
    cluster.start()
    try:
        server = cluster.primary
        for db in ("shop0", "shop1"):
            server.sql(f"CREATE DATABASE {db} OWNER app")
        text = "\n".join(
            [
                *(yamls.endpoint(f"ds_{i}", server.jdbc(f"shop{i}"), kind="PostgreSQL") for i in range(2)),
                yamls.SHARDING_DB,
                yamls.transaction("xa_tx", "xa"),
                yamls.sharding_service("sharding_db", "sharding_db", transaction="xa_tx", kind="PostgreSQL"),
            ]
        )
        rules.replace(parse_documents(text, source="<test>"), namespace="default")
        engine = create_engine("sharding_db", rules=rules, transaction_log_dir=str(tmp_path / "setup"))
        with engine.begin() as conn:
            conn.execute(sa.text(DDL))
        with engine.begin() as conn:  # an XA commit across both databases
            conn.execute(sa.text("INSERT INTO t_order (user_id, status) VALUES (0, 'ok'), (1, 'ok')"))
        with pytest.raises(RuntimeError), engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO t_order (user_id, status) VALUES (0, 'no'), (1, 'no')"))
            raise RuntimeError("rolled back")

        def prepared() -> int:
            return len(server.sql("SELECT gid FROM pg_prepared_xacts WHERE database IN ('shop0', 'shop1')"))

        def rows(marker: str) -> int:
            with engine.connect() as conn:
                return int(
                    conn.execute(
                        sa.text("SELECT COUNT(*) FROM t_order WHERE status = :m"), {"m": marker}
                    ).scalar()
                )

        assert rows("ok") == 2 and rows("no") == 0 and prepared() == 0
        scenario(text, tmp_path, prepared, rows)
        engine.dispose()
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        cluster.stop()
        cluster.cleanup()


def test_a_lost_connection_in_phase_two_is_committed_from_a_new_one(
    shard_logs: list[MariaDB], tmp_path: Path, rules: DatabaseRules
) -> None:
    from opensergo.database.engine import state_of

    servers = shard_logs
    text = "\n".join(
        [
            *(yamls.endpoint(f"ds_{i}", s.jdbc("shop")) for i, s in enumerate(servers)),
            yamls.SHARDING_DB,
            yamls.transaction("xa_tx", "xa"),
            yamls.sharding_service("sharding_db", "sharding_db", transaction="xa_tx"),
        ]
    )
    rules.replace(parse_documents(text, source="<test>"), namespace="default")
    engine = create_engine("sharding_db", rules=rules, transaction_log_dir=str(tmp_path / "xa"))
    coordinator = state_of(engine).current().coordinator

    def kill_the_branch_connection(gtrid: str) -> None:
        # After the decision, before phase two: the server drops the connection of ds_0's branch
        # (its prepared branch survives the disconnect).
        rows = servers[0].sql("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = 'app'")
        for row in rows:
            servers[0].sql(f"KILL CONNECTION {row['ID']}")

    try:
        with engine.begin() as conn:
            conn.execute(sa.text(DDL))
        coordinator.after_decision = kill_the_branch_connection  # type: ignore[attr-defined]
        with engine.begin() as conn:
            conn.execute(
                sa.text("INSERT INTO t_order (user_id, status) VALUES (0, 'decided'), (1, 'decided')")
            )
        coordinator.after_decision = lambda gtrid: None  # type: ignore[attr-defined]
        assert servers[0].sql("XA RECOVER") == [] and servers[1].sql("XA RECOVER") == []
        with engine.connect() as conn:
            assert (
                conn.execute(sa.text("SELECT COUNT(*) FROM t_order WHERE status = 'decided'")).scalar() == 2
            )
        assert coordinator.log.pending == {}  # type: ignore[attr-defined]
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE IF EXISTS t_order"))
        engine.dispose()
