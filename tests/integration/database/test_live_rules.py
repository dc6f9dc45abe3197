"""A rule changed with the CLI during a running load, against a real control-plane process:
no statement fails, and the new rule is used within 1 s of being applied (the SDK applies a push
before it ACKs it)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from opensergo.client.client import OpenSergoClient
from opensergo.database import create_engine
from opensergo.database.engine import state_of
from opensergo.database.rules import default_rules
from opensergo.governance.faulttolerance.engine import Engine
from opensergo.governance.runtime import attach
from tests.helpers import ControlPlaneProcess, run_cli
from tests.integration.database import yamls
from tests.integration.database.servers import MariaDBCluster, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def test_rule_changed_with_the_cli_during_load(
    control_plane: ControlPlaneProcess, mariadb_logs: MariaDBCluster, tmp_path: Path
) -> None:
    cluster = mariadb_logs
    endpoints = "\n".join(
        [
            yamls.endpoint("write_ds", cluster.primary.jdbc("app")),
            yamls.endpoint("read_ds_0", cluster.replicas[0].jdbc("app")),
            yamls.endpoint("read_ds_1", cluster.primary.jdbc("app")),
            yamls.virtual_database("readwrite_db", rw="rw"),
        ]
    )
    first = tmp_path / "first.yaml"
    first.write_text(endpoints + yamls.static_rw("rw", "write_ds", ["read_ds_0"]))
    second = tmp_path / "second.yaml"
    second.write_text(yamls.static_rw("rw", "write_ds", ["read_ds_1"]))
    server = ["--server", control_plane.http_url]
    assert run_cli("apply", "-f", str(first), *server).returncode == 0

    client = OpenSergoClient(control_plane.grpc_address, app="db-app")
    governance = attach(client, Engine(), instances=False, global_limits=False)
    governance.start()
    engine = None
    try:
        assert governance.wait_synced(15)
        engine = create_engine("readwrite_db", wait=10)
        state = state_of(engine)
        results: list[tuple[float, float, int]] = []
        errors: list[BaseException] = []
        stop = threading.Event()

        def load() -> None:
            while not stop.is_set():
                started = time.monotonic()
                try:
                    with engine.connect() as conn:  # type: ignore[union-attr]
                        value = conn.execute(sa.text("SELECT @@server_id")).scalar()
                    results.append((started, time.monotonic(), int(value)))
                    with engine.begin() as conn:  # type: ignore[union-attr]
                        conn.execute(sa.text("INSERT INTO t_item (note) VALUES ('live')"))
                except BaseException as e:
                    errors.append(e)

        threads = [threading.Thread(target=load, daemon=True) for _ in range(2)]
        for t in threads:
            t.start()
        wait_for(lambda: len(results) > 20, what="load running")
        assert {v for _, _, v in results} == {2}
        updates = state.updates
        assert run_cli("apply", "-f", str(second), *server).returncode == 0
        wait_for(lambda: state.updates > updates, timeout=10, what="the push applied")
        applied = state.updated_at
        assert applied is not None
        wait_for(
            lambda: any(v == 1 for s, _, v in results if s >= applied), timeout=5, what="the new rule used"
        )
        first_new = min(end for s, end, v in results if s >= applied and v == 1)
        count = len(results)
        wait_for(lambda: len(results) > count + 20, what="more statements")
        stop.set()
        for t in threads:
            t.join(timeout=30)
        assert errors == []
        assert first_new - applied <= 1.0
        assert {v for s, _, v in results if s >= applied} == {1}  # every statement started after uses it
        print(f"\nlive rule: new read source used {1000 * (first_new - applied):.1f} ms after the push")
    finally:
        stop_engine = engine
        if stop_engine is not None:
            stop_engine.dispose()
        governance.detach()
        governance.stop()
        default_rules().clear()
