"""Traces and logs from the data planes: the OTLP/gRPC TraceService and LogsService on the
control plane's gRPC port (:mod:`.otlp`), a bounded in-memory store the dashboard reads
(:mod:`.store`), and forwarding to a real tracing backend (:mod:`.forward`)."""
