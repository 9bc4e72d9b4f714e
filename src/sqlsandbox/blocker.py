"""Refuse database connections during tests that do not go to the run's test database.

A connection to anything else (the app's development database, a production URL in an env var, an engine made
in the test, a raw driver call) fails before the driver connects, with the test, the URL (password hidden) and
the fix: so a test can never write to a database sqlsandbox did not create. Two checks share the rule:

- SQLAlchemy's `do_connect` event, for every dialect (installed once per process);
- the drivers' own connect functions, listed per family (`driver_connects()` in dialects/), wrapped while a
  run is active: on the first push, for the driver modules already imported, and for the others when they are
  imported (an import hook), so no driver is imported for this; the originals are put back on the last pop.
  This covers raw driver calls and `create_engine(creator=...)`, which SQLAlchemy's event never sees.

In nested pytest runs (pytester) the innermost run's rules apply.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import inspect
import sys
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Dialect, Engine

from . import dialects
from .dialects.base import DriverConnect
from .errors import DatabaseAccessBlocked


@dataclass
class Blocker:
    allowed_names: set[str] = field(default_factory=set)
    current_test: str | None = None  # set while a test's setup, call or teardown runs
    blocked: list[str] = field(default_factory=list)
    # the dialects of the test database's own engines: an engine of the test's own on the test database's
    # URL would commit past the sandbox
    own_dialects: weakref.WeakSet[Dialect] = field(default_factory=weakref.WeakSet)

    def own(self, engine: Engine) -> None:
        self.own_dialects.add(engine.dialect)

    def allow_database(self, name: str) -> None:
        self.allowed_names.add(name)
        if "/" in name or name.endswith(".db"):
            self.allowed_names.add(str(Path(name).resolve()))

    def check(self, dialect: Dialect, cargs: tuple[Any, ...], cparams: dict[str, Any]) -> None:
        if self.current_test is None:
            return
        family = dialects.quirks(dialect.name)
        target = family.database_of(cargs, cparams)
        if family.is_scratch(target):
            return
        if not self._allowed(target):
            self._refuse(family.describe_target(dialect, cargs, cparams))
        if self.own_dialects and dialect not in self.own_dialects and _rolled_back_test():
            self._refuse_own_engine(family.describe_target(dialect, cargs, cparams))

    def check_driver(self, hook: DriverConnect, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if self.current_test is None:
            return
        target = hook.target(args, kwargs)
        if target is None or self._allowed(target[0]):
            return
        self._refuse(target[1])

    def _allowed(self, target: str) -> bool:
        resolved = str(Path(target).resolve()) if target else ""
        return target in self.allowed_names or resolved in self.allowed_names

    def _refuse_own_engine(self, url: str) -> None:
        self.blocked.append(f"{self.current_test}: {url} (an engine of its own)")
        raise DatabaseAccessBlocked(
            f"{self.current_test} connected to the test database {url} through an engine of its own, past "
            "the sandbox.",
            why="only connections made through the sandbox (its fixtures and engines, the bound factories) "
            "are rolled back; an engine created on the test database's URL commits for real, and what it "
            "commits would be there for every later test.",
            fix="use sandbox.sync_engine / sandbox.async_engine or the db_session fixtures, bind the engine "
            "(sandbox.bind(engine), or list it in sqlsandbox_bind), or mark the test "
            "@pytest.mark.sqlsandbox(committed=True) if it must commit for real.",
        )

    def _refuse(self, url: str) -> None:
        self.blocked.append(f"{self.current_test}: {url}")
        raise DatabaseAccessBlocked(
            f"{self.current_test} tried to connect to {url}, which is not the test database.",
            why="during tests sqlsandbox only lets connections reach the database it created for this "
            "run, so that no test can read or write a real one (a development file, a shared server).",
            fix="use the db_session / async_db_session / sandbox fixtures; list the engine or session "
            "factory in sqlsandbox_bind; an engine the app builds itself (an app factory, a lifespan): build "
            "it on the db_url / async_db_url fixture's URL, or call sandbox.bind(engine) once it exists; or "
            "mark the test @pytest.mark.sqlsandbox so the app's bound factories join the sandbox.",
        )


_stack: list[Blocker] = []
_listening = False


def _rolled_back_test() -> bool:
    """Whether a sandbox that rolls back is active: an engine of the test's own would commit past it. Not
    in committed mode (it commits for real anyway), nor outside a sandbox (sqlsandbox's own work between a
    sandbox's end and the test's, fixtures of wider scopes)."""
    from .sandbox import active  # the sandbox imports the engines this module guards: imported late

    box = active()
    return box is not None and not box.committed


def push(blocker: Blocker) -> None:
    global _listening
    if not _listening:
        event.listen(Engine, "do_connect", _on_connect)
        _listening = True
    if not _stack:
        _wrap_drivers()
    _stack.append(blocker)


def pop(blocker: Blocker) -> None:
    if blocker in _stack:
        _stack.remove(blocker)
        if not _stack:
            _unwrap_drivers()


def _on_connect(dialect: Dialect, conn_rec: Any, cargs: tuple[Any, ...], cparams: dict[str, Any]) -> None:
    if _stack:
        _stack[-1].check(dialect, cargs, cparams)


# -- the drivers' connect functions ------------------------------------------------------------------------


@dataclass
class _Wrapped:
    owner: Any  # the module or class the attribute lives on
    name: str
    original: Any  # as it was in owner.__dict__ (a classmethod stays one); None: it was inherited
    wrapper: Any


# module name -> its hooks, while a run is active; kept after wrapping, since pytester's in-process runs unload
# the modules they imported, and the next import is a new module to wrap
_hooks: dict[str, list[DriverConnect]] = {}
_wrapped: list[_Wrapped] = []


def wrapped_now() -> list[tuple[Any, str]]:
    """(owner, attribute) of every driver function wrapped at this moment (for tests and diagnostics)."""
    return [(w.owner, w.name) for w in _wrapped]


def _wrap_drivers() -> None:
    for family in dialects.FAMILIES.values():
        for hook in family.driver_connects():
            _hooks.setdefault(hook.module, []).append(hook)
    sys.meta_path.insert(0, _IMPORT_HOOK)
    for name in list(_hooks):
        module = sys.modules.get(name)
        if module is not None:
            _wrap_module(module)


def _unwrap_drivers() -> None:
    if _IMPORT_HOOK in sys.meta_path:
        sys.meta_path.remove(_IMPORT_HOOK)
    _hooks.clear()
    for w in reversed(_wrapped):
        if w.owner.__dict__.get(w.name) is not w.wrapper:
            continue  # someone replaced our wrapper since: theirs stays
        if w.original is None:
            delattr(w.owner, w.name)
        else:
            setattr(w.owner, w.name, w.original)
    _wrapped.clear()


def _wrap_module(module: ModuleType) -> None:
    for hook in _hooks.get(module.__name__, []):
        *path, name = hook.attribute.split(".")
        owner: Any = module
        for part in path:
            owner = getattr(owner, part, None)
        if owner is None or not hasattr(owner, name):
            continue  # another version of the driver: tests/test_blocker.py checks the installed ones
        own = owner.__dict__.get(name)
        raw = own if own is not None else inspect.getattr_static(owner, name)
        if any(w.owner is owner and w.name == name for w in _wrapped):
            continue
        if isinstance(raw, classmethod):
            wrapper: Any = classmethod(_checking(raw.__func__, hook))
        elif isinstance(raw, staticmethod):
            wrapper = staticmethod(_checking(raw.__func__, hook))
        else:
            wrapper = _checking(_unwrapped(raw), hook)
        setattr(owner, name, wrapper)
        _wrapped.append(_Wrapped(owner, name, None if own is None else _unwrapped(own), wrapper))


def _unwrapped(fn: Any) -> Any:
    # sqlite3/__init__.py re-exports sqlite3.dbapi2's names: imported during a run, it copies our wrapper
    return getattr(fn, "__wrapped__", fn) if getattr(fn, "_sqlsandbox_checks", False) else fn


def _checking(fn: Callable[..., Any], hook: DriverConnect) -> Callable[..., Any]:
    """fn, checked against the innermost run's rules first; a coroutine function stays one, so that the
    refusal comes where the connection's own errors would (at the await)."""
    wrapper: Any
    if inspect.iscoroutinefunction(fn):

        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            if _stack:
                _stack[-1].check_driver(hook, args, kwargs)
            return await fn(*args, **kwargs)

    else:

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if _stack:
                _stack[-1].check_driver(hook, args, kwargs)
            return fn(*args, **kwargs)

    wrapper = functools.wraps(fn)(wrapper)
    wrapper._sqlsandbox_checks = True
    return wrapper  # type: ignore[no-any-return]


class _WrapOnImport(importlib.abc.MetaPathFinder):
    """Wraps a driver's connect functions as soon as its module is imported during a run."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _hooks:
            return None
        for finder in sys.meta_path:
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec: importlib.machinery.ModuleSpec | None = find(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _WrapAfterExec(spec.loader)
        return spec


class _WrapAfterExec(importlib.abc.Loader):
    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)  # type: ignore[no-any-return]

    def exec_module(self, module: ModuleType) -> None:
        module.__loader__ = self.loader  # the module keeps its real loader (resources, reloads)
        if module.__spec__ is not None:
            module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        _wrap_module(module)


_IMPORT_HOOK = _WrapOnImport()
