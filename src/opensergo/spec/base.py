"""The custom-resource envelope shared by every kind: apiVersion, kind, metadata, spec."""

from __future__ import annotations

import re
from typing import Any, ClassVar, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from opensergo.spec.errors import FieldError

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

APP_LABEL = "app"


class CompactModel(BaseModel):
    """Leaves out empty lists/maps that only come from defaults when dumped.

    A parsed object then dumps back to (nearly) the YAML it came from instead of growing
    ``labels: {}`` or ``gateways: []``.
    """

    @model_serializer(mode="wrap")
    def _compact(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict):
            for name, field in type(self).model_fields.items():
                key = field.alias or name
                if name not in self.model_fields_set and data.get(key, None) in ([], {}):
                    del data[key]
        return data


class SpecModel(CompactModel):
    """Base of every ``spec`` model: camelCase field names as in YAML, unknown fields rejected."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class ObjectMeta(CompactModel):
    """The subset of Kubernetes ObjectMeta that OpenSergo uses."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)

    name: str
    namespace: str = "default"
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    resourceVersion: str | None = None
    generation: int | None = None
    creationTimestamp: str | None = None
    uid: str | None = None

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if len(value) > 253 or not _DNS_SUBDOMAIN.match(value):
            raise ValueError(
                "must be a lowercase RFC 1123 subdomain (a-z, 0-9, '-', '.'; at most 253 characters)"
            )
        return value

    @field_validator("namespace")
    @classmethod
    def _check_namespace(cls, value: str) -> str:
        if len(value) > 63 or not _DNS_LABEL.match(value):
            raise ValueError("must be a lowercase RFC 1123 label (a-z, 0-9, '-'; at most 63 characters)")
        return value


class Resource(BaseModel):
    """A custom resource. Each kind subclasses it and narrows ``spec``.

    Subclasses set the class variables ``GROUP``, ``VERSION``, ``KIND`` and ``PLURAL``; the
    registry in :mod:`opensergo.spec.kinds` is built from them.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    GROUP: ClassVar[str]
    VERSION: ClassVar[str]
    KIND: ClassVar[str]
    PLURAL: ClassVar[str]

    apiVersion: str
    kind: str
    metadata: ObjectMeta
    spec: Any
    status: dict[str, Any] | None = None

    @classmethod
    def api_version(cls) -> str:
        """``group/version`` of this kind."""
        return f"{cls.GROUP}/{cls.VERSION}"

    @model_validator(mode="before")
    @classmethod
    def _default_type(cls, data: Any) -> Any:
        # Lets code build objects without repeating apiVersion/kind; parsed input keeps its own.
        if isinstance(data, dict) and getattr(cls, "KIND", None):
            data = dict(data)
            data.setdefault("apiVersion", cls.api_version())
            data.setdefault("kind", cls.KIND)
        return data

    @model_validator(mode="after")
    def _check_type(self) -> Self:
        cls = type(self)
        if not getattr(cls, "KIND", None):
            return self
        if self.apiVersion != cls.api_version():
            raise FieldError(("apiVersion",), f"must be {cls.api_version()!r} for kind {cls.KIND}")
        if self.kind != cls.KIND:
            raise FieldError(("kind",), f"must be {cls.KIND!r}")
        return self

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace

    @property
    def app(self) -> str | None:
        """The app whose data planes receive this object: ``labels.app``, else ``spec.selector.app``."""
        label = self.metadata.labels.get(APP_LABEL)
        if label:
            return label
        selector = getattr(self.spec, "selector", None)
        if isinstance(selector, dict):
            value = selector.get(APP_LABEL)
            return value if isinstance(value, str) and value else None
        value = getattr(selector, APP_LABEL, None)
        return value if isinstance(value, str) and value else None

    def to_dict(self) -> dict[str, Any]:
        """The YAML/JSON form (camelCase, no unset optional fields)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)
