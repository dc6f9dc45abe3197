"""The on-disk snapshot: the last rules received, served at start while the control plane is down.

:class:`SnapshotFile` is the file (``<dir>/<namespace>/<app>.json``, replaced atomically).
:class:`SnapshotWriter` owns it for one client: it loads the file into the client's
:class:`~opensergo.client.cache.RuleCache` at start, writes the cache back after pushes (off the
event loop, one write at a time, bursts coalesced, the newest state last) and flushes at stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from opensergo.client._spec import Parser
from opensergo.client.cache import RuleCache
from opensergo.spec.kinds import secrets_of
from opensergo.spec.secrets import has_secrets

__all__ = ["SnapshotFile", "SnapshotWriter", "default_snapshot_dir"]

_log = logging.getLogger("opensergo.client.snapshot")


def default_snapshot_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$OPENSERGO_SNAPSHOT_DIR``, else ``$XDG_CACHE_HOME/opensergo/snapshots``, else
    ``~/.cache/opensergo/snapshots``."""
    env = os.environ if environ is None else environ
    explicit = env.get("OPENSERGO_SNAPSHOT_DIR", "").strip()
    if explicit:
        return Path(explicit).expanduser()
    xdg = env.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "opensergo" / "snapshots"


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def _safe_component(value: str) -> str:
    cleaned = _UNSAFE.sub("_", value)
    if cleaned in ("", ".", ".."):
        cleaned = cleaned.replace(".", "_") or "_"
    return cleaned


class SnapshotFile:
    """One client's snapshot: ``<dir>/<namespace>/<app>.json``, replaced atomically on save.

    Secrets never reach the disk: an entry whose objects hold a secret field (as each kind's
    schema marks them, e.g. a DatabaseEndpoint password or the credentials in its JDBC URL) is
    left out of the file, so that group comes only from the live control plane (see
    docs/security.md). A file written before this rule loses such entries on load as well.
    """

    def __init__(self, directory: Path | str, *, namespace: str, app: str) -> None:
        self.path = Path(directory) / _safe_component(namespace) / f"{_safe_component(app)}.json"

    def load(self) -> dict[str, Any] | None:
        """The stored document; None if there is none or it is unreadable/corrupt (logged)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            _log.warning("cannot read snapshot %s: %s", self.path, exc)
            return None
        try:
            data: Any = json.loads(text)
        except ValueError as exc:
            _log.warning("ignoring corrupt snapshot %s: %s", self.path, exc)
            return None
        if not isinstance(data, dict):
            _log.warning("ignoring corrupt snapshot %s: not a JSON object", self.path)
            return None
        return _without_secrets(data, self.path)

    def save(self, document: Mapping[str, Any]) -> None:
        """Write ``document`` atomically (temporary file in the same directory, then ``os.replace``)."""
        document = _without_secrets(document, self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(document, fh, separators=(",", ":"), sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


class SnapshotWriter:
    """One client's snapshot: load at start, coalesced writes after pushes, flush at stop."""

    def __init__(self, file: SnapshotFile, cache: RuleCache, parser: Parser) -> None:
        self.file = file
        self._cache = cache
        self._parser = parser
        self._dirty = False
        self._writer: asyncio.Task[None] | None = None

    @property
    def path(self) -> Path:
        return self.file.path

    def load(self) -> int:
        """Add the file's entries to the cache as non-live data; how many (0 when none or unusable)."""
        document = self.file.load()
        if document is None:
            return 0
        try:
            count = self._cache.load_snapshot(document, self._parser)
        except (ValueError, TypeError) as exc:
            _log.warning("ignoring snapshot %s: %s", self.path, exc)
            return 0
        _log.info("loaded %d cached key(s) from snapshot %s", count, self.path)
        return count

    def schedule(self) -> None:
        """Write the cache soon. Call on the event loop."""
        self._dirty = True
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(self._write(), name="opensergo-snapshot")

    async def flush(self) -> None:
        """Wait for the pending write, if any."""
        writer = self._writer
        if writer is not None:
            await asyncio.shield(writer)

    async def _write(self) -> None:
        while self._dirty:
            self._dirty = False
            document = self._cache.to_snapshot()  # taken on the loop: consistent with the cache
            try:
                await asyncio.to_thread(self.file.save, document)
            except Exception:
                _log.exception("cannot write the rule snapshot %s", self.path)


def _without_secrets(document: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """``document`` without the entries whose items hold a secret (they stay off the disk)."""
    entries = document.get("entries")
    if not isinstance(entries, list):
        return dict(document)
    kept = [
        e
        for e in entries
        if not (isinstance(e, dict) and any(_holds_secret(i) for i in e.get("items") or []))
    ]
    if len(kept) < len(entries):
        _log.info("snapshot %s: %d entry(ies) with secrets left out", path, len(entries) - len(kept))
    return {**document, "entries": kept}


def _holds_secret(item: Any) -> bool:
    return has_secrets(item, secrets_of(item))
