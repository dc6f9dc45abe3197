"""``opensergo describe sharding NAME -f FILE``: the data nodes of a rule, offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import run_cli

pytestmark = pytest.mark.unit

RULE = """
apiVersion: database.opensergo.io/v1alpha1
kind: Sharding
metadata: {name: shop}
spec:
  tables:
    t_order:
      actualDataNodes: "ds_${0..1}.t_order_${0..1}"
      tableStrategy: {standard: {shardingColumn: order_id, shardingAlgorithmName: by_order}}
  autoTables:
    t_event:
      actualDataSources: "ds_${0..1}"
      shardingStrategy: {standard: {shardingColumn: event_id, shardingAlgorithmName: mod3}}
  defaultDatabaseStrategy: {standard: {shardingColumn: user_id, shardingAlgorithmName: by_user}}
  shardingAlgorithms:
    by_user: {type: INLINE, props: {algorithm-expression: "ds_${user_id % 2}"}}
    by_order: {type: INLINE, props: {algorithm-expression: "t_order_${order_id % 2}"}}
    mod3: {type: MOD, props: {sharding-count: 3}}
"""


def test_describe_shows_data_nodes_and_strategies(tmp_path: Path) -> None:
    path = tmp_path / "rule.yaml"
    path.write_text(RULE)
    shown = run_cli("describe", "sharding", "shop", "-f", str(path), "-o", "json")
    assert shown.returncode == 0, shown.stderr
    described = json.loads(shown.stdout)
    assert described["tables"]["t_event"]["data_nodes"] == [
        "ds_0.t_event_0",
        "ds_1.t_event_1",
        "ds_0.t_event_2",
    ]
    assert described["tables"]["t_order"]["database_strategy"] == "standard(user_id) -> by_user (INLINE)"
    table = run_cli("describe", "sharding", "shop", "-f", str(path))
    assert table.returncode == 0 and "ds_1.t_order_1" in table.stdout


def test_describe_reports_what_the_python_runtime_refuses(tmp_path: Path) -> None:
    path = tmp_path / "rule.yaml"
    path.write_text(RULE.replace("type: MOD, props: {sharding-count: 3}", "type: CLASS_BASED, props: {}"))
    shown = run_cli("describe", "sharding", "shop", "-f", str(path))
    assert shown.returncode == 1 and "CLASS_BASED" in shown.stderr
    missing = run_cli("describe", "sharding", "other", "-f", str(path))
    assert missing.returncode == 1 and "no Sharding named 'other'" in missing.stderr
