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
import os
import sys
import threading
from _thread import allocate_lock as _allocate_lock
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn, Protocol, TypeVar, cast

from opensergo.governance.errors import BlockedError
from opensergo.governance.faulttolerance.checks import ENTRY_BODY, EXIT_BODY, compile_around
from opensergo.governance.faulttolerance.engine import ApplyResult, Engine
from opensergo.governance.faulttolerance.hotparam import ArgumentReader, argument_lookup, argument_reader

# Imported where used, not here: the spec models (pydantic), asyncio and inspect would triple the
# import time of this module, which every guarded application imports.
if TYPE_CHECKING:
    from opensergo.governance.faulttolerance.checks import ExitPath
    from opensergo.spec.base import Resource

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

_default_engine = Engine()


def default_engine() -> Engine:
    """The process-wide engine used when ``engine`` is not given."""
    return _default_engine


MAX_CACHED_GUARDS = 4096
"""How many guard objects :func:`guard` keeps for reuse (least recently used ones go first)."""


def _caller() -> object:
    """Who is entering or exiting a guard: the asyncio task running on this thread, else the thread."""
    asyncio = sys.modules.get("asyncio")  # no event loop runs before asyncio is imported
    if asyncio is not None:
        loop = asyncio._get_running_loop()
        if loop is not None:
            task = asyncio.current_task(loop)
            if task is not None:
                return task
    return threading.get_ident()


# The sync forms' per-call path, compiled per guard (or decorated function) and rule version:
# the resource's checks inlined into the guard's own code (checks.compile_around), so that a call
# runs one Python function per side of ``with``, one around a decorated function, and reads only
# closure variables and the guard's slots. Each starts with the test that compiles it again after
# a rule swap (the engine replaces its ``checks`` at every swap).
_STALE = (
    "    if engine.checks is not compiled_for:  # the rules changed since: compile again\n"
    "        return recompile({})\n"
)
# ``with``: kept in the guard's ``__enter__`` / ``__exit__`` slots. ``with`` looks special methods
# up on the type, where a slot is a descriptor returning the slot's value: it calls these
# functions directly, without creating a bound method. They keep each entry's start and exit in
# the slots or parked (see Guard).
_WITH_ENTER = (
    "def enter():\n" + _STALE.format(""),
    ENTRY_BODY,
    "    if not parked:\n"
    "        try:\n"
    "            token.pop()\n"
    "        except IndexError:  # the slots are in use\n"
    "            pass\n"
    "        else:\n"
    "            guard._exit = leave\n"
    "            guard._start = start\n"
    "            return guard\n"
    "    park(leave, start)\n"
    "    return guard\n",
)
_WITH_EXIT = (
    "def exit(exc_type, exc, tb, /):\n"
    "    if parked and (found := unpark()) is not None:  # the caller's latest parked entry\n"
    "        entered, start = found\n"
    "    else:  # the entry in the slots\n"
    "        if token:\n"
    "            not_entered()\n"
    "        entered, start = guard._exit, guard._start\n"
    "        token.append(True)\n"
    "    error = exc if exc is not None and counts_as_error(exc) else None\n"
    "    if entered is not leave:  # admitted by another rule version: report to it\n"
    "        if entered is not None:\n"
    "            entered(start, error)\n"
    "        return\n",
    EXIT_BODY,
)
# A decorated function, called with its arguments as they came.
_CALL_AFTER_ENTRY = (
    "    try:\n"
    "        # fn(*args, **kwargs) copies kwargs into a new dict even when it is empty\n"
    "        result = fn(*args, **kwargs) if kwargs else fn(*args)\n"
    "    except BaseException as exc:  # the rare path: the compiled exit, called\n"
    "        if leave is not None:\n"
    "            leave(start, exc if counts_as_error(exc) else None)\n"
    "        raise\n"
    "    error = None\n",
    EXIT_BODY,
    "    return result\n",
)
_CALL = ("def call(args, kwargs, /):\n" + _STALE.format("args, kwargs"), ENTRY_BODY, *_CALL_AFTER_ENTRY)
# Hot-parameter limits read the arguments first (ResourceChecks.enter_params), then the checks.
_CALL_PARAMS = (
    _CALL[0],
    "    start = enter_params(argument_lookup(read, args, kwargs), inbound)\n",
    *_CALL_AFTER_ENTRY,
)


class Guard:
    """Guards a resource; use ``with``, ``async with`` or as a decorator (see :func:`guard`).

    One guard object may be shared and entered by any number of threads and tasks at once, nested
    too. Each entry keeps its own start time and compiled checks (the rule-set version it was
    admitted by, which its exit reports to): the first use keeps them in the object's own slots,
    claimed by an atomic token (``list.pop``), so the common case (one use at a time) allocates
    nothing. A use that finds the slots taken, or another entry parked, parks its entry in a list
    under the caller's identity (the asyncio task, else the thread) and its exit takes the
    caller's latest entry back. A caller that has an entry parked never takes the slots, so each
    caller's entries leave in the order they came (nested ``with``). A per-thread stack would not
    do: asyncio tasks, and sync ``with`` blocks around an ``await``, interleave on one thread.
    Generators that interleave uses of one guard object on one thread may swap their start times;
    give them their own guard.

    The sync forms run code compiled for the current rule version around the resource's checks
    (one Python function per side of ``with``), compiled again by the first use after a swap.
    """

    __slots__ = (
        "__enter__",
        "__exit__",
        "_errors",
        "_exit",
        "_ignore",
        "_parked",
        "_parking",
        "_start",
        "_token",
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
        self._exit: ExitPath | None = None  # the compiled exit of the entry in the slots
        self._start = 0
        # The slots' token: taken (list.pop, atomic) by the entry whose state is in _exit and
        # _start, put back (list.append) when it exits. Cheaper than a lock, and as safe here.
        self._token: list[bool] = [True]
        self._parked: list[tuple[object, ExitPath | None, int]] = []
        self._parking = _allocate_lock()
        # Compiled by the first entry: a guard that only decorates never compiles them.
        self._use(self._recompile_with, self._compile_and_exit)

    # The sync ``with`` path (see _WITH_ENTER): compiled for the rule version current when it was
    # compiled, it compiles itself again on the first entry after a swap. Every version's exit
    # takes any version's entry (an entry keeps the exit it must report to), so the two slots need
    # not change together.
    if TYPE_CHECKING:  # what the slots hold, typed as the methods they stand for

        def __enter__(self) -> Guard: ...

        def __exit__(
            self,
            exc_type: type[BaseException] | None,
            exc: BaseException | None,
            tb: TracebackType | None,
        ) -> None: ...

    def _compile_with(self) -> None:
        get = self.engine.checks
        checks = get(self.resource)
        names = {
            "engine": self.engine,
            "compiled_for": get,
            "recompile": self._recompile_with,
            "guard": self,
            "token": self._token,
            "parked": self._parked,
            "park": self._park,
            "unpark": self._unpark,
            "not_entered": self._not_entered,
            "counts_as_error": self.counts_as_error,
            "inbound": self.inbound,
            "defer": False,  # a sync caller queued by throttling sleeps
        }
        enter = compile_around(checks, "with", "enter", _WITH_ENTER, names)
        self._use(enter, compile_around(checks, "with", "exit", _WITH_EXIT, names))

    def _use(self, enter: Callable[[], Guard], exit_: Callable[..., None]) -> None:
        self.__enter__ = enter  # type: ignore[method-assign]
        self.__exit__ = exit_  # type: ignore[method-assign]

    def _recompile_with(self) -> Guard:
        self._compile_with()
        return self.__enter__()

    def _compile_and_exit(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """The exit of a ``with`` that began before the first compile (or of none)."""
        self._compile_with()
        self.__exit__(exc_type, exc, tb)

    def _not_entered(self) -> NoReturn:
        raise RuntimeError(f"guard({self.resource!r}) exited without being entered")

    def counts_as_error(self, exc: BaseException) -> bool:
        """Whether ``exc`` counts as an error for circuit breakers under this guard."""
        if isinstance(exc, BlockedError):
            return False
        engine = self.engine
        errors = self._errors if self._errors is not None else engine.errors
        ignore = self._ignore if self._ignore is not None else engine.ignore
        return isinstance(exc, errors) and not isinstance(exc, ignore)

    # -- context manager ----------------------------------------------------------------------

    def _park(self, leave: ExitPath | None, start: int) -> None:
        with self._parking:
            self._parked.append((_caller(), leave, start))

    def _unpark(self) -> tuple[ExitPath | None, int] | None:
        """The caller's latest parked entry, taken out; None when the caller has none parked."""
        me = _caller()
        with self._parking:
            parked = self._parked
            for i in range(len(parked) - 1, -1, -1):
                owner, leave, start = parked[i]
                if owner is me or owner == me:
                    del parked[i]
                    return leave, start
        return None

    async def __aenter__(self) -> Guard:
        checks = self.engine.checks(self.resource)
        if checks is None or not checks.throttles:
            return self.__enter__()
        # Queued by throttling: the entry is parked (other uses may take the slots meanwhile).
        start = await checks.aenter(self.inbound)
        self._park(checks.exit, start)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)  # exiting never waits

    # -- decorator ----------------------------------------------------------------------------

    def __call__(self, fn: F) -> F:
        import inspect

        if inspect.iscoroutinefunction(fn):
            return cast(F, self._wrap_async(fn))
        if inspect.isasyncgenfunction(fn) or inspect.isgeneratorfunction(fn):
            raise TypeError("guard cannot decorate a generator; guard the code that consumes it instead")
        return cast(F, self._wrap_sync(fn))

    def _wrap_sync(self, fn: Callable[..., T]) -> Callable[..., T]:
        read = argument_reader(fn)  # hot-parameter limits on its named arguments
        # The call compiled for one rule version (see _CALL), replaced in one assignment.
        call: Callable[[tuple[Any, ...], dict[str, Any]], T]

        def recompile(args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
            nonlocal call
            call = self._compile_call(fn, read, recompile)
            return call(args, kwargs)

        call = self._compile_call(fn, read, recompile)

        @functools.wraps(fn)
        def guarded(*args: Any, **kwargs: Any) -> T:
            return call(args, kwargs)

        return guarded

    def _compile_call(
        self, fn: Callable[..., T], read: ArgumentReader, recompile: Callable[..., T]
    ) -> Callable[[tuple[Any, ...], dict[str, Any]], T]:
        get = self.engine.checks
        checks = get(self.resource)
        params = checks.enter_params if checks is not None and checks.hot_params is not None else None
        names = {
            "engine": self.engine,
            "compiled_for": get,
            "recompile": recompile,
            "fn": fn,
            "counts_as_error": self.counts_as_error,
            "inbound": self.inbound,
            "defer": False,  # a sync caller queued by throttling sleeps
            "enter_params": params,
            "argument_lookup": argument_lookup,
            "read": read,
        }
        return compile_around(checks, "guarded", "call", _CALL if params is None else _CALL_PARAMS, names)

    def _wrap_async(self, fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        engine = self.engine
        resource = self.resource
        inbound = self.inbound
        counts = self.counts_as_error
        read = argument_reader(fn)  # hot-parameter limits on its named arguments

        @functools.wraps(fn)
        async def guarded(*args: Any, **kwargs: Any) -> T:
            checks = engine.checks(resource)
            if checks is None:
                return await fn(*args, **kwargs)
            if checks.hot_params is not None:
                start = await checks.aenter_params(argument_lookup(read, args, kwargs), inbound)
            else:
                start = await checks.aenter(inbound) if checks.throttles else checks.enter(inbound)
            leave = checks.exit
            if leave is None:
                return await fn(*args, **kwargs)
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                leave(start, exc if counts(exc) else None)
                raise
            leave(start, None)
            return result

        return guarded

    def __repr__(self) -> str:
        return f"guard({self.resource!r}, inbound={self.inbound})"


class GuardFactory(Protocol):
    """The signature of :func:`guard`."""

    def __call__(
        self,
        resource: str,
        *,
        engine: Engine | None = None,
        inbound: bool = True,
        errors: tuple[type[BaseException], ...] | None = None,
        ignore: tuple[type[BaseException], ...] | None = None,
    ) -> Guard: ...


def _guard(
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
    raised inside count as errors for circuit breakers. A caller queued by a ThrottlingStrategy
    sleeps in the sync forms and awaits in the async ones, so asyncio code should use the async
    forms.

    A decorated function's named arguments are what HotParamRateLimitStrategies with
    ``param: {source: argument, name: ...}`` limit per value (the signature is read once, here).

    The same arguments give back the same guard object (the last :data:`MAX_CACHED_GUARDS`
    argument sets are kept), so ``with guard("name"):`` allocates nothing per call. A guard
    object may be shared and entered concurrently (see :class:`Guard`).
    """
    return Guard(resource, engine, inbound, errors, ignore)


# A C-level cache: looking a guard up costs no Python call (the name alone is the key).
guard: GuardFactory = functools.lru_cache(maxsize=MAX_CACHED_GUARDS)(_guard)


RuleSource = str | os.PathLike[str] | Iterable["Resource"]


def _read(source: RuleSource) -> list[Resource]:
    from pathlib import Path

    from opensergo.spec.base import Resource
    from opensergo.spec.loader import load_paths, parse_documents  # the loader loads every kind

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
    from opensergo.database import rules as database_rules  # loads the database models

    database_rules.replace(selected, namespace=namespace)  # the database.opensergo.io kinds
    from opensergo.cache import rules as cache_rules

    cache_rules.replace(selected, namespace=namespace)  # the cache.opensergo.io kinds
    skipped = len(objects) - len(selected)
    if skipped:
        result = ApplyResult(result.version, result.resources, result.problems, result.ignored + skipped)
    return result
