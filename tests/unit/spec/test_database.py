from __future__ import annotations

from typing import Any

import pytest
import yaml

from opensergo.spec import (
    DatabaseDiscovery,
    DatabaseEndpoint,
    DistributedTransaction,
    Encryption,
    ReadWriteSplitting,
    Resource,
    Shadow,
    Sharding,
    SpecErrors,
    VirtualDatabase,
    dangling_references,
    parse_documents,
)
from opensergo.spec.database import TransactionProvider, TransactionType

from .conftest import one

pytestmark = pytest.mark.unit

DB = "apiVersion: database.opensergo.io/v1alpha1\n"


def doc(kind: str, name: str, spec: dict[str, Any]) -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "database.opensergo.io/v1alpha1",
            "kind": kind,
            "metadata": {"name": name},
            "spec": spec,
        }
    )


def error_field(text: str) -> str:
    with pytest.raises(SpecErrors) as info:
        parse_documents(text)
    return info.value.errors[0].field


def test_sample_kinds(samples: list[Resource]) -> None:
    by_kind: dict[type[Resource], int] = {}
    for r in samples:
        by_kind[type(r)] = by_kind.get(type(r), 0) + 1
    for kind in (
        VirtualDatabase,
        DatabaseEndpoint,
        ReadWriteSplitting,
        Sharding,
        Encryption,
        Shadow,
        DatabaseDiscovery,
        DistributedTransaction,
    ):
        assert by_kind.get(kind, 0) >= 1, kind


def endpoint(**mysql: Any) -> dict[str, Any]:
    return {"database": {"MySQL": {"url": "jdbc:mysql://h/db", **mysql}}}


def test_names_may_use_underscores() -> None:
    assert one(doc("DatabaseEndpoint", "write_ds", endpoint())).name == "write_ds"
    assert error_field(doc("DatabaseEndpoint", "_x", endpoint())) == "metadata.name"


def test_endpoint_pool_bounds() -> None:
    text = doc("DatabaseEndpoint", "ds", endpoint(minPoolSize=5, maxPoolSize=2))
    assert error_field(text) == "spec.database.MySQL.minPoolSize"


def test_read_write_splitting() -> None:
    static = {"writeDataSourceName": "w", "readDataSourceNames": ["r0", "r1"], "loadBalancerName": "rr"}
    balancers = [{"loadBalancerName": "rr", "type": "round_robin"}]
    rw = one(
        doc("ReadWriteSplitting", "rw", {"rules": {"staticStrategy": static, "loadBalancers": balancers}})
    )
    assert isinstance(rw, ReadWriteSplitting)
    assert rw.spec.rules.loadBalancers[0].type.value == "ROUND_ROBIN"
    assert error_field(doc("ReadWriteSplitting", "rw", {"rules": {"loadBalancers": []}})) == "spec.rules"
    dangling = doc(
        "ReadWriteSplitting", "rw", {"rules": {"staticStrategy": dict(static, loadBalancerName="nope")}}
    )
    assert error_field(dangling) == "spec.rules.staticStrategy.loadBalancerName"


def test_sharding_references_are_checked() -> None:
    text = f"""{DB}kind: Sharding
metadata: {{name: sharding_db}}
spec:
  tables:
    t_order:
      actualDataNodes: "ds_${{0..1}}.t_order_${{0..1}}"
      tableStrategy: {{standard: {{shardingColumn: order_id, shardingAlgorithmName: t_order_inline}}}}
      keyGenerateStrategy: {{column: order_id, keyGeneratorName: snowflake}}
  bindingTables: ["t_order"]
  shardingAlgorithms:
    t_order_inline: {{type: INLINE, props: {{algorithm-expression: "t_order_${{order_id % 2}}"}}}}
  keyGenerators:
    snowflake: {{type: SNOWFLAKE}}
"""
    sharding = one(text)
    assert isinstance(sharding, Sharding)
    assert (
        sharding.spec.shardingAlgorithms["t_order_inline"].props["algorithm-expression"]
        == "t_order_${order_id % 2}"
    )
    missing_algorithm = text.replace("shardingAlgorithmName: t_order_inline", "shardingAlgorithmName: nope")
    assert (
        error_field(missing_algorithm) == "spec.tables.t_order.tableStrategy.standard.shardingAlgorithmName"
    )
    assert error_field(text.replace("keyGeneratorName: snowflake", "keyGeneratorName: uuid")) == (
        "spec.tables.t_order.keyGenerateStrategy.keyGeneratorName"
    )
    assert error_field(text.replace('["t_order"]', '["t_order,t_missing"]')) == "spec.bindingTables[0]"


def test_sharding_strategy_spellings() -> None:
    sharding = one(
        f"""{DB}kind: Sharding
metadata: {{name: s}}
spec:
  defaultDatabaseStrategy: {{complex: {{shardingColumn: "a,b", shardingAlgorithm: alg}}}}
  defaultTableStrategy: {{hint: {{shardingAlgorithmName: alg}}}}
  shardingAlgorithms: {{alg: {{type: COMPLEX_INLINE}}}}
"""
    )
    assert isinstance(sharding, Sharding)
    strategy = sharding.spec.defaultDatabaseStrategy
    assert strategy is not None and strategy.complex is not None
    assert strategy.complex.shardingColumns == "a,b"
    assert strategy.algorithm_name == "alg"
    two = doc("Sharding", "s", {"defaultTableStrategy": {"none": {}, "hint": {"shardingAlgorithmName": "a"}}})
    assert error_field(two) == "spec.defaultTableStrategy"


def test_encryption_and_shadow_references() -> None:
    column = {"cipherColumn": "x", "encryptorName": "aes"}
    enc = doc("Encryption", "e", {"tables": {"t": {"columns": {"c": column}}}})
    assert error_field(enc) == "spec.tables.t.columns.c.encryptorName"
    shadow = doc(
        "Shadow",
        "s",
        {
            "dataSources": {"sds": {"sourceDataSourceName": "ds", "shadowDataSourceName": "shadow_ds"}},
            "tables": {"t": {"dataSourceNames": ["sds"], "shadowAlgorithmNames": ["alg", "nope"]}},
            "shadowAlgorithms": {
                "alg": {"type": "VALUE_MATCH", "props": {"operation": "insert", "value": 1}}
            },
        },
    )
    assert error_field(shadow) == "spec.tables.t.shadowAlgorithmNames[1]"


def test_discovery_sample_indentation_is_repaired(samples: list[Resource]) -> None:
    discovery = next(r for r in samples if isinstance(r, DatabaseDiscovery))
    group = discovery.spec.dataSources["readwrite_ds"]
    assert list(discovery.spec.dataSources) == ["readwrite_ds"]
    assert (group.discoveryHeartbeatName, group.discoveryTypeName) == ("mgr-heartbeat", "mgr")
    assert group.dataSourceNames == ["ds_0", "ds_1", "ds_2"]


def test_transaction_types() -> None:
    txn = one(
        doc("DistributedTransaction", "t", {"transaction": {"defaultType": "XA", "providerType": "seata"}})
    )
    assert isinstance(txn, DistributedTransaction)
    assert txn.spec.transaction.defaultType is TransactionType.XA
    assert txn.spec.transaction.providerType is TransactionProvider.SEATA
    bad = doc("DistributedTransaction", "t", {"transaction": {"defaultType": "2pc"}})
    assert error_field(bad) == "spec.transaction.defaultType"


def test_dangling_references() -> None:
    objects = parse_documents(
        f"""{DB}kind: VirtualDatabase
metadata: {{name: db}}
spec:
  services:
  - name: db
    databaseMySQL: {{db: db, host: localhost}}
    readWriteSplitting: rw
    encryption: encrypt_db
---
{DB}kind: ReadWriteSplitting
metadata: {{name: rw}}
spec:
  rules:
    staticStrategy: {{writeDataSourceName: write_ds, readDataSourceNames: [read_ds_0, read_ds_1]}}
---
{DB}kind: DatabaseEndpoint
metadata: {{name: write_ds}}
spec: {{database: {{MySQL: {{url: u}}}}}}
---
{DB}kind: DatabaseEndpoint
metadata: {{name: read_ds_0}}
spec: {{database: {{MySQL: {{url: u}}}}}}
---
{DB}kind: Encryption
metadata: {{name: encrypt-db}}
spec: {{}}
"""
    )
    errors = dangling_references(objects)
    assert [(e.field, e.message) for e in errors] == [
        ("spec.services[0].encryption", "VirtualDatabase default/db: no Encryption named 'encrypt_db'"),
        (
            "spec.rules.staticStrategy.readDataSourceNames[1]",
            "ReadWriteSplitting default/rw: no DatabaseEndpoint named 'read_ds_1'",
        ),
    ]
