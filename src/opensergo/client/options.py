"""The client's settings, grouped the way httpx groups ``Timeout`` and ``Limits``.

::

    client = OpenSergoClient(
        "cp.example:10246",
        app="foo-app",
        instance=InstanceInfo(zone="z1", labels={"version": "v2"}),
        backoff=Backoff(initial=0.5, maximum=30.0),
        heartbeat=Heartbeat(interval=10.0),
        snapshot=Snapshot(directory="/var/cache/opensergo"),
    )

Each group is a frozen dataclass, so one value can be shared between clients. ``heartbeat=None``
turns metadata reporting off and ``snapshot=None`` the on-disk snapshot, as ``timeout=None`` turns
timeouts off in httpx. TLS is the fourth group: :class:`~opensergo.client.tls.TlsConfig`.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from opensergo.common.protocol import Encoding

if TYPE_CHECKING:  # the spec package is heavy; bootstrap (which imports this) stays light
    from opensergo.client._spec import Decoder, Parser

__all__ = [
    "DEFAULT_BACKOFF",
    "DEFAULT_CODEC",
    "DEFAULT_HEARTBEAT",
    "DEFAULT_INSTANCE",
    "DEFAULT_SNAPSHOT",
    "Backoff",
    "Codec",
    "Heartbeat",
    "InstanceInfo",
    "Snapshot",
]


@dataclass(frozen=True)
class Backoff:
    """How long to wait before reconnecting: exponential with full jitter,
    ``uniform(0, min(maximum, initial * multiplier**attempt))`` seconds."""

    initial: float = 0.2
    maximum: float = 10.0
    multiplier: float = 2.0
    rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.maximum < self.initial or self.multiplier < 1:
            raise ValueError("backoff needs 0 < initial <= maximum and multiplier >= 1")

    def ceiling(self, attempt: int) -> float:
        """The upper bound of the delay before retry number ``attempt`` (0-based)."""
        exponent = min(attempt, 64)  # avoid float overflow; the cap applies long before
        return float(min(self.maximum, self.initial * self.multiplier**exponent))

    def delay(self, attempt: int) -> float:
        return self.rng.uniform(0.0, self.ceiling(attempt))


@dataclass(frozen=True)
class Heartbeat:
    """Metadata reporting: ``ReportMetadata`` at start, then every ``interval`` seconds (only once
    when ``interval`` is None); each call gives up after ``timeout`` seconds."""

    interval: float | None = 30.0
    timeout: float = 5.0

    def __post_init__(self) -> None:
        if self.interval is not None and self.interval <= 0:
            raise ValueError("heartbeat interval must be positive (or None: report once)")
        if self.timeout <= 0:
            raise ValueError("heartbeat timeout must be positive")


@dataclass(frozen=True)
class Snapshot:
    """The on-disk snapshot of the last rules received, served at start while the control plane is
    unreachable. ``directory`` None: ``$OPENSERGO_SNAPSHOT_DIR``, else the user cache directory
    (see :func:`~opensergo.client.snapshot.default_snapshot_dir`)."""

    directory: Path | str | None = None


@dataclass(frozen=True)
class InstanceInfo:
    """How this instance describes itself: the placement fields of the reported Node (``tag``,
    ``cluster``, ``env``, ``region``, ``zone``) and custom selector ``labels`` (e.g. a version).
    The control plane matches VirtualWorkload selectors against all of them."""

    tag: str | None = None
    cluster: str | None = None
    env: str | None = None
    region: str | None = None
    zone: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)

    def selector_labels(self) -> dict[str, str]:
        """The fields that are set, then the custom labels (which win)."""
        placement = (
            ("tag", self.tag),
            ("cluster", self.cluster),
            ("env", self.env),
            ("region", self.region),
            ("zone", self.zone),
        )
        labels = {k: v for k, v in placement if v}
        labels.update(self.labels)
        return labels


@dataclass(frozen=True)
class Codec:
    """How pushes are read: ``decoder`` turns a pushed ``Any`` into a Resource, ``parser`` a
    snapshot entry (None: the spec package's codec and loader); ``encoding`` is what the client
    asks our control plane for (NATIVE: the full object; UPSTREAM: the upstream protos, as the Go
    and Java SDKs receive them)."""

    decoder: Decoder | None = None
    parser: Parser | None = None
    encoding: Encoding = Encoding.NATIVE


DEFAULT_BACKOFF = Backoff()
DEFAULT_HEARTBEAT = Heartbeat()
DEFAULT_SNAPSHOT = Snapshot()
DEFAULT_INSTANCE = InstanceInfo()
DEFAULT_CODEC = Codec()
