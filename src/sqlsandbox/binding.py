"""Point the application's own session factories and engines at the sandbox for one test, then restore them.

Engines are joined by replacing connect() on the instance (Engine.begin() and Session use connect(), and an
AsyncEngine connects through its sync_engine), so the app's engine never opens its own connection: a
module-level engine pointing at a development database is never touched during a test.

Engines nobody listed are adopted when they first connect during a test (see `adopting`): an engine derived
from a joined one (`engine.execution_options(...)`, a new object whose connect() is not the patched one),
and an engine built on the test database's URL (in an app factory, a lifespan, a fixture), which would
otherwise commit past the sandbox.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_scoped_session, async_sessionmaker
from sqlalchemy.orm import scoped_session, sessionmaker

from .errors import ConfigError, DriverMissingError

if TYPE_CHECKING:
    from .sandbox import Sandbox

_MISSING = object()
# Engine.connect as SQLAlchemy defines it: sqlsandbox's own connections are opened past every patch.
real_connect = Engine.connect
# Execution options a connection inside the sandbox's transaction cannot take: the isolation level is the
# outer transaction's, set when it began.
_UNSETTABLE_OPTIONS = frozenset({"isolation_level"})
BINDABLE = (scoped_session, async_scoped_session, async_sessionmaker, sessionmaker, AsyncEngine, Engine)


def resolve_bindable(obj: Any, spec: str = "") -> Any:
    """What to bind for obj: itself, or the engine a config object builds lazily through get_engine()
    (advanced-alchemy's SQLAlchemyAsyncConfig / SQLAlchemySyncConfig): built now, on the app's own URL, and
    joined in place, so the app finds the same engine when it asks."""
    get_engine = getattr(obj, "get_engine", None)
    if isinstance(obj, BINDABLE) or not callable(get_engine):
        return obj
    where = f"sqlsandbox_bind entry {spec!r}" if spec else "sandbox.bind()"
    try:
        engine = get_engine()
    except Exception as exc:
        raise ConfigError(
            f"{where}: {type(obj).__name__}.get_engine() failed: {type(exc).__name__}: {exc}",
            why="an object with get_engine() is bound through the engine it returns, built when the run "
            "starts; this one cannot build it then (Flask-SQLAlchemy's db needs an app context).",
            fix="name the engine or session factory itself, build the app's engine on the db_url fixture's "
            "URL, or call sandbox.bind(engine) in a fixture once the app has built it.",
        ) from None
    if not isinstance(engine, (Engine, AsyncEngine)):
        raise ConfigError(
            f"{where}: {type(obj).__name__}.get_engine() returned {engine!r}, not an Engine or AsyncEngine.",
            fix="name the engine or session factory itself.",
        )
    if get_engine() is not engine:
        raise ConfigError(
            f"{where}: {type(obj).__name__}.get_engine() returns a new engine on each call, so the one bound "
            "would not be the one the app uses.",
            fix="name the engine the app keeps, or bind it with sandbox.bind(engine) once the app has it.",
        )
    return engine


def check_bindable(obj: Any, spec: str = "") -> None:
    """ConfigError unless obj is something bind() takes; spec names where it came from."""
    if isinstance(obj, BINDABLE):
        return
    where = f"sqlsandbox_bind entry {spec!r} is" if spec else "sandbox.bind() got"
    raise ConfigError(
        f"{where} {obj!r} (a {type(obj).__name__}), which sqlsandbox cannot bind.",
        why="sqlsandbox_bind and sandbox.bind() take the objects an application opens database work through.",
        fix="name a sessionmaker, async_sessionmaker, scoped_session, async_scoped_session, Engine or "
        "AsyncEngine (or an object whose get_engine() returns the engine); an engine the app builds later: "
        "build it on the db_url fixture's URL, or sandbox.bind(engine) once it exists.",
    )


def mark_own(engine: Engine) -> Engine:
    """An engine sqlsandbox made for its own work: never adopted into a sandbox."""
    engine._sqlsandbox_own = True  # type: ignore[attr-defined]
    return engine


def sandbox_options(engine: Engine) -> dict[str, Any]:
    """The engine's execution options (schema_translate_map, ...) that a connection in the sandbox takes."""
    return {k: v for k, v in engine._execution_options.items() if k not in _UNSETTABLE_OPTIONS}


def same_database(url: URL, test_url: URL) -> bool:
    """Whether url names the test database: same kind of server, same database (by name: test database
    names are unique per run; SQLite: the same file)."""
    if url.get_backend_name() != test_url.get_backend_name() or not url.database:
        return False
    if url.get_backend_name() == "sqlite":
        return os.path.realpath(url.database) == os.path.realpath(str(test_url.database))
    return url.database == test_url.database


# ---- adoption: a class-level hook on Engine.connect while any sandbox is active --------------------------
_adopting = 0
_adopting_lock = threading.Lock()
# What Engine.connect was when the hook went in (SQLAlchemy's, or another library's wrapper, e.g. a tracer's):
# engines that are not adopted connect through it, and it is put back when the last sandbox lets go.
_underlying: Callable[[Engine], Connection] = real_connect


def _connect_or_adopt(engine: Engine) -> Connection:
    """Engine.connect of every engine that is not bound by instance: one that must be in the sandbox joins
    it for the rest of the test; any other connects as it would without sqlsandbox (and meets the blocker)."""
    from .sandbox import active  # the sandbox imports this module: imported late

    box = active()
    # not while the sandbox is closing: what it adopted then would outlive it
    if box is not None and not box.closing and box.bindings.adopts(engine):
        box.bindings.bind(engine)
        return box._connect(engine)
    return _underlying(engine)


def start_adopting() -> None:
    global _adopting, _underlying
    with _adopting_lock:
        _adopting += 1
        if Engine.__dict__["connect"] is not _connect_or_adopt:
            _underlying = Engine.__dict__["connect"]
            Engine.connect = _connect_or_adopt  # type: ignore[method-assign,assignment]


def stop_adopting() -> None:
    global _adopting
    with _adopting_lock:
        _adopting = max(0, _adopting - 1)
        if _adopting == 0 and Engine.__dict__["connect"] is _connect_or_adopt:
            Engine.connect = _underlying  # type: ignore[method-assign,assignment]


def adopting() -> bool:
    """Whether the class-level hook is in (while some sandbox has joined an engine)."""
    return Engine.__dict__["connect"] is _connect_or_adopt


class Bindings:
    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox
        self._lock = threading.RLock()  # an app's threads may adopt an engine while another binds
        self._undo: list[Callable[[], None]] = []
        self._seen: set[int] = set()
        self._joined_engines: weakref.WeakSet[Engine] = weakref.WeakSet()

    def adopts(self, engine: Engine) -> bool:
        """Whether an engine nobody bound must join the sandbox: derived from a joined engine, or built on
        the test database's URL (by the app, not by sqlsandbox)."""
        ancestor: Any = getattr(engine, "_proxied", None)  # OptionEngine: engine.execution_options(...)
        while ancestor is not None:
            if ancestor in self._joined_engines:
                return True
            ancestor = getattr(ancestor, "_proxied", None)
        if getattr(engine, "_sqlsandbox_own", False):
            return False
        return same_database(engine.url, self._sandbox.db.url)

    def bind_test_engines(self) -> None:
        db = self._sandbox.db
        if db.has_sync_driver():
            self._patch_connect(db.sync_engine)
        # Without an async driver installed, async tests say so when they ask for one.
        with contextlib.suppress(DriverMissingError):
            self._patch_connect(db.async_engine.sync_engine)

    def bind(self, obj: Any) -> None:
        with self._lock:
            self._bind(obj)

    def _bind(self, obj: Any) -> None:
        if id(obj) in self._seen:
            return
        self._seen.add(id(obj))
        if isinstance(obj, (scoped_session, async_scoped_session)):
            self._bind_scoped(obj)
        elif isinstance(obj, async_sessionmaker):
            self._bind_factory(obj, self._sandbox.async_engine)
        elif isinstance(obj, sessionmaker):
            # sessionmaker(bind=async_engine, class_=AsyncSession), still valid in SQLAlchemy 2.x, makes
            # AsyncSessions, which need an AsyncEngine
            is_async = isinstance(obj.class_, type) and issubclass(obj.class_, AsyncSession)
            self._bind_factory(obj, self._sandbox.async_engine if is_async else self._sandbox.sync_engine)
        elif isinstance(obj, AsyncEngine):
            self._patch_connect(obj.sync_engine)
        elif isinstance(obj, Engine):
            self._patch_connect(obj)
        else:
            check_bindable(obj)

    def _bind_factory(self, factory: Any, engine: Any) -> None:
        saved = dict(factory.kw)
        new_kw: dict[str, Any] = {"bind": engine}
        if saved.get("binds"):
            new_kw["binds"] = dict.fromkeys(saved["binds"], engine)
        factory.configure(**new_kw)

        def undo() -> None:
            factory.kw = saved

        self._undo.append(undo)

    def _bind_scoped(self, scoped: Any) -> None:
        # Sessions a scoped registry made belong to one test: each test starts and ends with none.
        scoped.registry.clear()
        self._undo.append(scoped.registry.clear)
        self.bind(scoped.session_factory)

    def _patch_connect(self, engine: Engine) -> None:
        previous = engine.__dict__.get("connect", _MISSING)
        engine.connect = functools.partial(self._sandbox._connect, engine)  # type: ignore[method-assign]
        self._joined_engines.add(engine)

        def undo() -> None:
            if previous is _MISSING:
                engine.__dict__.pop("connect", None)
            else:
                engine.connect = previous  # type: ignore[method-assign]

        self._undo.append(undo)
        self._undo.append(stop_adopting)
        start_adopting()
        self._patch_dialect(engine)

    def _patch_dialect(self, engine: Engine) -> None:
        """The app's engine speaks the test database's dialect while bound: its connections report it as
        their engine (see Sandbox._connect), and what asks engine.dialect (inspect(), savepoints, the ORM)
        must get the one that is connected to the test database, not one that never connected (and may be
        for another server)."""
        with contextlib.suppress(DriverMissingError):  # no async driver: async use says so when it comes
            db = self._sandbox.db
            home = db.async_engine.sync_engine if engine.dialect.is_async else self._sandbox.sync_engine
            if home is engine or home.dialect is engine.dialect:
                return
            saved = engine.dialect
            engine.dialect = home.dialect

            def undo() -> None:
                engine.dialect = saved

            self._undo.append(undo)

    def restore(self) -> None:
        with self._lock:
            self._restore()

    def _restore(self) -> None:
        while self._undo:
            self._undo.pop()()
        self._seen.clear()
        self._joined_engines = weakref.WeakSet()
