"""RateLimitStrategy: at most ``threshold`` requests per ``statDuration`` sliding window.

Sentinel's default controller blocks when ``passed + 1 > threshold``, where ``passed`` counts the
requests of the resource admitted (by every strategy) in the window. Windows are per resource and
per duration (see :func:`~opensergo.common.stats.window_shape`), shared by every rate limit on
that resource with that duration, and kept across recompiles, as Sentinel's resource node is.

Limit modes:

* ``Local``: the threshold applies to this instance.
* ``GlobalToLocal``: the threshold is a cluster total; each instance enforces
  ``floor(threshold / live instances)``, at least 1 (0 stays 0: block everything). Flooring means
  the instances together never admit more than the total (except when there are more instances
  than the total allows, where each still admits 1).
* ``Global``: tokens leased from the control plane's token service
  (:class:`~opensergo.governance.faulttolerance.cluster.GlobalRate`), falling back to the
  GlobalToLocal share while the service is unreachable. Without a token service attached it is
  enforced as GlobalToLocal, with a warning logged once per strategy.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING

from opensergo.common.stats import Window
from opensergo.governance.errors import BlockedError, RateLimitedError
from opensergo.governance.faulttolerance.cluster import GlobalRate
from opensergo.governance.faulttolerance.ref import RuleRef

if TYPE_CHECKING:
    from opensergo.governance.faulttolerance.compiling import Compilation
    from opensergo.governance.faulttolerance.node import ResourceNode
    from opensergo.spec.faulttolerance import RateLimitStrategy

Limits = tuple[tuple[int, RuleRef], ...]


class RateLimits:
    """The compiled rate limits of one resource (immutable once built).

    ``windows`` holds one entry per window length, in rule order: the window, the lowest threshold
    on it (the one that refuses first) and every (threshold, rule) on it in rule order.
    ``global_rates`` are the Global strategies backed by the token service.
    """

    __slots__ = ("global_rates", "windows")

    def __init__(
        self,
        windows: tuple[tuple[Window, int, Limits], ...],
        global_rates: tuple[tuple[GlobalRate, RuleRef], ...],
    ) -> None:
        self.windows = windows
        self.global_rates = global_rates

    def refusal(self, w: Window, now: int) -> BlockedError:
        """Count a block in ``w`` and name the first limit on it (in rule order) that refuses."""
        passed = w.hist_pass + w.passes[w.idx]
        w.blocks[w.idx] += 1
        for window, _, limits in self.windows:
            if window is w:
                for threshold, ref in limits:
                    if passed >= threshold:
                        detail = f"{passed} passed in {w.interval_ms} ms, threshold {threshold}"
                        return RateLimitedError.from_ref(ref, detail)
        raise AssertionError("unreachable: no rate limit to attribute")  # pragma: no cover

    def uncount(self, counted_at: int, upto: Window | None = None) -> None:
        """Take back the passes a refused request added (windows before ``upto``; all when None).

        Only while the bucket it went into is still current; after that it stays counted."""
        for w, _, _ in self.windows:
            if w is upto:
                return
            if w.start <= counted_at < w.end:
                w.passes[w.idx] -= 1

    def acquire_tokens(self, now: int) -> BlockedError | None:
        """One token from every Global strategy, or the refusal of the first that has none."""
        for rate, ref in self.global_rates:
            if not rate.acquire(now):
                mode = "cluster" if rate.global_mode else f"local share {rate.local_threshold}"
                return RateLimitedError.from_ref(ref, f"global rate limit reached ({mode})")
        return None


def local_threshold(strategy: RateLimitStrategy, instances: int) -> int:
    """The threshold this instance enforces (see the module docstring)."""
    return strategy.per_instance_threshold(instances)


def compile_check(
    resource: str,
    strategies: Sequence[tuple[RateLimitStrategy, RuleRef]],
    node: ResourceNode,
    build: Compilation,
) -> RateLimits | None:
    """The rate-limit check of ``resource`` (None: no rate limit applies)."""
    # The spec models (pydantic) are imported with the first rules, not with this module.
    from opensergo.spec.faulttolerance import LimitMode

    grouped: dict[int, tuple[Window, list[tuple[int, RuleRef]]]] = {}
    global_rates: list[tuple[GlobalRate, RuleRef]] = []
    source = build.token_source
    for strategy, ref in strategies:
        threshold = local_threshold(strategy, build.instances)
        window = node.window(strategy.spec.stat_duration_millis)
        if strategy.spec.limitMode is LimitMode.GLOBAL and source is not None:
            flow = (ref.namespace, strategy.app or "", resource, strategy.name)
            rate = build.keep(
                ("rate", resource, ref.namespace, strategy.name, build.spec_key(strategy)),
                partial(GlobalRate, flow, source, window, threshold, build.now),
            )
            rate.local_threshold = threshold
            global_rates.append((rate, ref))
            continue
        if strategy.spec.limitMode is LimitMode.GLOBAL:
            build.warn_global(ref, "RateLimitStrategy", "as GlobalToLocal (threshold / live instances)")
        grouped.setdefault(id(window), (window, []))[1].append((threshold, ref))
    if not grouped and not global_rates:
        return None
    windows = tuple((w, min(t for t, _ in limits), tuple(limits)) for w, limits in grouped.values())
    return RateLimits(windows, tuple(global_rates))


def windows_in_use(rates: RateLimits | None) -> set[int]:
    """The ids of the node windows ``rates`` counts in (the Global fallbacks included)."""
    if rates is None:
        return set()
    return {id(w) for w, _, _ in rates.windows} | {id(g.fallback) for g, _ in rates.global_rates}
