"""The ``database.opensergo.io/v1alpha1`` kinds (zh-Hans database.md / database-example.md).

Upstream models these 1:1 on ShardingSphere YAML rules and defines no proto, so none of these
kinds has an upstream payload. References inside one object are checked (a strategy naming an
algorithm or load balancer that the same object does not define). References between objects
(VirtualDatabase -> Sharding …) are checked by :func:`dangling_references` over a set of objects.

Object names: upstream names these objects like the ShardingSphere data sources they stand for
(``write_ds``, ``sharding_db``), which a Kubernetes name cannot hold. Database kinds therefore
accept ``_`` in ``metadata.name``. Such objects work with every store except Kubernetes itself.

Tolerated upstream slips (everything else is strict):
* the Sharding ``autoTables`` sample writes ``actualDataNodes`` where ShardingSphere says
  ``actualDataSources``; both are accepted;
* the spec text spells complex/hint strategies with ``shardingColumn`` / ``shardingAlgorithm``;
  the ShardingSphere names ``shardingColumns`` / ``shardingAlgorithmName`` are accepted too;
* the DatabaseDiscovery sample indents ``discoveryHeartbeatName`` / ``discoveryTypeName`` one
  level too high (next to the group instead of inside it); they are moved into every group that
  lacks them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from pydantic import Field, field_validator, model_validator

from opensergo.spec.base import ObjectMeta, Resource, SpecModel
from opensergo.spec.errors import FieldError, SpecError
from opensergo.spec.faulttolerance import CaseInsensitiveEnum
from opensergo.spec.secrets import SECRET, SECRET_KEYS, SECRET_URL

GROUP = "database.opensergo.io"
VERSION = "v1alpha1"

_DATA_SOURCE_NAME = re.compile(r"^[a-zA-Z0-9]([-a-zA-Z0-9_.]*[a-zA-Z0-9])?$")


class DatabaseObjectMeta(ObjectMeta):
    """ObjectMeta whose name may also hold ``_`` and capitals, as ShardingSphere names do."""

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if len(value) > 253 or not _DATA_SOURCE_NAME.match(value):
            raise ValueError(
                "must be letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
            )
        return value


class _DatabaseResource(Resource):
    GROUP: ClassVar[str] = GROUP
    VERSION: ClassVar[str] = VERSION

    metadata: DatabaseObjectMeta


def _check_ref(name: str | None, defined: Iterable[str], path: tuple[str | int, ...], what: str) -> None:
    known_names = set(defined)
    if name is not None and name not in known_names:
        known = ", ".join(sorted(known_names)) or "none"
        raise FieldError(path, f"unknown {what} {name!r} (defined: {known})")


class Algorithm(SpecModel):
    """A named ShardingSphere algorithm: ``type`` plus free-form ``props``."""

    type: str = Field(min_length=1)
    props: dict[str, Any] = Field(default_factory=dict, json_schema_extra=SECRET_KEYS)  # aes-key-value...


# --- VirtualDatabase / DatabaseEndpoint -------------------------------------------------------


class MySQLService(SpecModel):
    db: str = Field(min_length=1)
    host: str = Field(min_length=1)
    port: int = Field(default=3306, ge=1, le=65535)
    user: str | None = None
    password: str | None = Field(default=None, json_schema_extra=SECRET)


class DatabaseService(SpecModel):
    """A logical database the app connects to, and the governance CRs (by name) applied to it.

    ``databasePostgreSQL`` is an extension of this implementation (upstream knows only MySQL);
    exactly one of ``databaseMySQL`` / ``databasePostgreSQL`` is set.
    """

    name: str = Field(min_length=1)
    databaseMySQL: MySQLService | None = None
    databasePostgreSQL: MySQLService | None = None
    readWriteSplitting: str | None = None
    sharding: str | None = None
    encryption: str | None = None
    shadow: str | None = None
    distributedTransaction: str | None = None

    @model_validator(mode="after")
    def _one_database(self) -> Self:
        if (self.databaseMySQL is None) == (self.databasePostgreSQL is None):
            raise ValueError("set exactly one of databaseMySQL, databasePostgreSQL")
        return self

    @property
    def database(self) -> MySQLService:
        """The connection facts of the logical database, whichever kind it is."""
        chosen = self.databaseMySQL or self.databasePostgreSQL
        assert chosen is not None
        return chosen


class VirtualDatabaseSpec(SpecModel):
    services: list[DatabaseService] = Field(min_length=1)


class VirtualDatabase(_DatabaseResource):
    KIND: ClassVar[str] = "VirtualDatabase"
    PLURAL: ClassVar[str] = "virtualdatabases"

    spec: VirtualDatabaseSpec


class MySQLEndpoint(SpecModel):
    # JDBC URL, e.g. jdbc:mysql://host:3306/db?useSSL=false; credentials inside it are secret.
    url: str = Field(min_length=1, json_schema_extra=SECRET_URL)
    username: str | None = None
    password: str | None = Field(default=None, json_schema_extra=SECRET)
    connectionTimeout: int | None = Field(default=None, ge=0)  # milliseconds
    idleTimeoutMilliseconds: int | None = Field(default=None, ge=0)
    maxLifetimeMilliseconds: int | None = Field(default=None, ge=0)
    maxPoolSize: int | None = Field(default=None, ge=1)
    minPoolSize: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _pool_bounds(self) -> Self:
        if (
            self.maxPoolSize is not None
            and self.minPoolSize is not None
            and self.minPoolSize > self.maxPoolSize
        ):
            raise FieldError(("minPoolSize",), "must not exceed maxPoolSize")
        return self


class EndpointDatabase(SpecModel):
    """Exactly one of ``MySQL`` (upstream) and ``PostgreSQL`` (an extension: the same fields,
    with a ``jdbc:postgresql://`` URL)."""

    MySQL: MySQLEndpoint | None = None
    PostgreSQL: MySQLEndpoint | None = None
    # Mentioned by the spec text, never specified.
    connectionPool: dict[str, Any] | None = Field(default=None, json_schema_extra=SECRET_KEYS)

    @model_validator(mode="after")
    def _one_database(self) -> Self:
        if (self.MySQL is None) == (self.PostgreSQL is None):
            raise ValueError("set exactly one of MySQL, PostgreSQL")
        return self

    @property
    def endpoint(self) -> MySQLEndpoint:
        """The connection settings, whichever kind of database this is."""
        chosen = self.MySQL or self.PostgreSQL
        assert chosen is not None
        return chosen


class DatabaseEndpointSpec(SpecModel):
    """A physical database; ``metadata.name`` is the data-source name strategies refer to."""

    database: EndpointDatabase


class DatabaseEndpoint(_DatabaseResource):
    KIND: ClassVar[str] = "DatabaseEndpoint"
    PLURAL: ClassVar[str] = "databaseendpoints"

    spec: DatabaseEndpointSpec


# --- ReadWriteSplitting -----------------------------------------------------------------------


class LoadBalancerType(CaseInsensitiveEnum):
    ROUND_ROBIN = "ROUND_ROBIN"
    RANDOM = "RANDOM"
    WEIGHT = "WEIGHT"


class StaticStrategy(SpecModel):
    writeDataSourceName: str = Field(min_length=1)
    readDataSourceNames: list[str] = Field(min_length=1)
    loadBalancerName: str | None = None


class DynamicStrategy(SpecModel):
    autoAwareDataSourceName: str = Field(min_length=1)  # a DatabaseDiscovery group
    writeDataSourceQueryEnabled: bool = True
    loadBalancerName: str | None = None


class LoadBalancer(SpecModel):
    loadBalancerName: str = Field(min_length=1)
    type: LoadBalancerType
    props: dict[str, Any] = Field(default_factory=dict, json_schema_extra=SECRET_KEYS)  # WEIGHT: {replica: w}


class ReadWriteRules(SpecModel):
    staticStrategy: StaticStrategy | None = None
    dynamicStrategy: DynamicStrategy | None = None
    loadBalancers: list[LoadBalancer] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> Self:
        if (self.staticStrategy is None) == (self.dynamicStrategy is None):
            raise ValueError("set exactly one of staticStrategy, dynamicStrategy")
        key = "staticStrategy" if self.staticStrategy is not None else "dynamicStrategy"
        strategy = self.staticStrategy or self.dynamicStrategy
        assert strategy is not None
        names = [b.loadBalancerName for b in self.loadBalancers]
        _check_ref(strategy.loadBalancerName, names, (key, "loadBalancerName"), "load balancer")
        return self


class ReadWriteSplittingSpec(SpecModel):
    rules: ReadWriteRules


class ReadWriteSplitting(_DatabaseResource):
    KIND: ClassVar[str] = "ReadWriteSplitting"
    PLURAL: ClassVar[str] = "readwritesplittings"

    spec: ReadWriteSplittingSpec


# --- Sharding ---------------------------------------------------------------------------------


class StandardStrategy(SpecModel):
    # The upstream autoTables sample leaves both empty ("to be chosen"), so empty is allowed.
    shardingColumn: str
    shardingAlgorithmName: str


def _spec_spelling(data: Any) -> Any:
    # The spec text writes shardingColumn / shardingAlgorithm for complex and hint strategies.
    if isinstance(data, dict):
        data = dict(data)
        if "shardingColumn" in data and "shardingColumns" not in data:
            data["shardingColumns"] = data.pop("shardingColumn")
        if "shardingAlgorithm" in data and "shardingAlgorithmName" not in data:
            data["shardingAlgorithmName"] = data.pop("shardingAlgorithm")
    return data


class ComplexStrategy(SpecModel):
    shardingColumns: str = Field(min_length=1)  # comma-separated
    shardingAlgorithmName: str = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _spelling(cls, data: Any) -> Any:
        return _spec_spelling(data)


class HintStrategy(SpecModel):
    shardingColumns: str | None = None
    shardingAlgorithmName: str = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _spelling(cls, data: Any) -> Any:
        return _spec_spelling(data)


class ShardingStrategy(SpecModel):
    """At most one of standard / complex / hint / none; nothing set means none."""

    standard: StandardStrategy | None = None
    complex: ComplexStrategy | None = None
    hint: HintStrategy | None = None
    none: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one(self) -> Self:
        if sum(v is not None for v in (self.standard, self.complex, self.hint, self.none)) > 1:
            raise ValueError("set only one of standard, complex, hint, none")
        return self

    @property
    def algorithm_name(self) -> str | None:
        chosen = self.standard or self.complex or self.hint
        return chosen.shardingAlgorithmName if chosen is not None else None


class KeyGenerateStrategy(SpecModel):
    column: str = Field(min_length=1)
    keyGeneratorName: str = Field(min_length=1)


class ShardingTable(SpecModel):
    actualDataNodes: str | None = None  # inline expression, e.g. ds_${0..1}.t_order_${0..1}
    databaseStrategy: ShardingStrategy | None = None
    tableStrategy: ShardingStrategy | None = None
    keyGenerateStrategy: KeyGenerateStrategy | None = None


class AutoShardingTable(SpecModel):
    actualDataSources: str | None = None
    actualDataNodes: str | None = None  # what the upstream sample writes
    shardingStrategy: ShardingStrategy | None = None
    keyGenerateStrategy: KeyGenerateStrategy | None = None


class ShardingSpec(SpecModel):
    tables: dict[str, ShardingTable] = Field(default_factory=dict)
    autoTables: dict[str, AutoShardingTable] = Field(default_factory=dict)
    bindingTables: list[str] = Field(default_factory=list)  # "t_order,t_order_item"
    broadcastTables: list[str] = Field(default_factory=list)
    defaultDatabaseStrategy: ShardingStrategy | None = None
    defaultTableStrategy: ShardingStrategy | None = None
    defaultKeyGenerateStrategy: KeyGenerateStrategy | None = None
    defaultShardingColumn: str | None = None
    shardingAlgorithms: dict[str, Algorithm] = Field(default_factory=dict)
    keyGenerators: dict[str, Algorithm] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _references(self) -> Self:
        algorithms, generators = self.shardingAlgorithms.keys(), self.keyGenerators.keys()

        def strategy(value: ShardingStrategy | None, path: tuple[str | int, ...]) -> None:
            # An empty name is how the upstream autoTables sample spells "not chosen yet".
            if value is not None and value.algorithm_name:
                kind = "standard" if value.standard else "complex" if value.complex else "hint"
                _check_ref(
                    value.algorithm_name, algorithms, (*path, kind, "shardingAlgorithmName"), "algorithm"
                )

        def keygen(value: KeyGenerateStrategy | None, path: tuple[str | int, ...]) -> None:
            if value is not None:
                _check_ref(value.keyGeneratorName, generators, (*path, "keyGeneratorName"), "key generator")

        for name, sharded in self.tables.items():
            strategy(sharded.databaseStrategy, ("tables", name, "databaseStrategy"))
            strategy(sharded.tableStrategy, ("tables", name, "tableStrategy"))
            keygen(sharded.keyGenerateStrategy, ("tables", name, "keyGenerateStrategy"))
        for name, auto in self.autoTables.items():
            strategy(auto.shardingStrategy, ("autoTables", name, "shardingStrategy"))
            keygen(auto.keyGenerateStrategy, ("autoTables", name, "keyGenerateStrategy"))
        strategy(self.defaultDatabaseStrategy, ("defaultDatabaseStrategy",))
        strategy(self.defaultTableStrategy, ("defaultTableStrategy",))
        keygen(self.defaultKeyGenerateStrategy, ("defaultKeyGenerateStrategy",))
        logical = set(self.tables) | set(self.autoTables)
        for index, group in enumerate(self.bindingTables):
            for table in (t.strip() for t in group.split(",")):
                _check_ref(table, logical, ("bindingTables", index), "sharding table")
        return self


class Sharding(_DatabaseResource):
    KIND: ClassVar[str] = "Sharding"
    PLURAL: ClassVar[str] = "shardings"

    spec: ShardingSpec


# --- Encryption -------------------------------------------------------------------------------


class EncryptColumn(SpecModel):
    cipherColumn: str = Field(min_length=1)
    encryptorName: str = Field(min_length=1)
    plainColumn: str | None = None
    assistedQueryColumn: str | None = None


class EncryptTable(SpecModel):
    columns: dict[str, EncryptColumn] = Field(min_length=1)  # logic column -> storage


class EncryptionSpec(SpecModel):
    encryptors: dict[str, Algorithm] = Field(default_factory=dict)
    tables: dict[str, EncryptTable] = Field(default_factory=dict)
    queryWithCipherColumn: bool = True

    @model_validator(mode="after")
    def _references(self) -> Self:
        for table, spec in self.tables.items():
            for column, col in spec.columns.items():
                path = ("tables", table, "columns", column, "encryptorName")
                _check_ref(col.encryptorName, self.encryptors, path, "encryptor")
        return self


class Encryption(_DatabaseResource):
    KIND: ClassVar[str] = "Encryption"
    PLURAL: ClassVar[str] = "encryptions"

    spec: EncryptionSpec


# --- Shadow -----------------------------------------------------------------------------------


class ShadowDataSource(SpecModel):
    sourceDataSourceName: str = Field(min_length=1)
    shadowDataSourceName: str = Field(min_length=1)


class ShadowTable(SpecModel):
    dataSourceNames: list[str] = Field(min_length=1)
    shadowAlgorithmNames: list[str] = Field(min_length=1)


class ShadowSpec(SpecModel):
    dataSources: dict[str, ShadowDataSource] = Field(min_length=1)
    tables: dict[str, ShadowTable] = Field(default_factory=dict)
    shadowAlgorithms: dict[str, Algorithm] = Field(default_factory=dict)
    defaultShadowAlgorithmName: str | None = None

    @model_validator(mode="after")
    def _references(self) -> Self:
        for table, spec in self.tables.items():
            for i, name in enumerate(spec.dataSourceNames):
                _check_ref(
                    name, self.dataSources, ("tables", table, "dataSourceNames", i), "shadow data source"
                )
            for i, name in enumerate(spec.shadowAlgorithmNames):
                _check_ref(
                    name,
                    self.shadowAlgorithms,
                    ("tables", table, "shadowAlgorithmNames", i),
                    "shadow algorithm",
                )
        _check_ref(
            self.defaultShadowAlgorithmName,
            self.shadowAlgorithms,
            ("defaultShadowAlgorithmName",),
            "shadow algorithm",
        )
        return self


class Shadow(_DatabaseResource):
    KIND: ClassVar[str] = "Shadow"
    PLURAL: ClassVar[str] = "shadows"

    spec: ShadowSpec


# --- DatabaseDiscovery ------------------------------------------------------------------------


class DiscoveryGroup(SpecModel):
    dataSourceNames: list[str] = Field(min_length=1)
    discoveryHeartbeatName: str = Field(min_length=1)
    discoveryTypeName: str = Field(min_length=1)


class DiscoveryHeartbeat(SpecModel):
    props: dict[str, Any] = Field(default_factory=dict, json_schema_extra=SECRET_KEYS)  # keep-alive-cron


_GROUP_LEVEL_KEYS = ("discoveryHeartbeatName", "discoveryTypeName")


class DatabaseDiscoverySpec(SpecModel):
    dataSources: dict[str, DiscoveryGroup] = Field(min_length=1)
    discoveryHeartbeats: dict[str, DiscoveryHeartbeat] = Field(default_factory=dict)
    discoveryTypes: dict[str, Algorithm] = Field(default_factory=dict)

    @field_validator("dataSources", mode="before")
    @classmethod
    def _misindented(cls, value: Any) -> Any:
        # The upstream sample puts the heartbeat/type names beside the group instead of in it.
        if not isinstance(value, dict) or not any(isinstance(value.get(k), str) for k in _GROUP_LEVEL_KEYS):
            return value
        shared = {k: value[k] for k in _GROUP_LEVEL_KEYS if isinstance(value.get(k), str)}
        groups = {k: v for k, v in value.items() if k not in shared}
        return {k: {**shared, **v} if isinstance(v, dict) else v for k, v in groups.items()}

    @model_validator(mode="after")
    def _references(self) -> Self:
        for name, group in self.dataSources.items():
            path = ("dataSources", name)
            _check_ref(
                group.discoveryHeartbeatName,
                self.discoveryHeartbeats,
                (*path, "discoveryHeartbeatName"),
                "heartbeat",
            )
            _check_ref(
                group.discoveryTypeName, self.discoveryTypes, (*path, "discoveryTypeName"), "discovery type"
            )
        return self


class DatabaseDiscovery(_DatabaseResource):
    KIND: ClassVar[str] = "DatabaseDiscovery"
    PLURAL: ClassVar[str] = "databasediscoveries"

    spec: DatabaseDiscoverySpec


# --- DistributedTransaction -------------------------------------------------------------------


class TransactionType(CaseInsensitiveEnum):
    XA = "xa"
    BASE = "base"
    LOCAL = "local"


class TransactionProvider(CaseInsensitiveEnum):
    NARAYANA = "Narayana"
    ATOMIKOS = "Atomikos"
    SEATA = "Seata"


class Transaction(SpecModel):
    defaultType: TransactionType = TransactionType.LOCAL
    providerType: TransactionProvider | None = None


class DistributedTransactionSpec(SpecModel):
    transaction: Transaction


class DistributedTransaction(_DatabaseResource):
    KIND: ClassVar[str] = "DistributedTransaction"
    PLURAL: ClassVar[str] = "distributedtransactions"

    spec: DistributedTransactionSpec


# --- references between objects ---------------------------------------------------------------

_SERVICE_REFS: dict[str, type[Resource]] = {
    "readWriteSplitting": ReadWriteSplitting,
    "sharding": Sharding,
    "encryption": Encryption,
    "shadow": Shadow,
    "distributedTransaction": DistributedTransaction,
}


# What a dynamic read/write strategy names: a data-source group of some DatabaseDiscovery.
_DISCOVERY_GROUP = "DatabaseDiscovery group"


@dataclass(frozen=True)
class _Reference:
    """``name`` of a ``kind`` object, written at ``path`` under ``spec``."""

    name: str
    kind: str
    path: tuple[str | int, ...]


def _virtual_database_references(r: VirtualDatabase) -> Iterator[_Reference]:
    for i, service in enumerate(r.spec.services):
        for field, target in _SERVICE_REFS.items():
            value = getattr(service, field)
            if value is not None:
                yield _Reference(value, target.KIND, ("services", i, field))


def _read_write_references(r: ReadWriteSplitting) -> Iterator[_Reference]:
    static, dynamic = r.spec.rules.staticStrategy, r.spec.rules.dynamicStrategy
    if static is not None:
        path = ("rules", "staticStrategy")
        yield _Reference(static.writeDataSourceName, DatabaseEndpoint.KIND, (*path, "writeDataSourceName"))
        for i, name in enumerate(static.readDataSourceNames):
            yield _Reference(name, DatabaseEndpoint.KIND, (*path, "readDataSourceNames", i))
    elif dynamic is not None:
        yield _Reference(
            dynamic.autoAwareDataSourceName,
            _DISCOVERY_GROUP,
            ("rules", "dynamicStrategy", "autoAwareDataSourceName"),
        )


def _shadow_references(r: Shadow) -> Iterator[_Reference]:
    for key, source in r.spec.dataSources.items():
        for field in ("sourceDataSourceName", "shadowDataSourceName"):
            yield _Reference(getattr(source, field), DatabaseEndpoint.KIND, ("dataSources", key, field))


def _discovery_references(r: DatabaseDiscovery) -> Iterator[_Reference]:
    for key, group in r.spec.dataSources.items():
        for i, name in enumerate(group.dataSourceNames):
            yield _Reference(name, DatabaseEndpoint.KIND, ("dataSources", key, "dataSourceNames", i))


def _references(r: Resource) -> Iterator[_Reference]:
    if isinstance(r, VirtualDatabase):
        return _virtual_database_references(r)
    if isinstance(r, ReadWriteSplitting):
        return _read_write_references(r)
    if isinstance(r, Shadow):
        return _shadow_references(r)
    if isinstance(r, DatabaseDiscovery):
        return _discovery_references(r)
    return iter(())


def dangling_references(resources: Iterable[Resource]) -> list[SpecError]:
    """Names one database object uses for another that the given set does not define.

    Checked per namespace: VirtualDatabase -> its strategy CRs; data-source names in
    ReadWriteSplitting, Shadow and DatabaseDiscovery -> DatabaseEndpoint (or, for a dynamic
    read/write strategy, a DatabaseDiscovery group).
    """
    items = list(resources)
    defined: dict[tuple[str, str], set[str]] = {}  # (namespace, kind) -> names
    for r in items:
        defined.setdefault((r.namespace, r.KIND), set()).add(r.name)
        if isinstance(r, DatabaseDiscovery):
            defined.setdefault((r.namespace, _DISCOVERY_GROUP), set()).update(r.spec.dataSources)
    return [
        SpecError(
            f"{r.KIND} {r.namespace}/{r.name}: no {ref.kind} named {ref.name!r}", path=("spec", *ref.path)
        )
        for r in items
        for ref in _references(r)
        if ref.name not in defined.get((r.namespace, ref.kind), ())
    ]
