"""Point the application's own session factories and engines at the sandbox for one test, then restore them.

Engines are joined by replacing connect() on the instance (Engine.begin() and Session use connect(), and an
AsyncEngine connects through its sync_engine), so the app's engine never opens its own connection: a
module-level engine pointing at a development database is never touched during a test.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_scoped_session, async_sessionmaker
from sqlalchemy.orm import scoped_session, sessionmaker

from .errors import ConfigError, DriverMissingError

if TYPE_CHECKING:
    from .sandbox import Sandbox

_MISSING = object()
BINDABLE = (scoped_session, async_scoped_session, async_sessionmaker, sessionmaker, AsyncEngine, Engine)


def check_bindable(obj: Any, spec: str = "") -> None:
    """ConfigError unless obj is something bind() takes; spec names where it came from."""
    if isinstance(obj, BINDABLE):
        return
    where = f"sqlsandbox_bind entry {spec!r} is" if spec else "sandbox.bind() got"
    raise ConfigError(
        f"{where} {obj!r} (a {type(obj).__name__}), which sqlsandbox cannot bind.",
        why="sqlsandbox_bind and sandbox.bind() take the objects an application opens database work through.",
        fix="name a sessionmaker, async_sessionmaker, scoped_session, async_scoped_session, Engine or "
        "AsyncEngine.",
    )


class Bindings:
    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox
        self._undo: list[Callable[[], None]] = []
        self._seen: set[int] = set()

    def bind_test_engines(self) -> None:
        db = self._sandbox.db
        if db.has_sync_driver():
            self._patch_connect(db.sync_engine)
        # Without an async driver installed, async tests say so when they ask for one.
        with contextlib.suppress(DriverMissingError):
            self._patch_connect(db.async_engine.sync_engine)

    def bind(self, obj: Any) -> None:
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

        def undo() -> None:
            if previous is _MISSING:
                engine.__dict__.pop("connect", None)
            else:
                engine.connect = previous  # type: ignore[method-assign]

        self._undo.append(undo)
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
        while self._undo:
            self._undo.pop()()
        self._seen.clear()
