"""A FastAPI app writes and reads through create_engine; the lane header set at the edge sends a
load test's statements to the shadow database (SIMPLE_HINT on the traffic lane)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from opensergo.database import create_engine
from opensergo.database.rules import DatabaseRules
from opensergo.governance.faulttolerance.engine import Engine
from opensergo.integrations.asgi import OpenSergoMiddleware
from opensergo.spec.loader import parse_documents
from tests.integration.database import yamls
from tests.integration.database.servers import MariaDBCluster

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_lane_header_routes_to_the_shadow_database(
    mariadb_logs: MariaDBCluster, rules: DatabaseRules
) -> None:
    cluster = mariadb_logs
    docs = [
        yamls.endpoint("write_ds", cluster.primary.jdbc("app")),
        yamls.endpoint("read_ds_0", cluster.replicas[0].jdbc("app")),
        yamls.endpoint("shadow_ds", cluster.primary.jdbc("app_shadow")),
        yamls.static_rw("rw", "write_ds", ["read_ds_0"]),
        yamls.shadow("write_ds", "shadow_ds", lane="stress"),
        yamls.virtual_database("shop_db", rw="rw", shadow="shadow_db"),
    ]
    rules.replace(parse_documents("\n".join(docs), source="<test>"), namespace="default")
    engine = create_engine("shop_db", rules=rules)
    app = FastAPI()

    @app.post("/orders/{order_id}")
    def create_order(order_id: int) -> dict[str, object]:  # sync: runs in the threadpool
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO t_order (order_id, user_id, status) VALUES (:o, 5, 'new')"),
                         {"o": order_id})  # fmt: skip
            status = conn.execute(sa.text("SELECT status FROM t_order WHERE order_id = :o"), {"o": order_id})
            return {"order_id": order_id, "status": status.scalar()}

    @app.get("/orders/{order_id}")
    async def read_order(order_id: int) -> dict[str, object]:
        with engine.connect() as conn:
            row = conn.execute(sa.text("SELECT status FROM t_order WHERE order_id = :o"), {"o": order_id})
            return {"status": row.scalar()}

    client = TestClient(OpenSergoMiddleware(app, engine=Engine()))
    try:
        assert client.post("/orders/100").json() == {"order_id": 100, "status": "new"}
        lane = {"x-opensergo-traffic": "stress"}
        assert client.post("/orders/200", headers=lane).json() == {"order_id": 200, "status": "new"}
        baggage = {"baggage": "x-opensergo-traffic=stress"}
        assert client.post("/orders/300", headers=baggage).json()["status"] == "new"
        prod = {r["order_id"] for r in cluster.primary.sql("SELECT order_id FROM app.t_order")}
        shadow = {r["order_id"] for r in cluster.primary.sql("SELECT order_id FROM app_shadow.t_order")}
        assert prod == {100}
        assert shadow == {200, 300}
        cluster.wait_replicated()
        assert client.get("/orders/200", headers=lane).json() == {"status": "new"}  # read from the shadow
        assert client.get("/orders/200").json() == {"status": None}  # production has no such row
        assert client.get("/orders/100").json() == {"status": "new"}
    finally:
        engine.dispose()
        for db in ("app", "app_shadow"):
            cluster.primary.sql(f"DELETE FROM {db}.t_order")
