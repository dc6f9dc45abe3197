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
* ``Global``: cluster-wide limiting is a separate piece of work; until then it is enforced as
  GlobalToLocal, with a warning logged once per strategy.
"""

from __future__ import annotations

from opensergo.spec.faulttolerance import LimitMode, RateLimitStrategy


def local_threshold(strategy: RateLimitStrategy, instances: int) -> int:
    spec = strategy.spec
    if spec.limitMode is LimitMode.LOCAL or spec.threshold == 0:
        return spec.threshold
    return max(1, spec.threshold // max(1, instances))


def interval_ms(strategy: RateLimitStrategy) -> int:
    return strategy.spec.stat_duration_millis
