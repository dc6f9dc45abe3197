"""Governance (opensergo.governance.runtime) against a fake client: pushes drive the engine."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import yaml

from opensergo.cache import rules as cache_rules
from opensergo.database import rules as database_rules
from opensergo.governance import Engine, RateLimitedError, runtime
from opensergo.governance.faulttolerance.engine import KINDS
from opensergo.spec import parse_object
from opensergo.spec.base import Resource

from .conftest import APP, fallback, rate_limit, rule

pytestmark = pytest.mark.unit


class FakeSubscription:
    def __init__(self, client: FakeClient, kind: str) -> None:
        self.client = client
        self.kind = kind

    def unsubscribe(self) -> None:
        self.client.callbacks.pop(self.kind, None)


class FakeClient:
    app = APP
    namespace = "default"
    connected = True

    def __init__(self) -> None:
        self.callbacks: dict[str, Callable[[list[Resource], int], None]] = {}

    def subscribe(self, kind: str, *, callback: Callable[[list[Resource], int], None]) -> FakeSubscription:
        self.callbacks[kind] = callback
        return FakeSubscription(self, kind)

    def push(self, kind: str, *docs: str, version: int = 1) -> None:
        self.callbacks[kind]([parse_object(yaml.safe_load(d)) for d in docs], version)


def instance(name: str, app: str = APP) -> str:
    return (
        "apiVersion: discovery.opensergo.io/v1alpha1\nkind: ServiceInstance\n"
        f"metadata: {{name: {name}, namespace: default, labels: {{app: {app}}}}}\n"
        f"spec: {{app: {app}, nodeId: {name}}}\n"
    )


def governance(engine: Engine, coalesce: float = 0.0) -> tuple[FakeClient, runtime.Governance]:
    client = FakeClient()
    gov = runtime.attach(client, engine, coalesce=coalesce)  # type: ignore[arg-type]
    return client, gov


def test_attach_subscribes_every_fault_tolerance_kind_and_instances(engine: Engine) -> None:
    client, gov = governance(engine)
    database_kinds = {k.KIND for k in database_rules.KINDS}  # opensergo.database follows these too
    database_kinds |= {k.KIND for k in cache_rules.KINDS}  # and opensergo.cache these
    assert set(client.callbacks) == {*KINDS, "ServiceInstance", *database_kinds}
    gov.detach()
    assert client.callbacks == {}
    only_rules = runtime.Governance(FakeClient(), engine, instances=False).attach()  # type: ignore[arg-type]
    assert set(only_rules.client.callbacks) == {*KINDS, *database_kinds}  # type: ignore[attr-defined]


def test_pushes_drive_the_engine(engine: Engine) -> None:
    client, gov = governance(engine)
    client.push("RateLimitStrategy", rate_limit("rl", 0))
    client.push("FaultToleranceRule", rule("r", ["GET:/x"], [("rl", "RateLimitStrategy")]), version=3)
    assert engine.resources == ("GET:/x",)
    with pytest.raises(RateLimitedError):
        engine.entry("GET:/x")
    assert gov.versions["FaultToleranceRule"] == 3
    client.push("FaultToleranceRule", version=4)  # deleted
    assert engine.resources == ()
    engine.entry("GET:/x").exit()
    status = gov.status()
    assert status["app"] == APP and status["resources"] == []


async def test_pushes_arriving_together_apply_in_one_recompile(engine: Engine) -> None:
    client, gov = governance(engine, coalesce=0.02)
    before = engine.version
    client.push("FaultToleranceRule", rule("r", ["GET:/x"], [("rl", "RateLimitStrategy")], "busy"))
    client.push("RateLimitStrategy", rate_limit("rl", 0))
    client.push("HttpRequestFallbackAction", fallback("busy", 503, "busy"))
    assert engine.version == before  # not yet
    for _ in range(100):
        if engine.version != before:
            break
        await asyncio.sleep(0.01)
    assert engine.version == before + 1
    assert gov.applied == 1
    assert engine.problems == ()
    with pytest.raises(RateLimitedError) as info:
        engine.entry("GET:/x")
    assert info.value.fallback is not None and info.value.fallback.status == 503


def test_instance_pushes_set_the_instance_count(engine: Engine) -> None:
    client, gov = governance(engine)
    client.push("ServiceInstance", instance("a"), instance("b"), instance("c"))
    assert engine.instances == 3 and gov.instance_count == 3
    client.push("ServiceInstance", instance("a"))
    assert engine.instances == 1
    client.push("ServiceInstance")
    assert engine.instances == 1 and gov.instance_count == 0


def test_enable_from_env_is_off_without_bootstrap() -> None:
    assert runtime.enable_from_env(app="x", environ={}) is None
    assert runtime.current() is None


def test_block_response_order() -> None:
    from opensergo.governance import BlockedError, FallbackResponse, blocking

    plain = BlockedError("r", "rule", "s", "RateLimitStrategy")
    assert blocking.block_response(plain) is blocking.DEFAULT_BLOCK_RESPONSE
    own = FallbackResponse(503, "x")
    with_action = BlockedError("r", "rule", "s", "RateLimitStrategy", own)
    assert blocking.block_response(with_action) is own
    handled = FallbackResponse(200, "h")
    assert blocking.block_response(with_action, handler=lambda e: handled) is handled
    assert blocking.block_response(with_action, handler=lambda e: None) is own
