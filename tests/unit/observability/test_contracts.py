"""Service contracts derived from real apps, and kept by the control plane once per version."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from flask import Flask
from google.protobuf.json_format import MessageToDict
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from opensergo.controlplane.contracts import (
    CONTRACT_KIND,
    ContractRegistry,
    contract_hash,
    contract_hashes,
    diff_contracts,
)
from opensergo.controlplane.store.sqlite import SqliteStore
from opensergo.integrations.contracts import (
    flask_contract,
    grpc_contract,
    merge_contracts,
    starlette_contract,
)
from opensergo.proto.service_contract.v1 import service_contract_pb2 as sc

pytestmark = pytest.mark.unit
FD = sc.FieldDescriptor


class Item(BaseModel):
    name: str
    price: float
    tags: list[str] = []


class Receipt(BaseModel):
    id: int
    item: Item


def fastapi_app() -> FastAPI:
    app = FastAPI(title="shop")

    @app.get("/items/{item_id}", response_model=Item)
    async def get_item(item_id: int, verbose: bool = False) -> Item:
        """Reads one item."""
        return Item(name="x", price=1)

    @app.post("/items", response_model=Receipt, status_code=201)
    async def create_item(item: Item) -> Receipt:
        return Receipt(id=1, item=item)

    return app


def methods(contract: sc.ServiceContract) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for s in MessageToDict(contract)["services"] for m in s.get("methods", [])}


def test_fastapi_contract_from_openapi() -> None:
    contract = starlette_contract(fastapi_app())
    assert [s.name for s in contract.services] == ["shop"]
    found = methods(contract)
    get = next(m for m in found.values() if m["httpMethods"] == ["GET"])
    assert get["httpPaths"] == ["/items/{item_id}"] and get["description"] == "Reads one item."
    assert get["outputTypes"] == ["Item"]
    [params] = [t for t in contract.types if t.name == get["inputTypes"][0]]
    assert [(f.name, f.type) for f in params.fields] == [
        ("item_id", FD.TYPE_INT64),
        ("verbose", FD.TYPE_BOOL),
    ]
    post = next(m for m in found.values() if m["httpMethods"] == ["POST"])
    assert (
        post["httpPaths"] == ["/items"]
        and post["inputTypes"] == ["Item"]
        and post["outputTypes"] == ["Receipt"]
    )
    types = {t.name: t for t in contract.types}
    assert [(f.name, f.type, f.label) for f in types["Item"].fields] == [
        ("name", FD.TYPE_STRING, FD.LABEL_OPTIONAL),
        ("price", FD.TYPE_DOUBLE, FD.LABEL_OPTIONAL),
        ("tags", FD.TYPE_STRING, FD.LABEL_REPEATED),
    ]
    item_field = next(f for f in types["Receipt"].fields if f.name == "item")
    assert (item_field.type, item_field.type_name) == (FD.TYPE_MESSAGE, "Item")
    # Deterministic: the same app gives the same hash; a new route a new one.
    assert contract_hash(starlette_contract(fastapi_app())) == contract_hash(contract)
    app = fastapi_app()
    app.get("/health")(lambda: {"ok": True})
    assert contract_hash(starlette_contract(app)) != contract_hash(contract)


def test_starlette_contract_from_routes_and_mounts() -> None:
    async def ok(request: Any) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(
        routes=[
            Route("/users/{user_id:int}", ok, methods=["GET", "DELETE"]),
            Mount("/api", routes=[Route("/items/{item_id}", ok)]),
        ]
    )
    found = MessageToDict(starlette_contract(app))["services"][0]["methods"]
    pairs = sorted(
        (verb, path) for m in found for verb, path in zip(m["httpMethods"], m["httpPaths"], strict=True)
    )
    assert pairs == [
        ("DELETE", "/users/{user_id}"),
        ("GET", "/api/items/{item_id}"),
        ("GET", "/users/{user_id}"),
    ]


def test_flask_contract_from_the_url_map() -> None:
    app = Flask("shop")

    @app.route("/users/<int:user_id>", methods=["GET", "PUT"])
    def user(user_id: int) -> str:
        """One user."""
        return ""

    @app.post("/orders/<slug>")
    def order(slug: str) -> str:
        return ""

    contract = flask_contract(app)
    found = methods(contract)
    assert set(found) == {"user", "order"}  # the static rule is not an endpoint
    assert (
        found["user"]["httpMethods"] == ["GET", "PUT"]
        and found["user"]["httpPaths"] == ["/users/<user_id>"] * 2
    )
    assert found["user"]["description"] == "One user."
    types = {t.name: t for t in contract.types}
    assert [(f.name, f.type) for f in types[found["user"]["inputTypes"][0]].fields] == [
        ("user_id", FD.TYPE_INT64)
    ]
    assert [(f.name, f.type) for f in types[found["order"]["inputTypes"][0]].fields] == [
        ("slug", FD.TYPE_STRING)
    ]


def test_django_contract_from_the_resolver() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tests.unit.observability.django_contract"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    contract = json.loads(out.stdout.strip().splitlines()[-1])
    found = {m["name"]: m for m in contract["services"][0]["methods"]}
    assert found["item"]["httpPaths"] == ["/api/items/<item_id>"] and found["item"]["httpMethods"] == ["GET"]
    assert (
        found["orders"]["httpMethods"] == ["GET", "POST"] and found["orders"]["httpPaths"] == ["/orders/"] * 2
    )
    assert found["orders"]["description"] == "Lists or creates orders."
    assert found["article"]["httpPaths"] == ["/articles/(?P<year>[0-9]{4})/"]
    params = {t["name"]: t for t in contract["types"]}
    assert [(f["name"], f["type"]) for f in params[found["item"]["inputTypes"][0]]["fields"]] == [
        ("item_id", "TYPE_INT64")
    ]


def test_grpc_contract_from_descriptors() -> None:
    name = "opensergo.proto.service_contract.v1.MetadataService"
    contract = grpc_contract([name, "unknown.Service"])
    services = {s.name: s for s in contract.services}
    [method] = services[name].methods
    assert method.name == "ReportMetadata"
    assert list(method.input_types) == ["opensergo.proto.service_contract.v1.ReportMetadataRequest"]
    assert list(method.output_types) == ["opensergo.proto.service_contract.v1.ReportMetadataReply"]
    assert not method.client_streaming and not method.server_streaming
    assert not services["unknown.Service"].methods
    types = {t.name: t for t in contract.types}
    request = types["opensergo.proto.service_contract.v1.ReportMetadataRequest"]
    fields = {f.name: f for f in request.fields}
    assert (fields["app_name"].type, fields["app_name"].number) == (FD.TYPE_STRING, 1)
    assert fields["service_metadata"].label == FD.LABEL_REPEATED
    assert fields["node"].type_name == "opensergo.proto.service_contract.v1.Node"
    assert "opensergo.proto.service_contract.v1.Node" in types  # referenced types follow


def report(app: str, *contracts: sc.ServiceContract) -> sc.ReportMetadataRequest:
    request = sc.ReportMetadataRequest(app_name=app)
    for contract in contracts:
        request.service_metadata.add(protocols=["http"]).service_contract.CopyFrom(contract)
    return request


async def test_registry_stores_each_version_once(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    await store.open()
    try:
        registry = ContractRegistry(store)
        first = starlette_contract(fastapi_app())
        assert await registry.record("default", report("shop", first)) == [contract_hash(first)]
        await registry.record("default", report("shop", first))
        assert registry.written == 1
        # Another replica (a new registry on the same store) does not write it again.
        again = ContractRegistry(store)
        await again.record("default", report("shop", first))
        assert again.written == 0
        app = fastapi_app()

        @app.delete("/items/{item_id}")
        async def delete_item(item_id: int) -> None:
            return None

        second = starlette_contract(app)
        await registry.record("default", report("shop", second))
        stored = sorted(await store.list(CONTRACT_KIND.full_kind, "default"), key=lambda o: o.revision)
        assert [o.body["spec"]["hash"] for o in stored] == [contract_hash(first), contract_hash(second)]
        assert stored[0].body["metadata"]["labels"]["app"] == "shop"
        assert contract_hashes(report("shop", first, sc.ServiceContract())) == [contract_hash(first)]
        changes = diff_contracts(stored[0].body["spec"], stored[1].body["spec"])
        assert changes["added"] == ["shop/delete_item_items__item_id__delete"]
        assert changes["removed"] == [] and changes["changed"] == []
        assert changes["typesAdded"] == ["delete_item_items__item_id__deleteParameters"]
    finally:
        await store.close()


def test_merge_keeps_every_service_and_each_type_once() -> None:
    a = starlette_contract(fastapi_app())
    b = starlette_contract(fastapi_app(), name="other")
    merged = merge_contracts([a, b])
    assert [s.name for s in merged.services] == ["shop", "other"]
    assert len(merged.types) == len(a.types)
