"""The errors :mod:`opensergo.database` raises (all subclasses of :class:`DatabaseGovernanceError`)."""

from __future__ import annotations


class DatabaseGovernanceError(Exception):
    """Base class of every error raised by ``opensergo.database``."""


class ConfigurationError(DatabaseGovernanceError):
    """The rules for a VirtualDatabase are missing, incomplete or refer to unknown objects."""


class UnsupportedStatementError(DatabaseGovernanceError):
    """A statement that the active rules cannot execute safely; it was not sent anywhere.

    ``table`` and ``column`` name what made the statement unsafe, when known.
    """

    def __init__(self, message: str, *, table: str | None = None, column: str | None = None) -> None:
        super().__init__(message)
        self.table = table
        self.column = column


class NoDataSourceError(DatabaseGovernanceError):
    """No data source is available for a statement (e.g. every replica is down and
    ``writeDataSourceQueryEnabled`` is false, or no primary was discovered)."""


class PoolTimeoutError(DatabaseGovernanceError):
    """No connection of an endpoint's pool became free within ``connectionTimeout``."""
