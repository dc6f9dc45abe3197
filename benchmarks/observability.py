"""What observability costs: tracing per request, and contract derivation at start-up.

1. One ASGI request (a Starlette route behind :class:`OpenSergoMiddleware`, a rate-limit rule on
   its resource so the engine does real work) driven in process, without a network, per variant:
   the bare app; governance only (tracing off); governance + tracing with every request sampled
   (spans to a BatchSpanProcessor whose exporter drops them, so the SDK's recording and batching
   count but no network); governance + tracing with no request sampled.
2. The service contract of an app with 500 routes, derived as ``opensergo-run`` does at start-up:
   FastAPI (from its OpenAPI document), Flask (from its url_map).

Usage: python benchmarks/observability.py [REQUESTS]   (default 20000)
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult  # noqa: E402
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import PlainTextResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

from opensergo.governance import Engine, load_rules  # noqa: E402
from opensergo.integrations.asgi import OpenSergoMiddleware  # noqa: E402
from opensergo.observability.tracing import enable_tracing  # noqa: E402

RULES = """
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: RateLimitStrategy
metadata: {name: generous, labels: {app: bench}}
spec: {metricType: RequestAmount, limitMode: Local, threshold: 100000000, statDuration: 1s}
---
apiVersion: fault-tolerance.opensergo.io/v1alpha1
kind: FaultToleranceRule
metadata: {name: guard-users, labels: {app: bench}}
spec:
  targets: [{targetResourceName: "GET:/users/{user_id}"}]
  strategies: [{name: generous, kind: RateLimitStrategy}]
"""


class Discard(SpanExporter):
    def __init__(self) -> None:
        self.spans = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


async def user(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def app(governed: bool) -> Any:
    starlette = Starlette(routes=[Route("/users/{user_id:int}", user)])
    if not governed:
        return starlette
    engine = Engine()
    result = load_rules(RULES, app="bench", engine=engine)
    assert not result.problems, result.problems
    return OpenSergoMiddleware(starlette, engine=engine)


SCOPE = {
    "type": "http",
    "asgi": {"version": "3.0"},
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "path": "/users/42",
    "raw_path": b"/users/42",
    "query_string": b"",
    "root_path": "",
    "headers": [(b"host", b"bench"), (b"user-agent", b"bench")],
    "client": ("127.0.0.1", 5000),
    "server": ("127.0.0.1", 8000),
}


async def drive(asgi: Any, requests: int) -> list[float]:
    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        return None

    samples = []
    batch = 500
    for _ in range(requests // batch):
        started = time.perf_counter_ns()
        for _ in range(batch):
            await asgi(dict(SCOPE), receive, send)
        samples.append((time.perf_counter_ns() - started) / batch / 1000)
    return samples


def per_request(asgi: Any, requests: int) -> float:
    asyncio.run(drive(asgi, 1000))  # warm caches (route resolution, rule compilation)
    gc.collect()
    samples = asyncio.run(drive(asgi, requests))
    return statistics.median(samples)


def traced(sampler: Any, requests: int) -> tuple[float, int]:
    exporter = Discard()
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    handle = enable_tracing(app="bench", tracer_provider=provider, logs=False, instrument=False, environ={})
    try:
        cost = per_request(app(governed=True), requests)
    finally:
        handle.shutdown()
        provider.shutdown()
    return cost, exporter.spans


def otel_alone(requests: int) -> float:
    """OpenTelemetry's ASGI middleware around the bare app, every request sampled: its own cost."""
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    provider = TracerProvider(sampler=ParentBased(ALWAYS_ON))
    provider.add_span_processor(BatchSpanProcessor(Discard()))
    middleware = OpenTelemetryMiddleware(
        app(governed=False), tracer_provider=provider, exclude_spans=["receive", "send"]
    )
    try:
        return per_request(middleware, requests)
    finally:
        provider.shutdown()


def tracing_costs(requests: int) -> None:
    bare = per_request(app(governed=False), requests)
    alone = otel_alone(requests)
    governed = per_request(app(governed=True), requests)
    sampled, sampled_spans = traced(ParentBased(ALWAYS_ON), requests)
    unsampled, unsampled_spans = traced(ParentBased(ALWAYS_OFF), requests)
    print(f"ASGI request, median of {requests // 500} batches of 500 ({requests} requests), in process:")
    print(f"  {'variant':44} {'µs/request':>10} {'added':>9}")
    for name, value, base in (
        ("bare Starlette app", bare, None),
        ("OTel ASGI middleware alone, sampled", alone, bare),
        ("governance only (tracing off)", governed, bare),
        (f"governance + tracing, sampled ({sampled_spans} spans)", sampled, governed),
        (f"governance + tracing, unsampled ({unsampled_spans} spans)", unsampled, governed),
    ):
        added = f"+{value - base:.1f}" if base is not None else ""
        print(f"  {name:44} {value:10.1f} {added:>9}")


def fastapi_app(routes: int) -> Any:
    from fastapi import FastAPI
    from pydantic import BaseModel

    class Item(BaseModel):
        id: int
        name: str
        tags: list[str] = []

    api = FastAPI(title="big")
    for n in range(routes):

        async def handler(item_id: int, q: str | None = None) -> Item:
            return Item(id=item_id, name="x")

        handler.__name__ = f"route_{n}"
        api.get(f"/resource{n}/{{item_id}}", response_model=Item)(handler)
    return api


def flask_app(routes: int) -> Any:
    from flask import Flask

    web = Flask("big")
    for n in range(routes):

        def view(item_id: int) -> str:
            return ""

        web.add_url_rule(f"/resource{n}/<int:item_id>", f"route_{n}", view, methods=["GET", "POST"])
    return web


def timed(fn: Callable[[], Any], rounds: int = 5) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def contract_costs(routes: int = 500) -> None:
    from opensergo.integrations.contracts import flask_contract, starlette_contract

    big_fastapi = fastapi_app(routes)
    big_flask = flask_app(routes)
    contract = starlette_contract(big_fastapi)
    print(f"Contract derivation, {routes} routes (median of 5):")
    print(f"  FastAPI (OpenAPI document): {timed(lambda: starlette_contract(big_fastapi)):7.1f} ms"
          f"  -> {sum(len(s.methods) for s in contract.services)} methods, {len(contract.types)} types,"
          f" {contract.ByteSize() / 1024:.0f} KiB")  # fmt: skip
    flask = flask_contract(big_flask)
    methods = sum(len(s.methods) for s in flask.services)
    print(f"  Flask (url_map):            {timed(lambda: flask_contract(big_flask)):7.1f} ms"
          f"  -> {methods} methods, {flask.ByteSize() / 1024:.0f} KiB")  # fmt: skip


def main() -> None:
    requests = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    tracing_costs(requests)
    contract_costs()


if __name__ == "__main__":
    main()
