"""A VirtualDatabase resolved into what routing runs on: a :class:`DatabaseRuntime`.

:func:`build_runtime` reads the database objects of a namespace and returns an immutable runtime
(endpoint pools, the read/write rule, shadow and encryption rules, the statement plan cache).
Pools and discovery monitors whose configuration did not change are taken over from the previous
runtime (:class:`Resources`), so a rule update keeps their connections and probe state; the ones
no longer used are drained and stopped once the new runtime is in place.

With a Sharding rule, the plan of a statement also holds its sharding plan
(:mod:`.sharding.planner`): the routing to data nodes, the per-node SQL and how results merge.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from opensergo.database.discovery import DEFAULT_CRON, DiscoveryMonitor
from opensergo.database.encrypt import EncryptRule, RewritePlan, plan_rewrite
from opensergo.database.errors import ConfigurationError, DatabaseGovernanceError
from opensergo.database.pool import EndpointPool, PoolSettings
from opensergo.database.readwrite import HealthBoard, ReadWriteRule
from opensergo.database.shadow import ShadowPlan, ShadowRule
from opensergo.database.sharding.planner import ShardedStatement, plan_statement
from opensergo.database.sharding.rule import ShardingRule
from opensergo.database.statement import PlanCache, Statement, analyze, ss_hints
from opensergo.database.transactions import Coordinator, coordinator_for
from opensergo.database.urls import EndpointURL, Family, translate
from opensergo.spec import database as spec
from opensergo.spec.base import Resource

__all__ = ["DatabaseRuntime", "Options", "Plan", "Resources", "build_runtime"]

log = logging.getLogger("opensergo.database")


@dataclass(frozen=True, slots=True)
class Options:
    """Engine-wide settings given to ``create_engine``."""

    asynchronous: bool = False
    driver: str | None = None
    connect_args: Mapping[str, Any] = field(default_factory=dict)
    isolation_level: str | None = None
    failover_timeout: float = 10.0
    retry_after: float = 2.0
    plan_cache_size: int = 2048
    probe_timeout: float = 2.0
    shard_concurrency: int = 8  # data sources one statement queries at once
    transaction_log_dir: str | None = None  # XA decisions (default: see transactions.py)


@dataclass(slots=True)
class Plan:
    """Everything decided once per SQL string under one runtime."""

    statement: Statement
    primary: bool  # must run on the write source
    rewrite: RewritePlan | None = None
    shadow: ShadowPlan | None = None
    data_source: str | None = None  # DATA_SOURCE_NAME hint
    sharding: ShardedStatement | None = None
    error: DatabaseGovernanceError | None = None


class Resources:
    """Pools and monitors shared between successive runtimes of one engine."""

    def __init__(self) -> None:
        self.pools: dict[tuple[Any, ...], EndpointPool] = {}
        self.monitors: dict[tuple[Any, ...], DiscoveryMonitor] = {}
        self.coordinators: dict[tuple[Any, ...], Coordinator] = {}

    def coordinator(
        self, obj: spec.DistributedTransaction | None, database: str, options: Options
    ) -> Coordinator:
        """The transaction coordinator; an XA coordinator (and its log) outlives rule updates."""
        kind = obj.spec.transaction.defaultType.value if obj is not None else "local"
        key = (kind, database, options.transaction_log_dir)
        found = self.coordinators.get(key)
        if found is None:
            found = coordinator_for(obj, database, options.transaction_log_dir)
            self.coordinators[key] = found
        return found

    def pool(self, name: str, url: EndpointURL, settings: PoolSettings, options: Options) -> EndpointPool:
        key = (name, url.url.render_as_string(hide_password=False), settings)
        pool = self.pools.get(key)
        if pool is None or pool.drained:
            pool = EndpointPool(
                name,
                url,
                settings,
                asynchronous=options.asynchronous,
                connect_args=dict(options.connect_args),
                isolation_level=options.isolation_level,
            )
            self.pools[key] = pool
        return pool

    def monitor(
        self,
        group: str,
        members: Mapping[str, EndpointURL],
        type_name: str,
        props: Mapping[str, Any],
        cron: str,
        options: Options,
    ) -> DiscoveryMonitor:
        key = (
            group,
            tuple(sorted((n, u.url.render_as_string(hide_password=False)) for n, u in members.items())),
            type_name,
            tuple(sorted((str(k), str(v)) for k, v in props.items())),
            cron,
        )
        monitor = self.monitors.get(key)
        if monitor is None:
            monitor = DiscoveryMonitor(
                group, members, type_name, props, cron, probe_timeout=options.probe_timeout
            )
            self.monitors[key] = monitor
        return monitor

    def retire_unused(self, runtime: DatabaseRuntime | None) -> None:
        """Drain the pools and stop the monitors ``runtime`` does not use."""
        used_pools = {id(p) for p in runtime.pools.values()} if runtime else set()
        used_monitors = {id(m) for m in runtime.monitors} if runtime else set()
        for key, pool in list(self.pools.items()):
            if id(pool) not in used_pools:
                log.info("data source %s is no longer used: draining its pool", pool.name)
                pool.drain()
                del self.pools[key]
        for key, monitor in list(self.monitors.items()):
            if id(monitor) not in used_monitors:
                monitor.stop()
                del self.monitors[key]
        if runtime is None:  # the engine is disposed (in-flight transactions keep a coordinator otherwise)
            for coordinator in self.coordinators.values():
                coordinator.close()
            self.coordinators.clear()


class DatabaseRuntime:
    """One VirtualDatabase's compiled rules; immutable once built (a rule change builds another)."""

    def __init__(
        self,
        name: str,
        family: Family,
        pools: dict[str, EndpointPool],
        *,
        default_source: str | None,
        readwrite: ReadWriteRule | None,
        shadow: ShadowRule | None,
        encrypt: EncryptRule | None,
        sharding: ShardingRule | None = None,
        coordinator: Coordinator,
        monitors: tuple[DiscoveryMonitor, ...],
        health: HealthBoard,
        plan_cache_size: int,
        fingerprint: tuple[Any, ...],
    ) -> None:
        self.name = name
        self.family = family
        self.pools = pools
        self.default_source = default_source
        self.readwrite = readwrite
        self.shadow = shadow
        self.encrypt = encrypt
        self.sharding = sharding
        self.coordinator = coordinator
        self.monitors = monitors
        self.health = health
        self.fingerprint = fingerprint
        self.plans: PlanCache[Plan] = PlanCache(self._plan, plan_cache_size)

    def _plan(self, sql: str) -> Plan:
        statement = analyze(sql, self.family)
        hints = ss_hints(statement)
        primary = statement.is_write or hints.get("WRITE_ROUTE_ONLY", "").lower() == "true"
        plan = Plan(statement, primary, data_source=hints.get("DATA_SOURCE_NAME"))
        try:
            if self.encrypt is not None:
                plan.rewrite = plan_rewrite(self.encrypt, statement, self.family)
            if self.shadow is not None:
                plan.shadow = self.shadow.plan(statement)
            if self.sharding is not None and plan.data_source is None:
                # Encryption rewrites the logic statement first; sharding routes what it produced.
                source = analyze(plan.rewrite.sql, self.family) if plan.rewrite is not None else statement
                plan.sharding = plan_statement(self.sharding, self.family, source)
        except DatabaseGovernanceError as e:
            plan.error = e
        if plan.data_source is not None and plan.data_source not in self.pools:
            plan.error = ConfigurationError(
                f"DATA_SOURCE_NAME hint names unknown data source {plan.data_source!r}"
            )
        return plan

    def write_source(self) -> str:
        if self.readwrite is not None:
            return self.readwrite.write_source()
        assert self.default_source is not None
        return self.default_source

    def describe(self) -> dict[str, Any]:
        rw = self.readwrite
        return {
            "name": self.name,
            "family": self.family,
            "data_sources": {
                n: {"url": p.url.redacted(), "open": p.size, "idle": p.idle} for n, p in self.pools.items()
            },
            "write_source": (rw.topology.primary(0) if rw and rw.topology else None)
            if rw and rw.dynamic
            else self.default_source
            if rw is None
            else rw.write_source(),
            "read_sources": list(rw.read_candidates()) if rw else [],
            "shadow": self.shadow.name if self.shadow else None,
            "encryption": sorted(self.encrypt.tables) if self.encrypt else [],
            "sharding": self.sharding.describe() if self.sharding else None,
            "transactions": self.coordinator.name,
            "plan_cache": self.plans.stats(),
        }


def _by_name(objects: Iterable[Resource], cls: type[Resource]) -> dict[str, Any]:
    return {o.name: o for o in objects if isinstance(o, cls)}


def _find_service(name: str, objects: list[Resource]) -> spec.DatabaseService:
    vdbs = [o for o in objects if isinstance(o, spec.VirtualDatabase)]
    for vdb in vdbs:
        for service in vdb.spec.services:
            if service.name == name:
                return service
    for vdb in vdbs:
        if vdb.name == name and len(vdb.spec.services) == 1:
            return vdb.spec.services[0]
    known = sorted({s.name for v in vdbs for s in v.spec.services})
    raise ConfigurationError(
        f"no VirtualDatabase service named {name!r} (known: {', '.join(known) or 'none'})"
    )


def _need(kind: type[Resource], name: str, table: Mapping[str, Any], what: str) -> Any:
    found = table.get(name)
    if found is None:
        raise ConfigurationError(f"{what} refers to {kind.KIND} {name!r}, which is not defined")
    return found


def build_runtime(  # noqa: C901 (complexity debt, see pyproject [tool.ruff.lint.mccabe])
    name: str,
    namespace: str,
    objects: list[Resource],
    options: Options,
    resources: Resources,
    health: HealthBoard,
) -> DatabaseRuntime:
    """Resolve VirtualDatabase service ``name`` in ``namespace``; raises ConfigurationError."""
    service = _find_service(name, objects)
    family: Family = "postgresql" if service.databasePostgreSQL is not None else "mysql"
    endpoints: dict[str, spec.DatabaseEndpoint] = _by_name(objects, spec.DatabaseEndpoint)
    what = f"VirtualDatabase service {name!r}"
    sharding_obj: spec.Sharding | None = None
    if service.sharding:
        if service.readWriteSplitting:
            raise ConfigurationError(
                f"{what}: Sharding together with ReadWriteSplitting is not supported (the data nodes of a "
                "Sharding rule are DatabaseEndpoints)"
            )
        sharding_obj = _need(spec.Sharding, service.sharding, _by_name(objects, spec.Sharding), what)
    transaction = None
    if service.distributedTransaction:
        transaction = _need(
            spec.DistributedTransaction,
            service.distributedTransaction,
            _by_name(objects, spec.DistributedTransaction),
            what,
        )
    coordinator = resources.coordinator(transaction, name, options)

    used: dict[str, EndpointURL] = {}
    settings: dict[str, PoolSettings] = {}
    fingerprint: list[Any] = [name, family]

    def endpoint(ds: str, where: str) -> None:
        if ds in used:
            return
        ep = _need(spec.DatabaseEndpoint, ds, endpoints, where)
        db = ep.spec.database
        conn = db.endpoint
        url = translate(
            conn.url,
            username=conn.username,
            password=conn.password,
            asynchronous=options.asynchronous,
            driver=options.driver,
        )
        if url.family != family:
            raise ConfigurationError(
                f"{where}: data source {ds!r} is {url.family}, but the VirtualDatabase is {family}"
            )
        used[ds] = url
        settings[ds] = PoolSettings.from_endpoint(conn)

    readwrite_obj: spec.ReadWriteSplitting | None = None
    discovery: tuple[str, dict[str, EndpointURL], str, dict[str, Any], str] | None = None
    if service.readWriteSplitting:
        readwrite_obj = _need(
            spec.ReadWriteSplitting,
            service.readWriteSplitting,
            _by_name(objects, spec.ReadWriteSplitting),
            what,
        )
        rules = readwrite_obj.spec.rules
        rw_where = f"ReadWriteSplitting {readwrite_obj.name!r}"
        if rules.staticStrategy is not None:
            endpoint(rules.staticStrategy.writeDataSourceName, rw_where)
            for ds in rules.staticStrategy.readDataSourceNames:
                endpoint(ds, rw_where)
        else:
            assert rules.dynamicStrategy is not None
            group_name = rules.dynamicStrategy.autoAwareDataSourceName
            found = [
                (d, d.spec.dataSources[group_name])
                for d in objects
                if isinstance(d, spec.DatabaseDiscovery) and group_name in d.spec.dataSources
            ]
            if not found:
                raise ConfigurationError(f"{rw_where}: no DatabaseDiscovery defines the group {group_name!r}")
            disc, group = found[0]
            for ds in group.dataSourceNames:
                endpoint(ds, f"DatabaseDiscovery {disc.name!r}")
            kind = disc.spec.discoveryTypes[group.discoveryTypeName]
            beat = disc.spec.discoveryHeartbeats[group.discoveryHeartbeatName]
            cron = str(beat.props.get("keep-alive-cron") or DEFAULT_CRON)
            discovery = (
                group_name,
                {ds: used[ds] for ds in group.dataSourceNames},
                kind.type,
                dict(kind.props),
                cron,
            )

    shadow_rule: ShadowRule | None = None
    if service.shadow:
        shadow_obj: spec.Shadow = _need(spec.Shadow, service.shadow, _by_name(objects, spec.Shadow), what)
        for mapping in shadow_obj.spec.dataSources.values():
            endpoint(mapping.sourceDataSourceName, f"Shadow {shadow_obj.name!r}")
            endpoint(mapping.shadowDataSourceName, f"Shadow {shadow_obj.name!r}")
        shadow_rule = ShadowRule(shadow_obj)
        fingerprint.append(("shadow", shadow_obj.model_dump_json()))

    encrypt_rule: EncryptRule | None = None
    if service.encryption:
        enc_obj: spec.Encryption = _need(
            spec.Encryption, service.encryption, _by_name(objects, spec.Encryption), what
        )
        encrypt_rule = EncryptRule.compile(enc_obj)
        fingerprint.append(("encrypt", enc_obj.model_dump_json()))

    sharding_rule: ShardingRule | None = None
    if sharding_obj is not None:
        sharding_rule = ShardingRule(sharding_obj)
        for ds in sharding_rule.data_sources:
            endpoint(ds, f"Sharding {sharding_obj.name!r}")
        fingerprint.append(("sharding", sharding_obj.model_dump_json()))

    default_source: str | None = None
    if sharding_rule is not None:
        default_source = sharding_rule.default_source
    elif readwrite_obj is None:
        sources = {m for m in shadow_rule.mappings} if shadow_rule else set()
        if len(sources) == 1:
            default_source = next(iter(sources))
        elif name in endpoints:
            endpoint(name, what)
            default_source = name
        else:
            # No strategy picks a DatabaseEndpoint: the service's own connection facts are the data source.
            db = service.database
            url = translate(
                f"jdbc:{family}://{db.host}:{db.port}/{db.db}",
                username=db.user,
                password=db.password,
                asynchronous=options.asynchronous,
                driver=options.driver,
            )
            used[name] = url
            settings[name] = PoolSettings()
            default_source = name

    for ds, url in sorted(used.items()):
        fingerprint.append((ds, url.url.render_as_string(hide_password=False), settings[ds]))
    if readwrite_obj is not None:
        fingerprint.append(("rw", readwrite_obj.model_dump_json()))
    if discovery is not None:
        fingerprint.append(
            ("discovery", discovery[0], discovery[2], sorted(discovery[3].items()), discovery[4])
        )
    if transaction is not None:
        fingerprint.append(("tx", transaction.model_dump_json()))

    pools = {ds: resources.pool(ds, url, settings[ds], options) for ds, url in used.items()}
    monitors: tuple[DiscoveryMonitor, ...] = ()
    topology = None
    if discovery is not None:
        group_name, members, type_name, props, cron = discovery
        topology = resources.monitor(group_name, members, type_name, props, cron, options)
        monitors = (topology,)
    readwrite = (
        ReadWriteRule(readwrite_obj, health, topology, failover_timeout=options.failover_timeout)
        if readwrite_obj is not None
        else None
    )
    return DatabaseRuntime(
        name,
        family,
        pools,
        default_source=default_source,
        readwrite=readwrite,
        shadow=shadow_rule,
        encrypt=encrypt_rule,
        sharding=sharding_rule,
        coordinator=coordinator,
        monitors=monitors,
        health=health,
        plan_cache_size=options.plan_cache_size,
        fingerprint=tuple(fingerprint),
    )
