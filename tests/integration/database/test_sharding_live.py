"""A Sharding rule changed live through the control plane: ``ds_2`` is added for new keys by
range while reads run. New inserts follow the new rule, every existing row stays readable (the
new ranges only cover keys that were not written yet), and no statement fails."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from opensergo.client.client import OpenSergoClient
from opensergo.database import create_engine, describe
from opensergo.database.engine import state_of
from opensergo.database.rules import default_rules
from opensergo.governance.faulttolerance.engine import Engine
from opensergo.governance.runtime import attach
from tests.helpers import ControlPlaneProcess, run_cli
from tests.integration.database import yamls
from tests.integration.database.servers import MariaDB, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def ledger(data_nodes: str, ranges: str) -> str:
    return f"""
apiVersion: database.opensergo.io/v1alpha1
kind: Sharding
metadata: {{name: ledger_rule, labels: {{app: db-app}}}}
spec:
  tables:
    t_ledger:
      actualDataNodes: "{data_nodes}"
      databaseStrategy:
        standard: {{shardingColumn: id, shardingAlgorithmName: by_range}}
  shardingAlgorithms:
    by_range: {{type: BOUNDARY_RANGE, props: {{sharding-ranges: "{ranges}"}}}}
---"""


def test_adding_a_data_source_for_new_keys_live(
    control_plane: ControlPlaneProcess, shard_logs: list[MariaDB], tmp_path: Path
) -> None:
    servers = shard_logs
    servers[0].sql("CREATE DATABASE IF NOT EXISTS shop2")
    base = "\n".join(
        [
            yamls.endpoint("ds_0", servers[0].jdbc("shop")),
            yamls.endpoint("ds_1", servers[1].jdbc("shop")),
            yamls.endpoint("ds_2", servers[0].jdbc("shop2")),
            yamls.sharding_service("ledger_db", "ledger_rule"),
        ]
    )
    first = tmp_path / "first.yaml"
    first.write_text(base + ledger("ds_${0..1}.t_ledger", "1000"))
    second = tmp_path / "second.yaml"
    second.write_text(ledger("ds_${0..2}.t_ledger", "1000,2000"))
    server = ["--server", control_plane.http_url]
    assert run_cli("apply", "-f", str(first), *server).returncode == 0

    client = OpenSergoClient(control_plane.grpc_address, app="db-app")
    governance = attach(client, Engine(), instances=False, global_limits=False)
    governance.start()
    engine = None
    stop = threading.Event()
    errors: list[BaseException] = []
    reads = [0]
    try:
        assert governance.wait_synced(15)
        engine = create_engine("ledger_db", wait=10)
        with engine.begin() as conn:
            conn.execute(
                sa.text("CREATE TABLE IF NOT EXISTS t_ledger (id INT PRIMARY KEY, note VARCHAR(16))")
            )
            conn.execute(
                sa.text("INSERT INTO t_ledger (id, note) VALUES (:i, 'old')"),
                [{"i": i} for i in range(1, 2000, 7)],
            )
        old_ids = list(range(1, 2000, 7))

        def reader() -> None:
            k = 0
            while not stop.is_set():
                key = old_ids[k % len(old_ids)]
                k += 1
                try:
                    with engine.connect() as conn:  # type: ignore[union-attr]
                        found = conn.execute(
                            sa.text("SELECT note FROM t_ledger WHERE id = :i"), {"i": key}
                        ).all()
                    assert found == [("old",)], (key, found)
                    reads[0] += 1
                except BaseException as e:
                    errors.append(e)

        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
        wait_for(lambda: reads[0] > 20, what="reads running")
        state = state_of(engine)
        updates = state.updates
        assert run_cli("apply", "-f", str(second), *server).returncode == 0
        wait_for(lambda: state.updates > updates, timeout=15, what="the new Sharding rule applied")
        assert describe(engine)["runtime"]["sharding"]["tables"]["t_ledger"]["data_nodes"] == [
            "ds_0.t_ledger",
            "ds_1.t_ledger",
            "ds_2.t_ledger",
        ]
        shown = run_cli("describe", "sharding", "ledger_rule", "-o", "json", *server)
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["tables"]["t_ledger"]["data_nodes"][-1] == "ds_2.t_ledger"
        with engine.begin() as conn:
            conn.execute(
                sa.text("CREATE TABLE IF NOT EXISTS t_ledger (id INT PRIMARY KEY, note VARCHAR(16))")
            )
            conn.execute(
                sa.text("INSERT INTO t_ledger (id, note) VALUES (:i, 'new')"),
                [{"i": i} for i in range(2000, 2100, 3)],
            )
        count = reads[0]
        wait_for(lambda: reads[0] > count + 20, what="reads after the change")
        stop.set()
        thread.join(timeout=30)
        assert errors == []
        assert sorted(r["id"] for r in servers[0].sql("USE shop2", "SELECT id FROM t_ledger")) == list(
            range(2000, 2100, 3)
        )
        assert all(r["id"] < 1000 for r in servers[0].sql("USE shop", "SELECT id FROM t_ledger"))
        assert all(1000 <= r["id"] < 2000 for r in servers[1].sql("USE shop", "SELECT id FROM t_ledger"))
        with engine.connect() as conn:
            total = conn.execute(sa.text("SELECT COUNT(*) FROM t_ledger")).scalar()
            assert total == len(old_ids) + len(range(2000, 2100, 3))
            span = conn.execute(
                sa.text("SELECT COUNT(*) FROM t_ledger WHERE id BETWEEN 1990 AND 2010")
            ).scalar()
            assert span == len([i for i in old_ids if i >= 1990]) + len(range(2000, 2011, 3))
    finally:
        stop.set()
        if engine is not None:
            with engine.begin() as conn:
                conn.execute(sa.text("DROP TABLE IF EXISTS t_ledger"))
            engine.dispose()
        governance.detach()
        governance.stop()
        default_rules().clear()
