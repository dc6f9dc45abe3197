"""Service discovery: our own kind ``discovery.opensergo.io/v1alpha1/ServiceInstance``.

Upstream's discovery spec is empty. We model application-level registration (like Dubbo 3 and
Nacos): one ServiceInstance per running instance of an app, created by the control plane from
``MetadataService.ReportMetadata`` and removed when the instance's registration expires. It is
labelled ``app: <app>``, so the universal transport delivers the instance list of an app to
anyone who subscribes (namespace, app, this kind) — the same mechanism as for rules; the payload
is the native ``opensergo.ext.v1.Resource`` form (there is no upstream message).
"""

from __future__ import annotations

import ipaddress
from typing import ClassVar

from pydantic import Field, field_validator

from opensergo.spec.base import Resource, SpecModel

GROUP = "discovery.opensergo.io"
VERSION = "v1alpha1"


class InstanceAddress(SpecModel):
    """One listening endpoint, e.g. ``http://10.0.0.5:8080``."""

    address: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)
    protocol: str = ""

    @property
    def url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{self.protocol}://{host}:{self.port}" if self.protocol else f"{host}:{self.port}"

    @property
    def is_loopback_or_unspecified(self) -> bool:
        try:
            ip = ipaddress.ip_address(self.address)
        except ValueError:
            return self.address in ("localhost", "")
        return ip.is_loopback or ip.is_unspecified


class ServiceInstanceSpec(SpecModel):
    app: str = Field(min_length=1)
    nodeId: str = Field(min_length=1)
    hostName: str = ""
    pid: int = 0
    addresses: list[InstanceAddress] = Field(default_factory=list)
    # Selector labels: version, tag, cluster, env, region, zone, plus any custom ones.
    labels: dict[str, str] = Field(default_factory=dict)
    weight: int = Field(default=100, ge=0, le=10_000)
    services: list[str] = Field(default_factory=list)
    # SHA-256 of each service contract the instance reports (its ServiceContract objects).
    contracts: list[str] = Field(default_factory=list)

    @field_validator("labels")
    @classmethod
    def _label_keys(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not key or len(key) > 253:
                raise ValueError(f"label key {key!r} must be 1 to 253 characters")
        return value


class ServiceInstance(Resource):
    GROUP: ClassVar[str] = GROUP
    VERSION: ClassVar[str] = VERSION
    KIND: ClassVar[str] = "ServiceInstance"
    PLURAL: ClassVar[str] = "serviceinstances"

    spec: ServiceInstanceSpec


# --- ServiceContract ------------------------------------------------------------------------------


class ContractMethod(SpecModel):
    """One method (an RPC, or an HTTP operation: its paths and methods pair up by index)."""

    name: str = Field(min_length=1)
    description: str = ""
    inputTypes: list[str] = Field(default_factory=list)
    outputTypes: list[str] = Field(default_factory=list)
    clientStreaming: bool = False
    serverStreaming: bool = False
    httpPaths: list[str] = Field(default_factory=list)
    httpMethods: list[str] = Field(default_factory=list)


class ContractService(SpecModel):
    name: str = Field(min_length=1)
    description: str = ""
    methods: list[ContractMethod] = Field(default_factory=list)


class ContractField(SpecModel):
    name: str = Field(min_length=1)
    number: int = 0
    label: str = ""  # LABEL_OPTIONAL, LABEL_REPEATED, ... (the upstream FieldDescriptor enums)
    type: str = ""  # TYPE_STRING, TYPE_MESSAGE, ...
    typeName: str = ""
    description: str = ""


class ContractType(SpecModel):
    name: str = Field(min_length=1)
    fields: list[ContractField] = Field(default_factory=list)


class ServiceContractSpec(SpecModel):
    """The upstream ``ServiceContract`` message (services, methods, types) of one app, as one
    of its instances reported it, with the protocols it was served on and its hash."""

    app: str = Field(min_length=1)
    hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    protocols: list[str] = Field(default_factory=list)
    services: list[ContractService] = Field(default_factory=list)
    types: list[ContractType] = Field(default_factory=list)


class ServiceContract(Resource):
    """A version of an app's service contract, keyed by (app, hash): written by the control plane
    when an instance reports a contract it has not stored yet, never changed afterwards."""

    GROUP: ClassVar[str] = GROUP
    VERSION: ClassVar[str] = VERSION
    KIND: ClassVar[str] = "ServiceContract"
    PLURAL: ClassVar[str] = "servicecontracts"

    spec: ServiceContractSpec
