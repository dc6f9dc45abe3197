"""What this process serves, reported to the control plane: listening addresses and contracts.

The launcher (or the application) tells :func:`registration` where the server listens
(:meth:`ServiceRegistration.add_address`) and where contracts come from
(:meth:`ServiceRegistration.add_source`: a callable deriving the contract from the app, e.g.
``lambda: flask_contract(app)``). :meth:`ServiceRegistration.publish` hands the resulting
``ServiceMetadata`` (one per protocol: addresses, protocol, the merged contract) to the running
OpenSergo client, which reports it at once and on every heartbeat. Contracts are derived again
every ``interval`` seconds (``OPENSERGO_CONTRACT_INTERVAL``, default 30) by a daemon thread and
published when they changed, so routes added after start-up are reported too; the control plane
stores each new contract once.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from opensergo.integrations.contracts import merge_contracts
from opensergo.proto.service_contract.v1 import service_contract_pb2 as sc

__all__ = ["ContractSource", "ServiceRegistration", "registration"]

log = logging.getLogger(__name__)

ContractSource = Callable[[], sc.ServiceContract]


@dataclass
class _Protocol:
    addresses: list[tuple[str, int]] = field(default_factory=list)
    sources: list[ContractSource] = field(default_factory=list)


class ServiceRegistration:
    """Listening addresses and contract sources per protocol; see the module docstring."""

    def __init__(self, interval: float | None = None) -> None:
        if interval is None:
            interval = float(os.environ.get("OPENSERGO_CONTRACT_INTERVAL", "30") or 30)
        self.interval = interval
        self._protocols: dict[str, _Protocol] = {}
        self._lock = threading.RLock()
        self._published: bytes | None = None
        self._watcher: threading.Thread | None = None
        self._stop = threading.Event()

    def add_address(self, protocol: str, host: str, port: int) -> None:
        with self._lock:
            entry = self._protocols.setdefault(protocol, _Protocol())
            if (host, port) not in entry.addresses:
                entry.addresses.append((host, port))
        self.publish()

    def add_source(self, protocol: str, source: ContractSource) -> None:
        with self._lock:
            self._protocols.setdefault(protocol, _Protocol()).sources.append(source)
        self.publish()

    def addresses(self, protocol: str) -> list[tuple[str, int]]:
        entry = self._protocols.get(protocol)
        return list(entry.addresses) if entry is not None else []

    def metadata(self) -> list[sc.ServiceMetadata]:
        """One ServiceMetadata per protocol, contracts derived now."""
        from opensergo.client.reporter import ServiceInfo

        out = []
        with self._lock:
            protocols = {p: (list(e.addresses), list(e.sources)) for p, e in sorted(self._protocols.items())}
        for protocol, (addresses, sources) in protocols.items():
            contracts = []
            for source in sources:
                try:
                    contracts.append(source())
                except Exception:  # an app half built, a framework quirk: report the rest
                    log.debug("cannot derive a %s contract yet", protocol, exc_info=True)
            info = ServiceInfo(protocols=[protocol], listening_addresses=addresses)
            message = info.to_proto()
            if contracts:
                message.service_contract.CopyFrom(merge_contracts(contracts))
            out.append(message)
        return out

    def publish(self) -> bool:
        """Give the metadata to the running client when it changed; True when handed over."""
        from opensergo.governance.runtime import current

        governance = current()
        if governance is None:
            return False
        services = self.metadata()
        fingerprint = b"".join(m.SerializeToString(deterministic=True) for m in services)
        with self._lock:
            if fingerprint == self._published:
                return False
            self._published = fingerprint
        governance.client.set_service_metadata(services)
        log.info(
            "reporting %s",
            "; ".join(
                f"{','.join(m.protocols)} on {[f'{a.address}:{a.port_value}' for a in m.listening_addresses]}"
                f" ({sum(len(s.methods) for s in m.service_contract.services)} methods)"
                for m in services
            ),
        )
        self._watch()
        return True

    def _watch(self) -> None:
        if self._watcher is not None or self.interval <= 0:
            return
        self._watcher = threading.Thread(target=self._loop, name="opensergo-contracts", daemon=True)
        self._watcher.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.publish()
            except Exception:  # pragma: no cover - never let the thread die
                log.exception("publishing service metadata failed")

    def close(self) -> None:
        self._stop.set()


_default: ServiceRegistration | None = None
_default_lock = threading.Lock()


def _after_fork_in_child() -> None:
    # A pre-forking server's worker: the watcher thread did not survive the fork, and this
    # process is a new instance that has reported nothing yet.
    if _default is not None:
        _default._watcher = None
        _default._published = None


os.register_at_fork(after_in_child=_after_fork_in_child)


def registration() -> ServiceRegistration:
    """The process-wide registration."""
    global _default
    with _default_lock:
        if _default is None:
            _default = ServiceRegistration()
        return _default
