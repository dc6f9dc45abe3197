"""YAML builders for the database kinds used by the integration tests."""

from __future__ import annotations

from collections.abc import Sequence

from tests.integration.database.servers import PASSWORD, USER


def endpoint(name: str, jdbc: str, *, kind: str = "MySQL", app: str = "db-app", extra: str = "") -> str:
    return f"""
apiVersion: database.opensergo.io/v1alpha1
kind: DatabaseEndpoint
metadata: {{name: {name}, labels: {{app: {app}}}}}
spec:
  database:
    {kind}:
      url: "{jdbc}"
      username: {USER}
      password: {PASSWORD}
      maxPoolSize: 8
      connectionTimeout: 3000
{extra}
---"""


def virtual_database(
    name: str,
    *,
    rw: str | None = None,
    shadow: str | None = None,
    encryption: str | None = None,
    kind: str = "MySQL",
    port: int = 3306,
    app: str = "db-app",
) -> str:
    refs = "".join(
        f"\n      {key}: {value}"
        for key, value in (("readWriteSplitting", rw), ("shadow", shadow), ("encryption", encryption))
        if value
    )
    return f"""
apiVersion: database.opensergo.io/v1alpha1
kind: VirtualDatabase
metadata: {{name: {name}, labels: {{app: {app}}}}}
spec:
  services:
    - name: {name}
      database{kind}: {{db: app, host: 127.0.0.1, port: {port}, user: {USER}, password: {PASSWORD}}}{refs}
---"""


def static_rw(
    name: str, write: str, reads: Sequence[str], balancer: str = "ROUND_ROBIN", props: str = ""
) -> str:
    return f"""
apiVersion: database.opensergo.io/v1alpha1
kind: ReadWriteSplitting
metadata: {{name: {name}, labels: {{app: db-app}}}}
spec:
  rules:
    staticStrategy:
      writeDataSourceName: {write}
      readDataSourceNames: [{", ".join(reads)}]
      loadBalancerName: lb
    loadBalancers:
      - loadBalancerName: lb
        type: {balancer}
        props: {{{props}}}
---"""


def dynamic_rw(name: str, group: str, members: Sequence[str], type_name: str, *, threshold: int = 0) -> str:
    return f"""
apiVersion: database.opensergo.io/v1alpha1
kind: ReadWriteSplitting
metadata: {{name: {name}, labels: {{app: db-app}}}}
spec:
  rules:
    dynamicStrategy:
      autoAwareDataSourceName: {group}
      writeDataSourceQueryEnabled: true
---
apiVersion: database.opensergo.io/v1alpha1
kind: DatabaseDiscovery
metadata: {{name: {name}-discovery, labels: {{app: db-app}}}}
spec:
  dataSources:
    {group}:
      dataSourceNames: [{", ".join(members)}]
      discoveryHeartbeatName: beat
      discoveryTypeName: replication
  discoveryHeartbeats:
    beat:
      props: {{keep-alive-cron: "* * * * * ?"}}
  discoveryTypes:
    replication:
      type: {type_name}
      props: {{delay-milliseconds-threshold: {threshold}}}
---"""


ENCRYPTION = """
apiVersion: database.opensergo.io/v1alpha1
kind: Encryption
metadata: {name: encrypt_db, labels: {app: db-app}}
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
  queryWithCipherColumn: true
---"""


def shadow(source: str, target: str, lane: str = "loadtest") -> str:
    return f"""
apiVersion: database.opensergo.io/v1alpha1
kind: Shadow
metadata: {{name: shadow_db, labels: {{app: db-app}}}}
spec:
  dataSources:
    shadowDataSource: {{sourceDataSourceName: {source}, shadowDataSourceName: {target}}}
  tables:
    t_order:
      dataSourceNames: [shadowDataSource]
      shadowAlgorithmNames: [user-id-insert-match, user-id-select-regex, simple-hint, lane]
    t_item:
      dataSourceNames: [shadowDataSource]
      shadowAlgorithmNames: [simple-hint, lane]
  defaultShadowAlgorithmName: lane
  shadowAlgorithms:
    user-id-insert-match: {{type: VALUE_MATCH, props: {{operation: insert, column: user_id, value: 1}}}}
    user-id-select-regex: {{type: REGEX_MATCH, props: {{operation: select, column: user_id, regex: "[1]"}}}}
    simple-hint: {{type: SIMPLE_HINT, props: {{shadow: "true", foo: bar}}}}
    lane: {{type: SIMPLE_HINT, props: {{x-opensergo-traffic: {lane}}}}}
---"""


def sharding_service(name: str, sharding: str, *, transaction: str | None = None, kind: str = "MySQL",
                     extra: str = "") -> str:  # fmt: skip
    """A VirtualDatabase whose service is sharded by the Sharding object ``sharding``."""
    tx = f"\n      distributedTransaction: {transaction}" if transaction else ""
    return f"""
apiVersion: database.opensergo.io/v1alpha1
kind: VirtualDatabase
metadata: {{name: {name}, labels: {{app: db-app}}}}
spec:
  services:
    - name: {name}
      database{kind}: {{db: {name}, host: 127.0.0.1, port: 3306}}
      sharding: {sharding}{tx}{extra}
---"""


def transaction(name: str, kind: str) -> str:
    return f"""
apiVersion: database.opensergo.io/v1alpha1
kind: DistributedTransaction
metadata: {{name: {name}, labels: {{app: db-app}}}}
spec:
  transaction: {{defaultType: {kind}}}
---"""


# The spec's sharding_db example (database.md), with its table algorithms fixed to t_order_* (the
# upstream text computes d_order_*, which names no data node) and a broadcast table.
SHARDING_DB = """
apiVersion: database.opensergo.io/v1alpha1
kind: Sharding
metadata: {name: sharding_db, labels: {app: db-app}}
spec:
  tables:
    t_order:
      actualDataNodes: "ds_${0..1}.t_order_${0..1}"
      tableStrategy:
        standard: {shardingColumn: order_id, shardingAlgorithmName: t_order_inline}
      keyGenerateStrategy: {column: order_id, keyGeneratorName: snowflake}
    t_order_item:
      actualDataNodes: "ds_${0..1}.t_order_item_${0..1}"
      tableStrategy:
        standard: {shardingColumn: order_id, shardingAlgorithmName: t_order_item_inline}
      keyGenerateStrategy: {column: order_item_id, keyGeneratorName: snowflake}
  bindingTables: ["t_order,t_order_item"]
  broadcastTables: [t_config]
  defaultDatabaseStrategy:
    standard: {shardingColumn: user_id, shardingAlgorithmName: database_inline}
  shardingAlgorithms:
    database_inline: {type: INLINE, props: {algorithm-expression: "ds_${user_id % 2}"}}
    t_order_inline: {type: INLINE, props: {algorithm-expression: "t_order_${order_id % 2}"}}
    t_order_item_inline: {type: INLINE, props: {algorithm-expression: "t_order_item_${order_id % 2}"}}
  keyGenerators:
    snowflake: {type: SNOWFLAKE}
---"""
