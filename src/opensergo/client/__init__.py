"""The OpenSergo data-plane client (SDK): subscribe to rules, cache them, report metadata.

>>> from opensergo.client import OpenSergoClient
>>> with OpenSergoClient("127.0.0.1:10246", app="foo-app") as client:  # doctest: +SKIP
...     sub = client.subscribe("RateLimitStrategy", callback=lambda items, version: print(version, items))
...     client.wait_synced(timeout=5)
"""

from opensergo.client.bootstrap import BootstrapConfig, BootstrapError, governance_enabled, load_bootstrap
from opensergo.client.cache import CacheEntry, RuleCache
from opensergo.client.client import OpenSergoClient, Subscription
from opensergo.client.connection import Backoff
from opensergo.client.reporter import ServiceInfo

__all__ = [
    "Backoff",
    "BootstrapConfig",
    "BootstrapError",
    "CacheEntry",
    "OpenSergoClient",
    "RuleCache",
    "ServiceInfo",
    "Subscription",
    "governance_enabled",
    "load_bootstrap",
]
