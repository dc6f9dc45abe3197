"""Public API: ``guard`` (context manager, async context manager, decorator) and ``load_rules``.

::

    from opensergo.governance import guard, load_rules, BlockedError

    load_rules(open("rules.yaml").read(), app="demo-app")

    with guard("GET:/hello"):
        ...

    @guard("GET:/users/{id}")
    async def get_user(user_id: int) -> User: ...

A refused request raises a :class:`~opensergo.governance.errors.BlockedError` subclass carrying
the resource, the FaultToleranceRule and strategy names and the rule's fallback response.
Exceptions raised inside a guard count as errors for circuit breakers; ``errors`` / ``ignore``
choose which (per guard, or engine-wide through the :class:`Engine` constructor).
"""

from __future__ import annotations

import functools
import inspect
import os
from _thread import allocate_lock as _allocate_lock
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar, cast

from opensergo.database import rules as _database_rules
from opensergo.governance.errors import BlockedError
from opensergo.governance.faulttolerance.engine import ApplyResult, Engine, ResourceChecks
from opensergo.spec.base import Resource
from opensergo.spec.loader import load_paths, parse_documents

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

_default_engine = Engine()


def default_engine() -> Engine:
    """The process-wide engine used when ``engine`` is not given."""
    return _default_engine


# Entries of guard objects entered again while already in use (nested, or concurrently from
# other threads / tasks): an immutable stack per context, so asyncio tasks never share one.
_OVERFLOW: ContextVar[tuple[tuple[Guard, ResourceChecks | None, int], ...]] = ContextVar(
    "opensergo_guard_overflow", default=()
)


class Guard:
    """Guards a resource; use ``with``, ``async with`` or as a decorator (see :func:`guard`)."""

    __slots__ = (
        "_busy",
        "_checks",
        "_errors",
        "_ignore",
        "_overflow",
        "_start",
        "engine",
        "inbound",
        "resource",
    )

    def __init__(
        self,
        resource: str,
        engine: Engine | None = None,
        inbound: bool = True,
        errors: tuple[type[BaseException], ...] | None = None,
        ignore: tuple[type[BaseException], ...] | None = None,
    ) -> None:
        self.resource = resource
        self.engine = engine if engine is not None else _default_engine
        self.inbound = inbound
        self._errors = errors
        self._ignore = ignore
        self._checks: ResourceChecks | None = None
        self._start = 0
        self._overflow = 0
        # Taken (without blocking) by the use that keeps its entry in the slots above.
        self._busy = _allocate_lock()

    def counts_as_error(self, exc: BaseException) -> bool:
        """Whether ``exc`` counts as an error for circuit breakers under this guard."""
        if isinstance(exc, BlockedError):
            return False
        engine = self.engine
        errors = self._errors if self._errors is not None else engine.errors
        ignore = self._ignore if self._ignore is not None else engine.ignore
        return isinstance(exc, errors) and not isinstance(exc, ignore)

    # -- context manager ----------------------------------------------------------------------
    #
    # The first user of a guard object keeps its entry in slots; a lock acquired without blocking
    # decides who that is. Any other use at the same time (nested, or concurrent from another
    # thread or task) keeps its entry on a per-context stack instead, so one guard object may be
    # shared freely.

    def _push(self, checks: ResourceChecks | None, start: int) -> None:
        self._overflow += 1
        _OVERFLOW.set((*_OVERFLOW.get(), (self, checks, start)))

    def _pop(self) -> tuple[ResourceChecks | None, int] | None:
        stack = _OVERFLOW.get()
        for i in range(len(stack) - 1, -1, -1):
            item = stack[i]
            if item[0] is self:
                _OVERFLOW.set(stack[:i] + stack[i + 1 :])
                self._overflow -= 1
                return item[1], item[2]
        return None

    def _release(self) -> tuple[ResourceChecks | None, int]:
        found = self._pop() if self._overflow else None
        if found is not None:
            return found
        checks, start = self._checks, self._start
        self._checks = None
        try:
            self._busy.release()
        except RuntimeError:
            raise RuntimeError(f"guard({self.resource!r}) exited without being entered") from None
        return checks, start

    def __enter__(self) -> Guard:
        checks = self.engine._table.get(self.resource)
        start = checks.enter(self.inbound) if checks is not None else 0
        if self._busy.acquire(False):
            self._checks = checks
            self._start = start
        else:
            self._push(checks, start)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._overflow:
            checks, start = self._release()
        else:  # the common case, inlined
            checks, start = self._checks, self._start
            self._checks = None
            try:
                self._busy.release()
            except RuntimeError:
                raise RuntimeError(f"guard({self.resource!r}) exited without being entered") from None
        if checks is not None and checks.exits:
            checks.exit(start, exc if exc is not None and self.counts_as_error(exc) else None)

    async def __aenter__(self) -> Guard:
        checks = self.engine._table.get(self.resource)
        if checks is None:
            start = 0
        elif checks.throttles:
            start = await checks.aenter(self.inbound)
        else:
            start = checks.enter(self.inbound)
        if self._busy.acquire(False):
            self._checks = checks
            self._start = start
        else:
            self._push(checks, start)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)  # exiting never waits

    # -- decorator ----------------------------------------------------------------------------

    def __call__(self, fn: F) -> F:
        if inspect.iscoroutinefunction(fn):
            return cast(F, self._wrap_async(fn))
        if inspect.isasyncgenfunction(fn) or inspect.isgeneratorfunction(fn):
            raise TypeError("guard cannot decorate a generator; guard the code that consumes it instead")
        return cast(F, self._wrap_sync(fn))

    def _wrap_sync(self, fn: Callable[..., T]) -> Callable[..., T]:
        engine = self.engine
        resource = self.resource
        inbound = self.inbound
        counts = self.counts_as_error

        @functools.wraps(fn)
        def guarded(*args: Any, **kwargs: Any) -> T:
            checks = engine._table.get(resource)
            if checks is None:
                return fn(*args, **kwargs)
            start = checks.enter(inbound)
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                if checks.exits:
                    checks.exit(start, exc if counts(exc) else None)
                raise
            if checks.exits:
                checks.exit(start, None)
            return result

        return guarded

    def _wrap_async(self, fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        engine = self.engine
        resource = self.resource
        inbound = self.inbound
        counts = self.counts_as_error

        @functools.wraps(fn)
        async def guarded(*args: Any, **kwargs: Any) -> T:
            checks = engine._table.get(resource)
            if checks is None:
                return await fn(*args, **kwargs)
            start = await checks.aenter(inbound) if checks.throttles else checks.enter(inbound)
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                if checks.exits:
                    checks.exit(start, exc if counts(exc) else None)
                raise
            if checks.exits:
                checks.exit(start, None)
            return result

        return guarded

    def __repr__(self) -> str:
        return f"guard({self.resource!r}, inbound={self.inbound})"


def guard(
    resource: str,
    *,
    engine: Engine | None = None,
    inbound: bool = True,
    errors: tuple[type[BaseException], ...] | None = None,
    ignore: tuple[type[BaseException], ...] | None = None,
) -> Guard:
    """Protect ``resource`` with the rules of ``engine`` (default: the process-wide engine).

    Use as ``with guard(...)``, ``async with guard(...)``, or to decorate a sync or async
    function. ``inbound=False`` marks outbound calls (adaptive protection skips them).
    ``errors`` (default: the engine's, ``(Exception,)``) and ``ignore`` choose which exceptions
    raised inside count as errors for circuit breakers. A guard object may be shared and entered
    concurrently; the decorator is the fastest form. A caller queued by a ThrottlingStrategy
    sleeps in the sync forms and awaits in the async ones, so asyncio code should use the async
    forms.
    """
    return Guard(resource, engine, inbound, errors, ignore)


RuleSource = str | os.PathLike[str] | Iterable[Resource]


def _read(source: RuleSource) -> list[Resource]:
    if isinstance(source, os.PathLike):
        return load_paths([Path(source)])
    if isinstance(source, str):
        if "\n" not in source and source.strip() and Path(source).exists():
            return load_paths([source])
        return parse_documents(source, source="<load_rules>")
    items = list(source)
    for item in items:
        if not isinstance(item, Resource):
            raise TypeError(f"load_rules expects YAML text, a path or Resources, got {type(item).__name__}")
    return items


def load_rules(
    source: RuleSource, *, app: str | None, namespace: str = "default", engine: Engine | None = None
) -> ApplyResult:
    """Apply OpenSergo CR YAML locally, without a control plane (tests and standalone use).

    ``source`` is YAML text (one or more documents), a file or directory path, or parsed
    Resources. Only objects in ``namespace`` whose app (``metadata.labels.app``, else
    ``spec.selector.app``) is ``app`` are applied; ``app=None`` takes every app. The selection
    replaces all the engine's fault-tolerance rules, as a control-plane push does. Invalid YAML
    raises :class:`~opensergo.spec.SpecErrors`; unresolvable references are reported in the
    result's ``problems``.
    """
    target = engine if engine is not None else _default_engine
    objects = _read(source)
    selected = [o for o in objects if o.namespace == namespace and (app is None or o.app == app)]
    result = target.set_rules(selected)
    _database_rules.replace(selected, namespace=namespace)  # the database.opensergo.io kinds
    skipped = len(objects) - len(selected)
    if skipped:
        result = ApplyResult(result.version, result.resources, result.problems, result.ignored + skipped)
    return result
