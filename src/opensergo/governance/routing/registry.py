"""ServiceDirectory: discovery + TrafficRouter + VirtualWorkload + lanes -> one instance per call.

Given an :class:`~opensergo.client.OpenSergoClient`, the directory subscribes lazily, on the first
call to a service, to ``ServiceInstance``, ``TrafficRouter`` and ``VirtualWorkload`` for
``app=<service>`` (the caller subscribes with the callee's app name, as Spring Cloud Alibaba
does), and once, at construction, to ``TrafficLane`` for the local app. Pushes arrive on the
client's loop thread; each is compiled there and swapped in with one attribute assignment, so
the request path reads immutable state without locks.

The first call to a never-seen service blocks (``initial_wait``, default 2 s) until the first
live push of the three kinds has arrived; it is not repeated if the wait times out (the
directory then routes with whatever it has). Inside a running event loop use the ``a*``
methods, which wait in a worker thread.

Pipeline of :meth:`ServiceDirectory.choose` (routing-discovery-database.md §1.7):

1. The routers of the service (``hosts`` naming it). None, or no rule at all -> every healthy
   instance of the service, with the host's load-balancing policy.
2. First matching rule (router.py). No rule matched -> the ``no_match`` policy:

   * ``"error"`` (default, Istio/Envoy semantics: 404 ``NR``) -> :class:`NoRouteMatched`;
   * ``"all"`` -> every healthy instance of the service (as if there were no router);
   * ``"last"`` -> the destination of the last rule (Spring Cloud Alibaba's default route).

3. Weighted pick of one destination, then its subset: the VirtualWorkload subset of that name
   (instance labels ⊇ subset labels), else the default selector ``{version: <subset>}``. If the
   subset has no healthy instance and the destination has a ``fallback``, the fallback
   host/subset is used instead (one level, also on weighted routes). Still empty ->
   :class:`NoAvailableInstance`.
4. Lanes: lane traffic takes the instances tagged with its lane, else the untagged ones; unlaned
   traffic takes the untagged instances when there are any.
5. The load balancer of the subset (its own policy, else the host's; default round robin).

Only healthy instances enter routing: every pushed ServiceInstance is live (the control plane
deletes expired ones), minus those with ``weight: 0`` or ``status.healthy``/``status.enabled``
false.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from opensergo.governance.routing import lanes as lanes_module
from opensergo.governance.routing.lanes import LaneManager, LaneMark
from opensergo.governance.routing.loadbalance import Balancer, build_balancer
from opensergo.governance.routing.model import (
    Instance,
    NoAvailableInstance,
    NoRouteMatched,
    RequestView,
    RoutingError,
    SimpleRequest,
)
from opensergo.governance.routing.outlier import OutlierSettings, admitted, record_outcome
from opensergo.governance.routing.router import CompiledRouter, Rule, Target, short_host
from opensergo.spec.base import Resource
from opensergo.spec.discovery import ServiceInstance
from opensergo.spec.errors import SpecError
from opensergo.spec.resilience import RoutePolicy
from opensergo.spec.traffic import LoadBalancerSettings, TrafficLane, TrafficRouter, VirtualWorkload

if TYPE_CHECKING:
    from opensergo.client import OpenSergoClient

__all__ = [
    "CURRENT_LANE",
    "INSTANCE_KIND",
    "LANE_KIND",
    "ROUTER_KIND",
    "WORKLOAD_KIND",
    "Decision",
    "DirectAnswer",
    "NoMatchPolicy",
    "Pool",
    "Route",
    "ServiceDirectory",
]

_log = logging.getLogger("opensergo.routing")

INSTANCE_KIND = "discovery.opensergo.io/v1alpha1/ServiceInstance"
ROUTER_KIND = "traffic.opensergo.io/v1alpha1/TrafficRouter"
WORKLOAD_KIND = "traffic.opensergo.io/v1alpha1/VirtualWorkload"
LANE_KIND = "traffic.opensergo.io/v1alpha1/TrafficLane"
_SERVICE_KINDS: Final = (INSTANCE_KIND, ROUTER_KIND, WORKLOAD_KIND)

RouteTaken = tuple[str | None, str, str | None, bool]
"""(rule name, destination host, subset, fallback used) of a routing decision."""
_last_route: ContextVar[RouteTaken | None] = ContextVar("opensergo_last_route", default=None)


def last_route() -> RouteTaken | None:
    """The decision of the last routing choice in this context (read by the tracing hooks)."""
    return _last_route.get()


NoMatchPolicy = Literal["error", "all", "last"]


class _CurrentLane:
    def __repr__(self) -> str:
        return "CURRENT_LANE"


CURRENT_LANE: Final = _CurrentLane()
"""Default of the ``lane`` arguments: the lane of the current context (:func:`lanes.current`)."""

_EMPTY_REQUEST = SimpleRequest()


class Pool:
    """The healthy instances of one (host, subset), split by lane, each part with its balancer."""

    __slots__ = ("_rng", "base", "instances", "lanes", "outlier")

    def __init__(
        self,
        instances: Sequence[Instance],
        settings: LoadBalancerSettings | None,
        rng: random.Random,
        *,
        service: str,
        lane_routing: bool,
        source_key: str,
        outlier: OutlierSettings | None = None,
    ) -> None:
        self.instances = tuple(instances)
        self.outlier = outlier
        self._rng = rng.random

        def balancer(items: Sequence[Instance]) -> Balancer:
            return build_balancer(settings, items, rng, service=service, source_key=source_key)

        lanes: dict[str, Balancer] = {}
        base: Sequence[Instance] = self.instances
        if lane_routing:
            untagged = [i for i in self.instances if not i.tag]
            by_tag: dict[str, list[Instance]] = {}
            for instance in self.instances:
                if instance.tag:
                    by_tag.setdefault(instance.tag, []).append(instance)
            lanes = {tag: balancer(items) for tag, items in by_tag.items()}
            base = untagged or self.instances
        self.base = balancer(base)
        self.lanes = lanes

    def balancer(self, lane: LaneMark | None) -> Balancer:
        if lane is not None:
            found = self.lanes.get(lane.tag)
            if found is not None:
                return found
        return self.base

    def pick(self, lane: LaneMark | None, request: RequestView | None) -> Instance:
        """The balancer's pick, skipping instances that outlier detection ejected."""
        balancer = self.balancer(lane)
        instance = balancer.pick(request)
        if self.outlier is None:
            return instance
        now = time.monotonic()
        if instance.outlier is None or not instance.outlier.ejected(now):
            return instance
        for _ in range(len(balancer.instances)):  # keep the policy's choice among the others
            instance = balancer.pick(request)
            if instance.outlier is None or not instance.outlier.ejected(now):
                return instance
        candidates = admitted(balancer.instances, now)
        return candidates[int(self._rng() * len(candidates))]


class _Snapshot:
    """Instances + VirtualWorkload of one service; pools are built lazily per subset."""

    __slots__ = ("default_outlier", "default_settings", "instances", "pools", "subsets")

    def __init__(self, instances: tuple[Instance, ...], workload: VirtualWorkload | None) -> None:
        self.instances = instances
        self.pools: dict[str | None, Pool] = {}
        self.subsets: dict[
            str, tuple[Mapping[str, str], LoadBalancerSettings | None, OutlierSettings | None]
        ] = {}
        self.default_settings: LoadBalancerSettings | None = None
        self.default_outlier: OutlierSettings | None = None
        if workload is not None:
            spec = workload.spec
            host_policy = spec.trafficPolicy.loadBalancer if spec.trafficPolicy else None
            host_outlier = _outlier(spec.trafficPolicy.outlierDetection if spec.trafficPolicy else None)
            self.default_settings = host_policy
            self.default_outlier = host_outlier
            for subset in spec.subsets:
                policy = subset.trafficPolicy.loadBalancer if subset.trafficPolicy else None
                outlier = _outlier(subset.trafficPolicy.outlierDetection if subset.trafficPolicy else None)
                self.subsets[subset.name] = (subset.labels, policy or host_policy, outlier or host_outlier)


class DirectAnswer(RoutingError):
    """The matched rule redirects or answers directly: no instance is called."""

    def __init__(self, service: str, rule: Rule) -> None:
        super().__init__(service, f"rule {rule.name} of {service} answers without an instance")
        self.rule = rule


_NO_POLICY = RoutePolicy()


class Route:
    """One routed call: the instance, the matched rule's policy, and outcome bookkeeping."""

    __slots__ = ("instance", "lane", "pool", "rule", "service")

    def __init__(
        self,
        service: str,
        instance: Instance | None,
        rule: Rule | None,
        pool: Pool | None,
        lane: LaneMark | None,
    ) -> None:
        self.service = service
        self.instance = instance
        self.rule = rule
        self.pool = pool
        self.lane = lane

    @property
    def policy(self) -> RoutePolicy:
        return self.rule.policy if self.rule is not None else _NO_POLICY

    @property
    def plain(self) -> bool:
        """Nothing to apply beyond sending to the instance: no policy, no outlier detection."""
        return self.policy.empty and (self.pool is None or self.pool.outlier is None)

    def retry_instance(self, request: RequestView | None) -> Instance:
        """The instance for a retry: a new pick in the same pool (Envoy retries in the cluster
        it chose for the request)."""
        if self.pool is None:
            raise NoAvailableInstance(self.service, f"no instance for a retry to {self.service}")
        return self.pool.pick(self.lane, request)

    def report(self, instance: Instance, *, status: int | None = None, failed: bool = False) -> None:
        """Count an answer (``status``) or a transport failure for outlier detection."""
        pool = self.pool
        if pool is None or pool.outlier is None:
            return
        if record_outcome(instance, pool.instances, pool.outlier, status=status, failed=failed):
            _log.info("outlier detection ejected %s of %s", instance.name, self.service)


@dataclass(frozen=True, slots=True)
class Decision:
    """What :meth:`ServiceDirectory.explain` reports about one routing decision."""

    service: str
    instance: Instance
    rule: str | None
    target: Target | None
    fallback: bool
    lane: str | None
    host: str
    subset: str | None


class _Service:
    __slots__ = (
        "by_node",
        "name",
        "ready",
        "referenced",
        "router",
        "seen",
        "snapshot",
        "subscriptions",
        "waited",
        "workload",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.snapshot = _Snapshot((), None)
        self.router: CompiledRouter | None = None
        self.by_node: dict[str, Instance] = {}
        self.ready = threading.Event()
        self.waited = False
        self.seen: set[str] = set()
        self.subscriptions: list[Any] = []
        self.referenced: frozenset[str] = frozenset()
        self.workload: VirtualWorkload | None = None


def _client_labels(client: OpenSergoClient) -> dict[str, str]:
    """The labels the control plane gives this client's ServiceInstance, plus ``app``."""
    labels = dict(client.instance_labels)
    labels.setdefault("app", client.app)
    return labels


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class ServiceDirectory:
    """Routes calls to services by OpenSergo rules over the instances discovered for them.

    ``client`` may be None: the directory is then fed by the ``update_*`` methods (tests, static
    configuration). ``local_labels`` are this instance's labels, used for ``sourceLabels`` and
    lane colour-by-node (default: derived from the client: app, version and the other labels,
    tag, cluster, env, region, zone). ``lanes`` is the lane manager (default: the process-wide
    one the inbound middlewares use).
    """

    def __init__(
        self,
        client: OpenSergoClient | None = None,
        *,
        namespace: str | None = None,
        local_labels: Mapping[str, str] | None = None,
        no_match: NoMatchPolicy = "error",
        initial_wait: float = 2.0,
        lane_routing: bool = True,
        lanes: LaneManager | None = None,
        watch_lanes: bool = True,
        rng: random.Random | None = None,
        tag_label: str = "tag",
    ) -> None:
        if no_match not in ("error", "all", "last"):
            raise ValueError(f"no_match must be 'error', 'all' or 'last', not {no_match!r}")
        self._client = client
        self._namespace = namespace or (client.namespace if client is not None else "default")
        if local_labels is not None:
            self._local_labels = dict(local_labels)
        elif client is not None:
            self._local_labels = _client_labels(client)
        else:
            self._local_labels = {}
        self._no_match: NoMatchPolicy = no_match
        self._initial_wait = initial_wait
        self._lane_routing = lane_routing
        self._lanes = lanes if lanes is not None else lanes_module.default_manager()
        self._rng = rng if rng is not None else random.Random()
        self._tag_label = tag_label
        self._source_key = client.identifier if client is not None else socket.gethostname()
        self._services: dict[str, _Service] = {}
        self._lock = threading.Lock()
        self._lane_subscription: Any = None
        self._closed = False
        if client is not None and watch_lanes:
            self._lane_subscription = client.subscribe(
                LANE_KIND, app=client.app, namespace=self._namespace, callback=self._on_lanes
            )

    # -- properties --------------------------------------------------------------------------------
    @property
    def namespace(self) -> str:
        return self._namespace

    @property
    def local_labels(self) -> Mapping[str, str]:
        return dict(self._local_labels)

    @property
    def lanes(self) -> LaneManager:
        return self._lanes

    @property
    def no_match(self) -> NoMatchPolicy:
        return self._no_match

    def services(self) -> list[str]:
        return sorted(self._services)

    def instances(self, service: str) -> list[Instance]:
        """The healthy instances currently known for ``service`` (no subscription is made)."""
        state = self._services.get(self._service_name(service))
        return list(state.snapshot.instances) if state is not None else []

    # -- the request path --------------------------------------------------------------------------
    def choose(
        self,
        service: str,
        request: RequestView | None = None,
        *,
        lane: LaneMark | _CurrentLane | None = CURRENT_LANE,
    ) -> Instance:
        """The instance a request to ``service`` goes to.

        Raises :class:`NoRouteMatched` (router present, nothing matched, policy ``"error"``) or
        :class:`NoAvailableInstance`.
        """
        state = self._services.get(service)
        if state is None or not (state.waited or state.ready.is_set()):
            state = self._state(self._service_name(service), wait=True)
        pool = self._select(state, request or _EMPTY_REQUEST)[0]
        return pool.pick(self._mark(lane), request)

    def _mark(self, lane: LaneMark | _CurrentLane | None) -> LaneMark | None:
        if not self._lane_routing:
            return None
        return self._lanes.current() if isinstance(lane, _CurrentLane) else lane

    def route(
        self,
        service: str,
        request: RequestView | None = None,
        *,
        lane: LaneMark | _CurrentLane | None = CURRENT_LANE,
    ) -> Route:
        """:meth:`choose` plus what the matched rule asks of the call (timeout, retries, fault
        injection, mirror, rewrite) and the instance's outlier bookkeeping. A rule that
        redirects or answers directly gives a Route without instance."""
        state = self._services.get(service)
        if state is None or not (state.waited or state.ready.is_set()):
            state = self._state(self._service_name(service), wait=True)
        view = request or _EMPTY_REQUEST
        mark = self._mark(lane)
        try:
            pool, rule = self._select(state, view)[:2]
        except DirectAnswer as answer:
            return Route(state.name, None, answer.rule, None, mark)
        return Route(state.name, pool.pick(mark, request), rule, pool, mark)

    async def aroute(
        self,
        service: str,
        request: RequestView | None = None,
        *,
        lane: LaneMark | _CurrentLane | None = CURRENT_LANE,
    ) -> Route:
        """:meth:`route` for asyncio code (the first wait for a service runs in a worker thread)."""
        state = self._services.get(service)
        if state is None or not (state.waited or state.ready.is_set()):
            await asyncio.to_thread(self.prepare, service)
        return self.route(service, request, lane=lane)

    async def achoose(
        self,
        service: str,
        request: RequestView | None = None,
        *,
        lane: LaneMark | _CurrentLane | None = CURRENT_LANE,
    ) -> Instance:
        """:meth:`choose` for asyncio code: the first wait for a service runs in a worker thread."""
        state = self._services.get(service)
        if state is None or not (state.waited or state.ready.is_set()):
            await asyncio.to_thread(self.prepare, service)
        return self.choose(service, request, lane=lane)

    def explain(
        self,
        service: str,
        request: RequestView | None = None,
        *,
        lane: LaneMark | _CurrentLane | None = CURRENT_LANE,
    ) -> Decision:
        """:meth:`choose`, also telling which rule, destination and subset were used."""
        name = self._service_name(service)
        state = self._state(name, wait=not _in_event_loop())
        pool, rule, target, fallback, host, subset = self._select(state, request or _EMPTY_REQUEST)
        mark = self._mark(lane)
        instance = pool.pick(mark, request)
        return Decision(
            name,
            instance,
            rule.name if rule is not None else None,
            target,
            fallback,
            mark.name if isinstance(mark, LaneMark) else None,
            host,
            subset,
        )

    def _select(
        self, state: _Service, request: RequestView
    ) -> tuple[Pool, Rule | None, Target | None, bool, str, str | None]:
        selected = self._match(state, request)
        rule, fallback, host, subset = selected[1], selected[3], selected[4], selected[5]
        _last_route.set((rule.name if rule is not None else None, host, subset, fallback))
        return selected

    def _match(
        self, state: _Service, request: RequestView
    ) -> tuple[Pool, Rule | None, Target | None, bool, str, str | None]:
        router = state.router
        if router is None:
            return self._pool(state, None), None, None, False, state.name, None
        rule = router.match(request)
        if rule is None:
            if self._no_match == "all":
                return self._pool(state, None), None, None, False, state.name, None
            if self._no_match == "last" and router.last_rule is not None:
                rule = router.last_rule
            else:
                raise NoRouteMatched(state.name, f"no TrafficRouter rule of {state.name} matched the request")
        if not rule.action.targets:
            raise DirectAnswer(state.name, rule)
        target = router.pick(rule)
        if target is None:
            raise NoAvailableInstance(state.name, f"rule {rule.name} of {state.name} has only zero weights")
        host, subset = target.host, target.subset
        pool = self._pool(self._target_state(state, host), subset)
        fallback = False
        if not pool.instances and target.fallback_host is not None:
            host, subset = target.fallback_host, target.fallback_subset
            pool = self._pool(self._target_state(state, host), subset)
            fallback = True
        if not pool.instances:
            where = _describe(target.host, target.subset)
            if fallback:
                where += f" nor in its fallback {_describe(host, subset)}"
            raise NoAvailableInstance(state.name, f"no healthy instance in {where} (rule {rule.name})")
        return pool, rule, target, fallback, host, subset

    def _target_state(self, state: _Service, host: str) -> _Service:
        if host == state.name:
            return state
        other = self._services.get(host)
        if other is None or not (other.waited or other.ready.is_set()):
            other = self._state(host, wait=not _in_event_loop())
        return other

    def _pool(self, state: _Service, subset: str | None) -> Pool:
        snapshot = state.snapshot
        pool = snapshot.pools.get(subset)
        if pool is None:
            pool = self._build_pool(state.name, snapshot, subset)
            snapshot.pools[subset] = pool
        return pool

    def _build_pool(self, service: str, snapshot: _Snapshot, subset: str | None) -> Pool:
        settings = snapshot.default_settings
        outlier = snapshot.default_outlier
        members: Sequence[Instance] = snapshot.instances
        if subset is not None:
            selector: Mapping[str, str]
            found = snapshot.subsets.get(subset)
            if found is not None:
                selector, settings, outlier = found
            else:
                selector = {"version": subset}
            members = [
                i for i in snapshot.instances if all(i.labels.get(k) == v for k, v in selector.items())
            ]
        return Pool(
            members,
            settings,
            self._rng,
            service=service,
            lane_routing=self._lane_routing,
            source_key=self._source_key,
            outlier=outlier,
        )

    # -- subscriptions -----------------------------------------------------------------------------
    def _service_name(self, service: str) -> str:
        return short_host(service, self._namespace)

    def _state(self, service: str, *, wait: bool) -> _Service:
        created = False
        with self._lock:
            state = self._services.get(service)
            if state is None:
                state = _Service(service)
                self._services[service] = state
                created = True
        if created:
            self._subscribe(state)
        if wait and not state.waited and not state.ready.is_set():
            if not state.ready.wait(self._initial_wait):
                _log.warning(
                    "no discovery push for %s within %.1fs; routing with what is known",
                    service,
                    self._initial_wait,
                )
            state.waited = True
        return state

    def _subscribe(self, state: _Service) -> None:
        client = self._client
        if client is None or self._closed:
            state.ready.set()
            return
        for kind in _SERVICE_KINDS:
            state.subscriptions.append(
                client.subscribe(
                    kind, app=state.name, namespace=self._namespace, callback=self._callback(state, kind)
                )
            )

    def _callback(self, state: _Service, kind: str) -> Callable[[list[Resource], int], None]:
        from opensergo.common.protocol import SubscriptionKey

        client = self._client
        assert client is not None
        key = SubscriptionKey(self._namespace, state.name, kind)

        def on_push(resources: list[Resource], version: int) -> None:
            if kind == INSTANCE_KIND:
                self._apply_instances(state, resources)
            elif kind == ROUTER_KIND:
                self._apply_routers(state, resources)
            else:
                self._apply_workloads(state, resources)
            entry = client.cache.entry(key)
            if entry is not None and entry.live:
                state.seen.add(kind)
                if len(state.seen) == len(_SERVICE_KINDS):
                    state.ready.set()

        return on_push

    def _on_lanes(self, resources: list[Resource], version: int) -> None:
        self.update_lanes([r for r in resources if isinstance(r, TrafficLane)])

    def prepare(self, *services: str, timeout: float | None = None) -> bool:
        """Subscribe for ``services`` now and wait (``timeout``, default ``initial_wait``) for their
        first pushes. True when all are in."""
        states = [self._state(self._service_name(s), wait=False) for s in services]
        limit = self._initial_wait if timeout is None else timeout
        ok = True
        for state in states:
            if not state.ready.wait(limit):
                ok = False
            state.waited = True
        return ok

    async def aprepare(self, *services: str, timeout: float | None = None) -> bool:
        return await asyncio.to_thread(self.prepare, *services, timeout=timeout)

    def close(self) -> None:
        """Drop every subscription this directory made."""
        self._closed = True
        subs = [sub for state in self._services.values() for sub in state.subscriptions]
        if self._lane_subscription is not None:
            subs.append(self._lane_subscription)
        for sub in subs:
            try:
                sub.unsubscribe()
            except Exception:  # the client may already be stopped
                _log.debug("unsubscribe failed", exc_info=True)

    # -- updates (client loop thread, or direct calls) --------------------------------------------
    def update_instances(self, service: str, instances: Iterable[ServiceInstance | Instance]) -> None:
        """Replace the instance list of ``service``."""
        self._apply_instances(self._static_state(service), list(instances))

    def update_routers(self, service: str, routers: Iterable[TrafficRouter]) -> None:
        """Replace the TrafficRouters delivered for ``service``."""
        self._apply_routers(self._static_state(service), list(routers))

    def update_workloads(self, service: str, workloads: Iterable[VirtualWorkload]) -> None:
        """Replace the VirtualWorkloads delivered for ``service``."""
        self._apply_workloads(self._static_state(service), list(workloads))

    def update_lanes(self, lanes: Iterable[TrafficLane]) -> None:
        """Replace the TrafficLanes of the local app (colouring rules)."""
        self._lanes.configure(list(lanes), self._local_labels)

    def _static_state(self, service: str) -> _Service:
        name = self._service_name(service)
        with self._lock:
            state = self._services.get(name)
            if state is None:
                state = _Service(name)
                self._services[name] = state
                if self._client is None:
                    state.ready.set()
        return state

    def _apply_instances(self, state: _Service, resources: Sequence[Resource | Instance]) -> None:
        previous = state.by_node
        by_node: dict[str, Instance] = {}
        for item in resources:
            if isinstance(item, Instance):
                instance = item
            elif isinstance(item, ServiceInstance):
                if not _healthy(item):
                    continue
                instance = Instance.from_resource(item, self._tag_label)
            else:
                continue
            if instance.weight <= 0:
                continue
            old = previous.get(instance.node_id)
            if old is not None and old.same_as(instance):
                instance = old  # keeps its in-flight count
            by_node[instance.node_id] = instance
        instances = tuple(sorted(by_node.values(), key=lambda i: (i.name, i.node_id)))
        state.by_node = by_node
        state.snapshot = _Snapshot(instances, state.workload)

    def _apply_workloads(self, state: _Service, resources: Sequence[Resource]) -> None:
        workloads = sorted(
            (
                r
                for r in resources
                if isinstance(r, VirtualWorkload)
                and short_host(r.spec.host, r.metadata.namespace) == state.name
            ),
            key=lambda r: r.metadata.name,
        )
        workload = workloads[0] if workloads else None
        if len(workloads) > 1:
            _log.warning(
                "%d VirtualWorkloads for %s; using %s", len(workloads), state.name, workloads[0].name
            )
        state.workload = workload
        state.snapshot = _Snapshot(state.snapshot.instances, workload)

    def _apply_routers(self, state: _Service, resources: Sequence[Resource]) -> None:
        routers = [r for r in resources if isinstance(r, TrafficRouter)]
        compiled = CompiledRouter(
            routers, state.name, namespace=self._namespace, local_labels=self._local_labels, rng=self._rng
        )
        referenced = frozenset(
            host
            for rule in compiled.rules
            for target in rule.action.targets
            for host in (target.host, target.fallback_host)
            if host is not None and host != state.name
        )
        state.router = compiled if compiled else None
        if referenced - state.referenced:
            state.referenced = referenced
            for host in referenced:
                self._state(host, wait=False)  # subscribe now; the first call will not wait long


def _outlier(spec: Mapping[str, Any] | None) -> OutlierSettings | None:
    try:
        return OutlierSettings.from_spec(spec)
    except (SpecError, TypeError, ValueError) as err:
        _log.warning("outlierDetection ignored: %s", err)
        return None


def _describe(host: str, subset: str | None) -> str:
    return f"{host} subset {subset}" if subset else host


def _healthy(resource: ServiceInstance) -> bool:
    status = resource.status or {}
    return status.get("healthy", True) is not False and status.get("enabled", True) is not False
