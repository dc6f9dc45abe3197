"""TrafficRouter matching, compiled once per rule change (routing-discovery-database.md §1.3 to 1.6).

* The routers that apply to a service are those whose ``hosts`` name it (short name, or
  ``<svc>.<ns>.svc.cluster.local``). Several routers are concatenated in name order.
* ``http[]`` is walked in order and the first rule that matches wins. A rule without ``match``
  is a catch-all; otherwise any of its match blocks must match (OR), and a block matches when all
  of its set conditions hold (AND).
* Conditions: ``uri`` (the path, without query), ``method``, ``scheme``, ``authority`` (the Host
  header), ``headers`` (names case-insensitive, values case-sensitive; ``{}`` = present; the
  keys ``uri``/``scheme``/``method``/``authority`` are ignored as in Istio), ``withoutHeaders``
  (the block fails if any listed header matches), ``queryParams`` (``exact: ""`` matches a bare
  ``?key``) and ``sourceLabels`` (compared once, at compile time, with the local instance's
  labels: a block whose source labels differ can never match). ``exact`` / ``prefix`` /
  ``regex`` (the whole value must match, ``re.fullmatch``); ``ignoreUriCase`` applies to exact
  and prefix uri matches.
* The action is a weighted list of destinations: one destination takes all traffic whatever its
  weight; several are picked with probability ``weight / sum`` (weight 0 is never picked).
  Fallback is per destination and is applied by the caller after the pick.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from opensergo.governance.routing.model import RequestView
from opensergo.spec.errors import SpecError
from opensergo.spec.resilience import RoutePolicy, route_policy
from opensergo.spec.traffic import (
    CLUSTER_DOMAIN,
    HTTPMatchRequest,
    HTTPRoute,
    HTTPRouteDestination,
    StringMatch,
    TrafficRouter,
)

__all__ = [
    "CompiledRouter",
    "Condition",
    "Rule",
    "Target",
    "compile_match",
    "compile_string_match",
    "router_applies",
    "short_host",
]

_log = logging.getLogger("opensergo.routing")
NO_POLICY = RoutePolicy()

Condition = Callable[[RequestView], bool]
ValueMatcher = Callable[[str | None], bool]

_IGNORED_HEADER_KEYS = frozenset({"uri", "scheme", "method", "authority"})


def short_host(host: str, namespace: str) -> str:
    """``svc.<namespace>.svc.cluster.local`` -> ``svc``; other names are kept as they are."""
    suffix = f".{namespace}.{CLUSTER_DOMAIN}"
    return host[: -len(suffix)] if host.endswith(suffix) else host


def router_applies(router: TrafficRouter, service: str, namespace: str) -> bool:
    return any(short_host(h, namespace) == service or h == "*" for h in router.spec.hosts)


# --- conditions ---------------------------------------------------------------------------------


def compile_string_match(match: StringMatch, *, ignore_case: bool = False) -> ValueMatcher:
    """A predicate over a value (None = absent) with Istio StringMatch semantics."""
    if match.exact is not None:
        exact = match.exact
        if ignore_case:
            lowered = exact.lower()
            return lambda value: value is not None and value.lower() == lowered
        return lambda value: value == exact
    if match.prefix is not None:
        prefix = match.prefix
        if ignore_case:
            lowered = prefix.lower()
            return lambda value: value is not None and value.lower().startswith(lowered)
        return lambda value: value is not None and value.startswith(prefix)
    if match.regex is not None:
        fullmatch = re.compile(match.regex).fullmatch
        return lambda value: value is not None and fullmatch(value) is not None
    return lambda value: value is not None


def _header_condition(name: str, matcher: ValueMatcher) -> Condition:
    return lambda request: matcher(request.header(name))


def _query_condition(name: str, matcher: ValueMatcher) -> Condition:
    return lambda request: matcher(request.query(name))


def compile_match(match: HTTPMatchRequest, local_labels: Mapping[str, str]) -> tuple[Condition, ...] | None:
    """The AND-ed conditions of one match block; None when the block can never match."""
    for key, label in match.sourceLabels.items():
        if local_labels.get(key) != label:
            return None
    conditions: list[Condition] = []
    if match.uri is not None:
        uri = compile_string_match(
            match.uri, ignore_case=bool(match.ignoreUriCase) and match.uri.regex is None
        )
        conditions.append(lambda request: uri(request.path))
    if match.method is not None:
        method = compile_string_match(match.method)
        conditions.append(lambda request: method(request.method))
    if match.scheme is not None:
        scheme = compile_string_match(match.scheme)
        conditions.append(lambda request: scheme(request.scheme))
    if match.authority is not None:
        authority = compile_string_match(match.authority)
        conditions.append(lambda request: authority(request.header("host") or request.header(":authority")))
    for name, value in sorted(match.headers.items()):
        lowered = name.lower()
        if lowered in _IGNORED_HEADER_KEYS:
            continue
        conditions.append(_header_condition(lowered, compile_string_match(value)))
    for name, value in sorted(match.queryParams.items()):
        conditions.append(_query_condition(name, compile_string_match(value)))
    if match.withoutHeaders:
        excluded = tuple(
            (name.lower(), compile_string_match(value))
            for name, value in sorted(match.withoutHeaders.items())
        )

        def without(request: RequestView) -> bool:
            return all(not matcher(request.header(header)) for header, matcher in excluded)

        conditions.append(without)
    return tuple(conditions)


# --- actions ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """Where a rule sends a request: ``host`` (an app) and optional ``subset``, with its fallback."""

    host: str
    subset: str | None = None
    port: int | None = None
    fallback_host: str | None = None
    fallback_subset: str | None = None

    @property
    def has_fallback(self) -> bool:
        return self.fallback_host is not None


class _Action:
    __slots__ = ("_cumulative", "_total", "targets")

    def __init__(self, route: Sequence[HTTPRouteDestination], namespace: str) -> None:
        targets: list[Target] = []
        for item in route:
            dest = item.destination
            targets.append(
                Target(
                    host=short_host(dest.host, namespace),
                    subset=dest.subset,
                    port=dest.port.number if dest.port is not None else None,
                    fallback_host=short_host(dest.fallback.host, namespace) if dest.fallback else None,
                    fallback_subset=dest.fallback.subset if dest.fallback else None,
                )
            )
        self.targets = tuple(targets)
        weights = [1] if len(route) == 1 else [item.weight or 0 for item in route]
        self._cumulative = tuple(itertools.accumulate(weights)) if targets else ()
        self._total = self._cumulative[-1] if self._cumulative else 0

    def pick(self, rng: Callable[[], float]) -> Target | None:
        if not self.targets:
            return None
        if len(self.targets) == 1:
            return self.targets[0]
        if self._total <= 0:
            return None
        return self.targets[bisect.bisect_right(self._cumulative, rng() * self._total)]


@dataclass(frozen=True, slots=True)
class Rule:
    """A compiled HTTP route. ``blocks`` None = catch-all; an empty tuple = can never match.

    ``policy`` holds the route's timeout, retries, fault injection, mirror, rewrite, redirect and
    direct response; a rule that redirects or answers directly has no targets. ``prefixes`` is,
    per block, the part of the path a ``rewrite.uri`` replaces (Envoy's ``prefix_rewrite``: the
    matched prefix, the whole path for an exact match, ``/`` without a uri match).
    """

    name: str
    router: str
    index: int
    blocks: tuple[tuple[Condition, ...], ...] | None
    action: _Action
    policy: RoutePolicy = NO_POLICY
    prefixes: tuple[str | None, ...] = ()

    def matches(self, request: RequestView) -> bool:
        return self.matched(request) is not None

    def matched(self, request: RequestView) -> int | None:
        """The index of the first block that matches (0 for a catch-all), None if none does."""
        blocks = self.blocks
        if blocks is None:
            return 0
        for index, conditions in enumerate(blocks):
            for condition in conditions:
                if not condition(request):
                    break
            else:
                return index
        return None

    def rewritten_path(self, request: RequestView) -> str | None:
        """The path after ``rewrite.uri`` (None: no rewrite)."""
        rewrite = self.policy.rewrite
        if rewrite is None or rewrite.uri is None:
            return None
        block = self.matched(request) or 0
        prefix = self.prefixes[block] if block < len(self.prefixes) else "/"
        path = request.path
        if prefix is None:  # a regex match: Envoy replaces the whole path
            return rewrite.uri
        return rewrite.uri + path[len(prefix) :] if path.startswith(prefix) else path


def _prefix(match: HTTPMatchRequest) -> str | None:
    uri = match.uri
    if uri is None or uri.is_empty:
        return "/"
    if uri.exact is not None:
        return uri.exact
    if uri.prefix is not None:
        return uri.prefix
    return None


def _compile_rule(
    http: HTTPRoute, index: int, router: TrafficRouter, local_labels: Mapping[str, str]
) -> Rule | None:
    try:
        policy = route_policy(http)
    except SpecError as err:
        _log.warning("TrafficRouter %s http[%d] ignored: %s", router.metadata.name, index, err)
        return None
    if not http.route and policy.redirect is None and policy.direct_response is None:
        return None  # delegate only: a proxy feature
    blocks: tuple[tuple[Condition, ...], ...] | None = None
    prefixes: tuple[str | None, ...] = ("/",)
    if http.match:
        pairs = [(compile_match(m, local_labels), _prefix(m)) for m in http.match]
        blocks = tuple(b for b, _ in pairs if b is not None)
        prefixes = tuple(p for b, p in pairs if b is not None)
    return Rule(
        name=http.name or f"{router.metadata.name}[{index}]",
        router=router.metadata.name,
        index=index,
        blocks=blocks,
        action=_Action(http.route, router.metadata.namespace),
        policy=policy,
        prefixes=prefixes,
    )


class CompiledRouter:
    """The ordered rules of every TrafficRouter that applies to ``service``."""

    __slots__ = ("_rng", "namespace", "rules", "service")

    def __init__(
        self,
        routers: Sequence[TrafficRouter],
        service: str,
        *,
        namespace: str = "default",
        local_labels: Mapping[str, str] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.service = service
        self.namespace = namespace
        labels = local_labels or {}
        rules: list[Rule] = []
        for router in sorted(routers, key=lambda r: r.metadata.name):
            if not router_applies(router, service, router.metadata.namespace):
                continue
            for index, http in enumerate(router.spec.http):
                rule = _compile_rule(http, index, router, labels)
                if rule is not None:
                    rules.append(rule)
        self.rules = tuple(rules)
        self._rng = (rng or random.Random()).random

    def __bool__(self) -> bool:
        return bool(self.rules)

    def match(self, request: RequestView) -> Rule | None:
        """The first rule that matches, or None."""
        for rule in self.rules:
            if rule.matches(request):
                return rule
        return None

    def pick(self, rule: Rule) -> Target | None:
        """The weighted pick among the rule's destinations (None if all weights are 0)."""
        return rule.action.pick(self._rng)

    def route(self, request: RequestView) -> tuple[Rule, Target | None] | None:
        rule = self.match(request)
        if rule is None:
            return None
        return rule, rule.action.pick(self._rng)

    @property
    def last_rule(self) -> Rule | None:
        return self.rules[-1] if self.rules else None
