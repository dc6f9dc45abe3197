"""The OpenSergo data-plane client (SDK): subscribe to rules, cache them, report metadata.

>>> from opensergo.client import OpenSergoClient
>>> with OpenSergoClient("127.0.0.1:10246", app="foo-app") as client:  # doctest: +SKIP
...     sub = client.subscribe("RateLimitStrategy", callback=lambda items, version: print(version, items))
...     client.wait_synced(timeout=5)

Settings come in groups (:mod:`opensergo.client.options`): ``Backoff``, ``Heartbeat``,
``Snapshot``, ``InstanceInfo``, ``Codec``, and ``TlsConfig``.
"""

from opensergo.client.bootstrap import BootstrapError, governance_enabled
from opensergo.client.client import OpenSergoClient, Subscription
from opensergo.client.options import Backoff, Codec, Heartbeat, InstanceInfo, Snapshot
from opensergo.client.reporter import ServiceInfo
from opensergo.client.tls import TlsConfig, TlsError

__all__ = [
    "Backoff",
    "BootstrapError",
    "Codec",
    "Heartbeat",
    "InstanceInfo",
    "OpenSergoClient",
    "ServiceInfo",
    "Snapshot",
    "Subscription",
    "TlsConfig",
    "TlsError",
    "governance_enabled",
]
