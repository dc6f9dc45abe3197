"""Server values (the session key, revoked sessions) on a real kube-apiserver: Secrets in the
control plane's namespace, created once by whichever replica comes first, expiring when asked."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from opensergo.controlplane.store.kubernetes import KubernetesStore
from tests.kube import NAMESPACE, KubeApiServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeApiServer]:
    server = KubeApiServer(tmp_path_factory.mktemp("kube"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


async def test_values_are_secrets_created_once(kube: KubeApiServer, tmp_path: Path) -> None:
    one = KubernetesStore(kubeconfig=str(kube.kubeconfig), namespace=NAMESPACE)
    two = KubernetesStore(kubeconfig=str(kube.kubeconfig), namespace=NAMESPACE)
    await one.open()
    await two.open()
    try:
        assert await one.get_value("auth/session-key") is None
        assert await one.get_or_create_value("auth/session-key", "aa" * 32) == "aa" * 32
        assert await two.get_or_create_value("auth/session-key", "bb" * 32) == "aa" * 32
        with kube.client() as client:
            secrets = client.get(
                f"/api/v1/namespaces/{NAMESPACE}/secrets",
                params={"labelSelector": "opensergo.io/server-value"},
            ).json()["items"]
        assert len(secrets) == 1 and secrets[0]["type"] == "Opaque"
        assert await two.get_or_create_value("auth/revoked-session/x", "revoked", ttl=1) == "revoked"
        assert await one.get_value("auth/revoked-session/x") == "revoked"
        await asyncio.sleep(1.2)
        assert await one.get_value("auth/revoked-session/x") is None
        assert await one.get_or_create_value("auth/revoked-session/x", "again", ttl=60) == "again"
    finally:
        await one.close()
        await two.close()
