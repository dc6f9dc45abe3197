"""Service contracts, kept in the store: one ``ServiceContract`` object per (app, contract hash).

When an instance reports (MetadataService.ReportMetadata) a ``service_contract`` whose hash the
store does not hold yet for its app, the registry writes it as a ServiceContract object
(``discovery.opensergo.io/v1alpha1``, named ``<app>-<hash prefix>``, labelled ``app``), once:
heartbeats carrying the same contract write nothing. Objects are never changed afterwards, so the
versions of an app's contract are its objects in store-revision order, and every replica serves
them (through its snapshot cache, like rules). Each ServiceInstance object lists the hashes of the
contracts its instance reports (``spec.contracts``): the app's current contract is what its live
instances report, known to every replica too.

The hash is SHA-256 over the contract message serialized deterministically, so the same routes
give the same hash in every process of every deployment.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable
from typing import Any

from google.protobuf.json_format import MessageToDict

from opensergo.controlplane.store.base import ConflictError, Store
from opensergo.proto.service_contract.v1 import service_contract_pb2 as sc
from opensergo.spec.discovery import ServiceContract
from opensergo.spec.errors import SpecError
from opensergo.spec.kinds import by_full_kind
from opensergo.spec.loader import parse_object

log = logging.getLogger(__name__)

__all__ = [
    "CONTRACT_KIND",
    "ContractRegistry",
    "InvalidContract",
    "contract_body",
    "contract_hash",
    "contract_hashes",
    "contract_object_name",
    "diff_contracts",
]

CONTRACT_KIND = by_full_kind(f"{ServiceContract.api_version()}/{ServiceContract.KIND}")
HASH_LABEL = "opensergo.io/contract-hash"
_NAME_CHARS = re.compile(r"[^a-z0-9-]+")


def contract_hash(contract: sc.ServiceContract) -> str:
    return hashlib.sha256(contract.SerializeToString(deterministic=True)).hexdigest()


def _has_content(contract: sc.ServiceContract) -> bool:
    return bool(contract.services or contract.types)


def contract_hashes(request: sc.ReportMetadataRequest) -> list[str]:
    """The hashes of the contracts a report carries (one per ServiceMetadata that has one)."""
    return sorted(
        {
            contract_hash(m.service_contract)
            for m in request.service_metadata
            if _has_content(m.service_contract)
        }
    )


def contract_object_name(app: str, digest: str) -> str:
    prefix = _NAME_CHARS.sub("-", app.lower()).strip("-")[:40] or "app"
    return f"{prefix}-{digest[:16]}"


def _method(m: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "name", "description", "inputTypes", "outputTypes", "clientStreaming", "serverStreaming",
        "httpPaths", "httpMethods",
    )  # fmt: skip
    return {k: m[k] for k in keys if k in m}


def _field(f: dict[str, Any]) -> dict[str, Any]:
    return {k: f[k] for k in ("name", "number", "label", "type", "typeName", "description") if k in f}


def contract_body(
    namespace: str, app: str, protocols: Iterable[str], contract: sc.ServiceContract
) -> dict[str, Any]:
    """The ServiceContract object of ``contract`` (the fields the spec models; upstream options
    and reserved ranges, which no dashboard view shows, are left out)."""
    digest = contract_hash(contract)
    data = MessageToDict(contract)
    spec = {
        "app": app,
        "hash": digest,
        "protocols": sorted(set(protocols)),
        "services": [
            {
                **{k: s[k] for k in ("name", "description") if k in s},
                "methods": [_method(m) for m in s.get("methods", [])],
            }
            for s in data.get("services", [])
        ],
        "types": [
            {"name": t["name"], "fields": [_field(f) for f in t.get("fields", [])]}
            for t in data.get("types", [])
            if t.get("name")
        ],
    }
    return {
        "apiVersion": CONTRACT_KIND.api_version,
        "kind": CONTRACT_KIND.kind,
        "metadata": {
            "name": contract_object_name(app, digest),
            "namespace": namespace,
            "labels": {"app": app, HASH_LABEL: digest[:63]},
        },
        "spec": spec,
    }


class ContractRegistry:
    """Writes each new (namespace, app, contract) once; see the module docstring."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._known: set[tuple[str, str, str]] = set()
        self.written = 0

    async def record(self, namespace: str, request: sc.ReportMetadataRequest) -> list[str]:
        """Store the contracts of a report that are new; returns the hashes it carries.
        InvalidContract (naming the field) when one would not be a valid object: nothing of the
        report is stored then."""
        digests, new = [], []
        for index, metadata in enumerate(request.service_metadata):
            contract = metadata.service_contract
            if not _has_content(contract):
                continue
            body = contract_body(namespace, request.app_name, metadata.protocols, contract)
            digest = body["spec"]["hash"]
            digests.append(digest)
            if (namespace, request.app_name, digest) not in self._known:
                _check_contract(body, f"service_metadata[{index}].service_contract")
                new.append(body)
        for body in new:
            digest = body["spec"]["hash"]
            key = (namespace, request.app_name, digest)
            if key in self._known:
                continue
            name = body["metadata"]["name"]
            if await self._store.get(CONTRACT_KIND.full_kind, namespace, name) is None:
                try:
                    await self._store.put(CONTRACT_KIND.full_kind, namespace, name, body, create_only=True)
                    self.written += 1
                    log.info("new service contract %s of %s/%s", digest[:16], namespace, request.app_name)
                except ConflictError:
                    pass  # another replica stored it first
            self._known.add(key)
        return digests


class InvalidContract(ValueError):
    """A reported contract that would not be a valid ServiceContract object."""


def _check_contract(body: dict[str, Any], where: str) -> None:
    try:
        parse_object(body)
    except SpecError as err:
        field = err.field.removeprefix("spec.").removeprefix("spec")
        raise InvalidContract(f"{where}{'.' if field else ''}{field}: {err.message}") from None


def _methods(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f"{s['name']}/{m['name']}": m for s in spec.get("services", []) for m in s.get("methods", [])}


def diff_contracts(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """What changed from one contract spec to another: methods (``service/method``) added,
    removed and changed (paths, HTTP methods, input or output types, streaming), and types."""
    before, after = _methods(old), _methods(new)
    changed = []
    for key in sorted(before.keys() & after.keys()):
        fields = sorted(
            k for k in set(before[key]) | set(after[key]) if before[key].get(k) != after[key].get(k)
        )
        if fields:
            changed.append({"method": key, "fields": fields, "before": before[key], "after": after[key]})
    old_types = {t["name"]: t for t in old.get("types", [])}
    new_types = {t["name"]: t for t in new.get("types", [])}
    return {
        "added": sorted(after.keys() - before.keys()),
        "removed": sorted(before.keys() - after.keys()),
        "changed": changed,
        "typesAdded": sorted(new_types.keys() - old_types.keys()),
        "typesRemoved": sorted(old_types.keys() - new_types.keys()),
        "typesChanged": sorted(
            k for k in old_types.keys() & new_types.keys() if old_types[k] != new_types[k]
        ),
    }
