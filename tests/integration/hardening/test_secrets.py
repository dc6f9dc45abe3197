"""Findings 5 and 11 against a real control plane with auth on: secrets marked in each kind's
schema are redacted everywhere (URLs and free-form props included), the SDK's on-disk snapshot
holds none, and validate never tells a viewer whether a guessed secret matches."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from opensergo.client import OpenSergoClient, Snapshot
from tests.helpers import ControlPlaneProcess, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

DB = "database.opensergo.io/v1alpha1"
FT = "fault-tolerance.opensergo.io/v1alpha1"
AES_KEY = "aes-Key-0123456789"
URL_PASSWORD = "url-Pass-0123456789"
USERINFO_PASSWORD = "userinfo-Pass-987"
PASSWORD = "field-Pass-0123456789"
SECRETS = (AES_KEY, URL_PASSWORD, USERINFO_PASSWORD, PASSWORD)
TOKENS = {
    "tokens": [
        {"name": "ops", "token": "ops-token-123", "roles": {"*": "admin"}},
        {"name": "reader", "token": "reader-token-123", "roles": {"*": "viewer"}},
        # The data plane's identity: gRPC subscriptions need the agent role (docs/security.md).
        {"name": "shop-sdk", "token": "shop-agent-token-123", "roles": {"*": "agent"}},
    ]
}
OPS = {"Authorization": "Bearer ops-token-123"}
READER = {"Authorization": "Bearer reader-token-123"}
ENCRYPTIONS = f"/apis/{DB}/namespaces/default/encryptions"
ENDPOINTS = f"/apis/{DB}/namespaces/default/databaseendpoints"


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[ControlPlaneProcess]:
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(yaml.safe_dump(TOKENS))
    logs = tmp_path / "logs"
    logs.mkdir()
    cp = ControlPlaneProcess(
        tmp_path / "data", logs, ["--allow-loopback", "--auth", "on", "--auth-tokens", str(tokens)]
    )
    cp.start()
    yield cp
    cp.stop()


def encryption() -> dict[str, Any]:
    return {
        "apiVersion": DB,
        "kind": "Encryption",
        "metadata": {"name": "orders-enc", "labels": {"app": "shop"}},
        "spec": {
            "encryptors": {
                "aes": {"type": "AES", "props": {"aes-key-value": AES_KEY, "digest-algorithm-name": "SHA-1"}}
            },
            "tables": {"t_order": {"columns": {"card": {"cipherColumn": "card_c", "encryptorName": "aes"}}}},
        },
    }


def endpoint(password: str = PASSWORD) -> dict[str, Any]:
    url = f"jdbc:mysql://app:{USERINFO_PASSWORD}@db:3306/orders?user=app&password={URL_PASSWORD}&useSSL=false"
    return {
        "apiVersion": DB,
        "kind": "DatabaseEndpoint",
        "metadata": {"name": "orders-db", "labels": {"app": "shop"}},
        "spec": {"database": {"MySQL": {"url": url, "username": "app", "password": password}}},
    }


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"{secret} leaked"


def test_marked_secrets_are_redacted_everywhere(secured: ControlPlaneProcess) -> None:
    """Redaction missed aes-key-value in Encryption props and password= inside a JDBC url."""
    url = secured.http_url
    with httpx.Client(base_url=url, headers=OPS, timeout=30) as c:
        assert c.put(f"{ENCRYPTIONS}/orders-enc", json=encryption()).status_code == 201
        created = c.put(f"{ENDPOINTS}/orders-db", json=endpoint())
        assert created.status_code == 201
        shown = created.json()["spec"]["database"]["MySQL"]
        assert shown["url"] == (
            "jdbc:mysql://app:******@db:3306/orders?user=app&password=******&useSSL=false"
        )
        enc = c.get(f"{ENCRYPTIONS}/orders-enc").json()
        assert enc["spec"]["encryptors"]["aes"]["props"] == {
            "aes-key-value": "******",
            "digest-algorithm-name": "SHA-1",
        }
        # Writing the redacted form back keeps the stored secrets.
        db = c.get(f"{ENDPOINTS}/orders-db").json()
        db["spec"]["database"]["MySQL"]["username"] = "app2"
        assert c.put(f"{ENDPOINTS}/orders-db", json=db).status_code == 200
        enc["metadata"]["labels"]["tier"] = "gold"
        assert c.put(f"{ENCRYPTIONS}/orders-enc", json=enc).status_code == 200
        seen = [
            c.get(path).text
            for path in (
                ENCRYPTIONS,
                ENDPOINTS,
                f"{ENCRYPTIONS}/orders-enc",
                f"{ENDPOINTS}/orders-db/history",
                f"{ENCRYPTIONS}/orders-enc/history",
                f"/apis/{DB}/encryptions",
                "/api/v1/rules?kind=Encryption",
            )
        ]
        seen.append(c.post(f"{ENDPOINTS}/orders-db/rollback?dryRun=All", json={"revision": 2}).text)
        check = c.post("/api/v1/validate", json={"yaml": yaml.safe_dump(encryption())})
        seen.append(check.text)
        assert check.json()["valid"] is True
        for text in seen:
            assert_no_secret(text)
        assert "******" in check.text

    # The data plane still receives the real values; nothing secret reaches its on-disk snapshot.
    snapshots = secured.data_dir.parent / "sdk-snapshots"
    client = OpenSergoClient(
        secured.grpc_address,
        app="shop",
        snapshot=Snapshot(directory=snapshots),
        heartbeat=None,
        token="shop-agent-token-123",
    )
    received: dict[str, Any] = {}
    client.subscribe(f"{DB}/DatabaseEndpoint", callback=lambda rules, v: received.update(db=rules))
    client.subscribe(f"{DB}/Encryption", callback=lambda rules, v: received.update(enc=rules))
    client.start()
    try:
        wait_until(lambda: received.get("db") and received.get("enc"), timeout=20, what="both pushes")
        mysql = received["db"][-1].spec.database.MySQL
        assert mysql.password == PASSWORD and URL_PASSWORD in mysql.url and mysql.username == "app2"
        props = received["enc"][-1].spec.encryptors["aes"].props
        assert props["aes-key-value"] == AES_KEY
    finally:
        client.stop()
    files = [p for p in snapshots.rglob("*.json")]
    assert files, "the client wrote no snapshot"
    for file in files:
        assert_no_secret(file.read_text())
    assert_no_secret(secured.logs())


def test_validate_never_confirms_a_guessed_secret(secured: ControlPlaneProcess) -> None:
    """Finding 11: a viewer's validate of the object with the right password answered
    ``unchanged: true`` (and a diff without "(changed)"); a wrong guess did not."""
    url = secured.http_url
    assert httpx.put(f"{url}{ENDPOINTS}/orders-db", json=endpoint(), headers=OPS).status_code == 201

    def validate(password: str) -> dict[str, Any]:
        answer = httpx.post(
            f"{url}/api/v1/validate", json={"yaml": yaml.safe_dump(endpoint(password))}, headers=READER
        )
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    right, wrong = validate(PASSWORD), validate("not-the-password")
    assert right["valid"] and wrong["valid"]
    assert right["unchanged"] is False and wrong["unchanged"] is False
    assert right["diff"] == wrong["diff"]
    assert json.dumps(right).count("(changed)") == json.dumps(wrong).count("(changed)") > 0
    # Redacted secrets written back are not guesses: they keep the stored values.
    redacted = httpx.get(f"{url}{ENDPOINTS}/orders-db", headers=OPS).json()
    same = httpx.post(
        f"{url}/api/v1/validate", json={"yaml": yaml.safe_dump(redacted)}, headers=READER
    ).json()
    assert same["unchanged"] is True and not any("(changed)" in line for line in same["diff"])
