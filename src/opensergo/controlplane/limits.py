"""Every resource bound of the control plane, with its default, in one place.

Each field is a setting (``Settings.limits``; the common ones also have a ``control-plane`` flag,
see docs/security.md). Parser limits (body size, nesting depth, document count) live in
:class:`opensergo.spec.limits.ParserLimits`, which every decoder of the code base applies.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from opensergo.spec.limits import DEFAULT_LIMITS, ParserLimits

DAY = 86400.0


@dataclass(frozen=True)
class Limits:
    # REST bodies, validate, the dashboard: size, nesting depth, YAML documents.
    parser: ParserLimits = field(default_factory=lambda: DEFAULT_LIMITS)
    # gRPC: the largest message a client may send (SubscribeConfig, ReportMetadata, OTLP, tokens).
    grpc_max_message_bytes: int = 4 << 20
    # SubscribeConfig: groups one stream may subscribe to, and open streams per peer identity
    # (the peer's host until the gRPC port authenticates callers; then the caller's identity).
    subscriptions_per_stream: int = 256
    streams_per_peer: int = 1000
    # A client's NACK message is stored and logged cut to this many characters.
    nack_message_chars: int = 1024
    # Closed streams kept for the dashboard's "recently disconnected" view.
    closed_streams_kept: int = 256
    # ReportMetadata: the opensergo-labels header (bytes) and the labels it may carry.
    report_labels_bytes: int = 4096
    report_labels: int = 64
    # OTLP receiver: series (resources) per app and in total, exporting instances per app, and
    # data points used from one export. What is beyond is dropped and counted in /metrics.
    otlp_series_per_app: int = 200
    otlp_series_total: int = 2000
    otlp_instances_per_app: int = 500
    otlp_points_per_export: int = 10_000
    # Store history (sqlite): changes kept per object, and how long the changes that are not an
    # object's current state are kept (deleted objects' history included). 0 disables compaction.
    history_per_object: int = 100
    history_retention: float = 30 * DAY
    history_compaction_interval: float = 3600.0
    # Dashboard sessions and logins.
    session_ttl: float = 12 * 3600.0
    login_failures: int = 10  # failed logins a source may make at once...
    login_failure_window: float = 60.0  # ...and again after this many seconds (token bucket)

    def __post_init__(self) -> None:
        for name in (
            "grpc_max_message_bytes",
            "subscriptions_per_stream",
            "streams_per_peer",
            "nack_message_chars",
            "report_labels_bytes",
            "report_labels",
            "otlp_series_per_app",
            "otlp_series_total",
            "otlp_instances_per_app",
            "otlp_points_per_export",
            "history_per_object",
            "login_failures",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name.replace('_', '-')} must be at least 1")
        for name in ("session_ttl", "login_failure_window", "history_compaction_interval"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name.replace('_', '-')} must be positive")
        if self.history_retention < 0 or self.closed_streams_kept < 0:
            raise ValueError("history-retention and closed-streams-kept must not be negative")
