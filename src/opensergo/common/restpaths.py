"""The control plane's REST paths for a kind, in one place: the server's routes, the dashboard's
links and the CLI's requests all spell them with :func:`resource_path`."""

from __future__ import annotations

from typing import Protocol


class RestKind(Protocol):
    """What a path needs from a kind (``opensergo.spec.kinds.KindInfo`` has it)."""

    @property
    def group(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def plural(self) -> str: ...


def resource_path(kind: RestKind, namespace: str | None, name: str | None = None) -> str:
    """``/apis/{group}/{version}[/namespaces/{namespace}]/{plural}[/{name}]``; without a namespace,
    the kind's list across every namespace."""
    path = f"/apis/{kind.group}/{kind.version}"
    if namespace is not None:
        path += f"/namespaces/{namespace}"
    path += f"/{kind.plural}"
    return f"{path}/{name}" if name else path
