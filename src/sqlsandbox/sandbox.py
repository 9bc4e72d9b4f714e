"""The per-test sandbox: one connection, an outer transaction that is always rolled back, joined units of work.

The connection is opened lazily, by the first thing that uses the database, in that caller's thread or event
loop: so the same fixtures serve sync tests, pytest-asyncio (any loop scope) and anyio, and an async driver
connection is always made on the loop that will use it.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import MetaData
from sqlalchemy.engine import Connection, Engine, Transaction
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.orm import Session
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.util import greenlet_spawn

from .binding import Bindings
from .connection import JoinedConnection
from .errors import (
    SandboxClosedError,
    SandboxError,
    SandboxEscapeError,
    SandboxLayerError,
    SandboxLoopError,
)
from .faults import Faults
from .guards import (
    UnitStack,
    call_site,
    describe_loop,
    forget_held_units,
    in_greenlet,
    is_transaction_control,
    is_write,
    loop_mismatch,
    running_loop,
    tables_written,
)
from .queries import ChangeTracker, Queries

if TYPE_CHECKING:
    from .database import TestDatabase

Flavor = Literal["sync", "async"]
_active: Sandbox | None = None
# Savepoint names are unique across sandboxes: a seed layer's open savepoints sit below a test's, and
# MariaDB silently replaces a savepoint of the same name.
_savepoint_names = itertools.count(1)


def active() -> Sandbox | None:
    """The sandbox of the test that is running now, if it asked for one."""
    return _active


@dataclass
class Layer:
    """Seed data written by a fixture of a wider scope, kept in a transaction (or savepoint) that the
    sandbox connection holds open until the fixture's scope ends; tests run in savepoints above it."""

    name: str
    flavor: Flavor
    loop: asyncio.AbstractEventLoop | None
    outer: Transaction
    end: Callable[[], None]  # ends the layer's fixture early (see layers.end_unused_layers)


class RootKeeper:
    """Keeps the sandbox connection open between tests, so a test pays for BEGIN/ROLLBACK, not a connect.
    With seed layers active, it keeps the connection inside their open transaction."""

    def __init__(self) -> None:
        self.sync: Connection | None = None
        self.async_: tuple[asyncio.AbstractEventLoop, Connection] | None = None
        # idle async connections of a loop that is not running now: closed on it when it runs no more
        self.retired: list[tuple[asyncio.AbstractEventLoop, Connection]] = []
        self.layers: list[Layer] = []

    def check_layers(self, flavor: Flavor, loop: asyncio.AbstractEventLoop | None, who: str) -> None:
        """A test (or layer) can only see the layers below it if it runs on their connection."""
        if not self.layers:
            return
        layer = self.layers[-1]
        if layer.flavor == flavor and layer.loop is loop:
            return
        if layer.flavor != flavor:
            why = (
                f"its rows live in the open transaction of the {layer.flavor} sandbox connection, and "
                f"{who} uses the {flavor} one, which cannot see them."
            )
            fix = (
                "write the seed with the same kind of code as the tests that use it (an async seed "
                "function for async tests, a sync one for sync tests)."
            )
        else:
            why = (
                f"its rows live in the open transaction of a connection made on {describe_loop(layer.loop)}, "
                f"and {who} runs on {describe_loop(loop)}; an asyncio connection cannot move between loops."
            )
            fix = (
                "run async tests that use an async seed on pytest-asyncio's session loop: "
                "@pytest.mark.asyncio(loop_scope='session') (or asyncio_default_test_loop_scope = session)."
            )
        raise SandboxLayerError(f"Seed layer {layer.name!r} is active, and {who} cannot use it.", why, fix)

    def push_layer(self, layer: Layer) -> None:
        self.layers.append(layer)

    def unwind_layer(self, name: str) -> None:
        """Roll back a layer (its scope ended): its seed data goes, the layers below stay."""
        index = next((i for i, layer in enumerate(self.layers) if layer.name == name), None)
        if index is None:
            return  # its connection was lost (a disconnect): the server already rolled it back
        # Layers stack in set-up order, not scope order: a session layer set up after a module layer sits
        # above it. End those fixtures first (pytest seeds them again when next asked), then this one.
        for above in list(reversed(self.layers[index + 1 :])):
            above.end()
        layer = self.layers[index]
        del self.layers[index:]
        root = self.sync if layer.flavor == "sync" else (self.async_[1] if self.async_ else None)
        if root is None or root.invalidated or (layer.loop is not None and layer.loop.is_closed()):
            return
        if layer.flavor == "sync":
            layer.outer.rollback()
        elif layer.loop is not None and not layer.loop.is_running():
            layer.loop.run_until_complete(greenlet_spawn(layer.outer.rollback))
        else:  # cannot run its loop from here: drop the connection, and the layer with it (server side)
            _discard(root)
            self.async_ = None

    def take(self, flavor: Flavor, loop: asyncio.AbstractEventLoop | None, who: str) -> Connection | None:
        self.check_layers(flavor, loop, who)
        if flavor == "sync":
            root, self.sync = self.sync, None
            return root
        if self.async_ is not None:
            kept_loop, root = self.async_
            self.async_ = None
            if kept_loop is loop and not root.invalidated:
                return root
            self._retire(kept_loop, root)  # made on another loop: not usable here, nor closable from here
        # back on the loop of a retired connection (the session loop, after function-loop tests): reuse it,
        # so there is never more than one per loop
        for index, (retired_loop, root) in enumerate(self.retired):
            if retired_loop is loop:
                del self.retired[index]
                if not root.invalidated:
                    return root
                _discard(root)
                break
        return None

    def give(self, flavor: Flavor, loop: asyncio.AbstractEventLoop | None, root: Connection) -> None:
        if flavor == "sync":
            if self.sync is not None:
                _discard(self.sync)
            self.sync = root
        else:
            assert loop is not None
            if self.async_ is not None:
                self._retire(*self.async_)
            self.async_ = (loop, root)

    def _retire(self, loop: asyncio.AbstractEventLoop, root: Connection) -> None:
        """An idle connection (no layer above it) that must be closed on its own loop, later: dropped
        instead, the garbage collector would find it (SQLAlchemy warns of a non-checked-in connection)."""
        if loop.is_closed() or root.invalidated:
            _discard(root)
        else:
            self.retired.append((loop, root))

    def close(self) -> None:
        self.layers.clear()
        if self.sync is not None:
            _discard(self.sync)
        self.sync = None
        self.close_async()

    def close_async(self) -> None:
        """Close the kept and retired async connections on their loops (pytest-asyncio's session loop is
        still open when its fixture's dependants are torn down)."""
        closing = self.retired + ([self.async_] if self.async_ is not None else [])
        self.retired, self.async_ = [], None
        for loop, root in closing:
            if not loop.is_closed() and not loop.is_running():
                try:
                    loop.run_until_complete(greenlet_spawn(root.close))
                except Exception:
                    _discard(root)
            else:
                _discard(root)


def _discard(root: Connection) -> None:
    """Drop a connection that cannot be closed normally (its loop is gone); the server rolls back."""
    try:
        fairy = root._dbapi_connection
        raw = getattr(fairy, "dbapi_connection", None)
        if raw is not None and hasattr(raw, "terminate"):
            raw.terminate()
        elif in_greenlet() or not root.dialect.is_async:
            root.close()
    except Exception:
        pass
    finally:
        root._dbapi_connection = None


class Sandbox:
    """One test's view of the test database. Everything opened through it is rolled back at the end."""

    def __init__(
        self,
        db: TestDatabase,
        keeper: RootKeeper,
        nodeid: str,
        *,
        lock_timeout: float = 10.0,
        keep_async_root: bool = False,
        metadatas: Iterable[MetaData] = (),
        committed: bool = False,
    ) -> None:
        self.db = db
        self.nodeid = nodeid
        self._keeper = keeper
        self._keep_async_root = keep_async_root
        self.units = UnitStack(lock_timeout, self._problem)
        self.problems: list[str] = []
        self.statements = 0
        self._root: Connection | None = None
        self._outer: Transaction | None = None  # the root's transaction, or a savepoint above seed layers
        self._layer_error: SandboxLayerError | None = None
        self._flavor: Flavor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.get_ident()
        self._joined: weakref.WeakSet[JoinedConnection] = weakref.WeakSet()
        self._closing = False
        self.closed = False
        self._root_dead = False
        self.bindings = Bindings(self)
        self.faults = Faults(self)
        self._faults_armed = False
        self.queries = Queries()
        self.committed = committed
        self.touched: set[str] = set()  # committed mode: tables written, cleaned after the test
        self._real: list[tuple[asyncio.AbstractEventLoop | None, weakref.ref[Connection]]] = []
        self._metadatas = list(metadatas)

    # ---- public API -------------------------------------------------------------------------------
    @property
    def sync_engine(self) -> Engine:
        """The engine sync sessions bind to: every connect() on it joins this sandbox."""
        return self.db.sync_engine if self.db.has_sync_driver() else self.db.async_engine.sync_engine

    @property
    def async_engine(self) -> AsyncEngine:
        """The engine async sessions bind to: every connect() on it joins this sandbox."""
        return self.db.async_engine

    def bind(self, obj: Any) -> Any:
        """Make a sessionmaker, async_sessionmaker, scoped session, Engine or AsyncEngine join this sandbox
        until the test ends; returns obj."""
        self.bindings.bind(obj)
        return obj

    def session(self, **kw: Any) -> Session:
        return Session(bind=self.sync_engine, **kw)

    def async_session(self, **kw: Any) -> AsyncSession:
        return AsyncSession(bind=self.async_engine, **kw)

    def connection(self) -> Connection:
        if self.committed:
            return self._real_connection(self.sync_engine)
        return self._new_joined(self.sync_engine)

    def async_connection(self) -> AsyncConnection:
        if self.committed:
            return AsyncConnection(self.async_engine)
        return AsyncConnection(
            self.async_engine, sync_connection=self._new_joined(self.async_engine.sync_engine)
        )

    def changes(self) -> ChangeTracker:
        """`with sandbox.changes() as changes:` (or `async with`): the rows the block inserted, updated
        and deleted, per table of the configured metadata."""
        return ChangeTracker(self, self._metadatas)

    def _internal_connection(self, flavor: Flavor) -> JoinedConnection:
        engine = self.async_engine.sync_engine if flavor == "async" else self.sync_engine
        conn = self._new_joined(engine)
        conn._internal = True
        return conn

    @property
    def flavor(self) -> Flavor | None:
        """'sync' or 'async' once the test has used the database, else None."""
        return self._flavor

    # ---- lifecycle ----------------------------------------------------------------------------------
    def activate(self) -> None:
        global _active
        _active = self
        forget_held_units()
        self.bindings.bind_test_engines()

    def close(self) -> None:
        """Roll everything back and let go; raises SandboxError if the test misused the sandbox."""
        self._closing = True
        try:
            if self.committed:
                self._close_real_connections()
                self._clean_touched_tables()
            elif self._root is not None:
                self._finish_root_anywhere()
        finally:
            self._let_go()
        if self.problems:
            raise SandboxError("The sandbox caught a problem in this test:\n- " + "\n- ".join(self.problems))

    def _let_go(self) -> None:
        """Detach every joined connection, restore bound factories, stop being the active sandbox: closed."""
        global _active
        for conn in list(self._joined):
            conn._detach()
        self.bindings.restore()
        if _active is self:
            _active = None
        forget_held_units()
        self.closed = True

    def keep_as_layer(self, name: str, end: Callable[[], None]) -> None:
        """End a seed layer's sandbox keeping what it committed: its transaction stays open on the kept
        connection, and the tests of the layer's scope run in savepoints above it."""
        self._closing = True
        try:
            if self._root is not None:
                if self._flavor == "sync":
                    self._freeze_root(name, end)
                else:
                    assert self._loop is not None
                    self._loop.run_until_complete(greenlet_spawn(self._freeze_root, name, end))
        finally:
            self._let_go()
        if self._layer_error is not None:
            raise self._layer_error
        if self.problems:
            raise SandboxError(
                "The sandbox caught a problem in this seed layer:\n- " + "\n- ".join(self.problems)
            )

    def _freeze_root(self, name: str, end: Callable[[], None]) -> None:
        root, self._root = self._root, None
        assert root is not None and self._flavor is not None and self._outer is not None
        open_units = list(self.units.units)
        self.units.clear()
        if root.invalidated or self._root_dead:
            _discard(root)
            self._layer_error = SandboxLayerError(
                f"Seed layer {name!r} lost its connection while it was being written.",
                fix="look for a disconnect fault (sandbox.faults) or a server restart during the seed.",
            )
            return
        if any(unit.wrote for unit in open_units):
            self._outer.rollback()
            self._keeper.give(self._flavor, self._loop, root)
            self._layer_error = SandboxLayerError(
                f"Seed layer {name!r} returned with uncommitted work: "
                + "; ".join(unit.describe() for unit in open_units if unit.wrote),
                why="a layer keeps what its seed function committed, as the app's data would be; work "
                "left in an open transaction is not seed data.",
                fix="commit the session before the seed function returns (session.commit(), or "
                "`with session.begin():` / `async with session.begin():`).",
            )
            return
        if open_units:  # read-only transactions left open (an attribute read after commit): end them
            root._rollback_to_savepoint_impl(open_units[0].savepoint)
        self._keeper.give(self._flavor, self._loop, root)
        self._keeper.push_layer(Layer(name, self._flavor, self._loop, self._outer, end))

    def _finish_root_anywhere(self) -> None:
        if self._flavor == "sync":
            self._finish_root()
            return
        loop = self._loop
        assert loop is not None and self._root is not None
        if loop.is_closed() or loop.is_running():
            _discard(self._root)
            self._root = None
            return
        loop.run_until_complete(greenlet_spawn(self._finish_root))

    def _finish_root(self) -> None:
        root, self._root = self._root, None
        assert root is not None and self._flavor is not None
        self.units.clear()
        try:
            if root.invalidated or self._root_dead:
                root.close()
                self._lose_layers()
                return
            if self._outer is not None and self._outer.is_active:
                self._outer.rollback()
            keep = self._flavor == "sync" or self._keep_async_root or bool(self._keeper.layers)
            if keep:
                self._keeper.give(self._flavor, self._loop, root)
            else:
                root.close()
        except Exception:
            _discard(root)
            raise

    # ---- internals used by JoinedConnection and the engine events -----------------------------------
    def _problem(self, message: str) -> None:
        self.problems.append(message)

    def _next_savepoint_name(self) -> str:
        return f"sqlsandbox_sp_{next(_savepoint_names)}"

    def _new_joined(self, engine: Engine) -> JoinedConnection:
        if self.closed:
            raise SandboxClosedError(
                f"The sandbox of {self.nodeid} was used after the test ended (at {call_site()}).",
                why="a sandbox is rolled back and closed when its test ends.",
                fix="do not keep sessions or connections from a test in module globals or in "
                "fixtures of a wider scope.",
            )
        conn = JoinedConnection(self, engine)
        self._joined.add(conn)
        return conn

    def _connect(self, engine: Engine | None = None) -> Connection:
        """engine.connect() of every bound engine during the test."""
        if engine is not None and engine.dialect.is_async and not in_greenlet():
            raise SandboxLoopError(
                f"An async engine or AsyncSession needed the database from sync code at {call_site()}.",
                why="most often an attribute expired by commit() (or never loaded) was read after "
                "`await session.commit()`: SQLAlchemy then loads it with sync IO, which an asyncio "
                "driver cannot do (plain SQLAlchemy says MissingGreenlet).",
                fix="create the session with expire_on_commit=False, `await session.refresh(obj)` "
                "before reading, or load relationships eagerly (selectinload); run sync code that "
                "needs the database with `await session.run_sync(fn)`.",
            )
        if self.committed:  # a real connection of its own to the test database, committing for real
            self._flavor = self._flavor or ("async" if in_greenlet() else "sync")
            return self._real_connection(
                self.db.async_engine.sync_engine if in_greenlet() else self.sync_engine
            )
        if in_greenlet():
            return self._new_joined(self.db.async_engine.sync_engine)
        return self._new_joined(self.sync_engine)

    def _attach(self, conn: JoinedConnection) -> PoolProxiedConnection:
        flavor: Flavor = "async" if conn.engine.dialect.is_async else "sync"
        if self.closed:
            raise SandboxClosedError(
                f"A connection was used after its test ended (at {call_site()}).",
                fix="keep sessions and connections inside the test that made them.",
            )
        if self._root is not None and (self._root_dead or self._root.invalidated):
            self._replace_dead_root()
        if self._root is None:
            self._open_root(flavor, conn.engine)
        elif flavor != self._flavor:
            raise self._mixing_error(flavor)
        else:
            mismatch = loop_mismatch(self._loop, self._thread, call_site)
            if mismatch is not None:
                raise mismatch
        assert self._root is not None
        return self._root.connection

    def _open_root(self, flavor: Flavor, engine: Engine) -> None:
        loop = running_loop() if flavor == "async" else None
        if flavor == "async" and not in_greenlet():
            raise SandboxLoopError(
                f"Sync code used the async sandbox connection directly at {call_site()}.",
                why="an asyncio driver can only be used from SQLAlchemy's async API (AsyncSession, "
                "AsyncConnection) or from code they run with run_sync().",
                fix="await session.run_sync(fn) / await connection.run_sync(fn) to run sync code, "
                "or use a sync test with db_session.",
            )
        root = self._keeper.take(flavor, loop, self.nodeid)
        if root is None:
            root = Engine.connect(engine)  # the real connect: the instance's is patched during tests
        self._root, self._flavor, self._loop = root, flavor, loop
        root._sqlsandbox_root = True  # type: ignore[attr-defined]
        # The outer transaction: never committed, rolled back at the end. Above seed layers (whose
        # transaction the kept connection holds open) it is a savepoint, so only this test's work goes.
        self._outer = root.begin_nested() if root.in_transaction() else root.begin()

    def _real_connection(self, engine: Engine) -> Connection:
        conn = Engine.connect(engine)
        self._real.append((running_loop() if engine.dialect.is_async else None, weakref.ref(conn)))
        return conn

    def _close_real_connections(self) -> None:
        """Committed mode: end what the test left open (a fixture session's transaction holds locks)."""
        for loop, ref in self._real:
            conn = ref()
            if conn is None or conn.closed:
                continue
            if loop is None:
                conn.close()
            elif not loop.is_closed() and not loop.is_running():
                loop.run_until_complete(greenlet_spawn(conn.close))
            else:
                _discard(conn)
        self._real.clear()

    def _clean_touched_tables(self) -> None:
        """Committed mode: empty the tables the test wrote to (and restart their sequences)."""
        names = {t.name for m in self._metadatas for t in m.tables.values()}
        touched = sorted(t for t in self.touched if t in names)
        if touched:
            self.db.clean_tables(touched)

    def _replace_dead_root(self) -> None:
        """After a disconnect (a fault, or the server went away) start over on a fresh connection: the
        work of this test so far went with the old one, as it would on a real server."""
        root, self._root = self._root, None
        assert root is not None
        self.units.clear()
        self._lose_layers()
        for conn in list(self._joined):
            if conn._dbapi_connection is not None:
                conn._detach()
        _discard(root)
        self._root_dead = False

    def _lose_layers(self) -> None:
        """Seed layers lived in a lost connection's transaction: they are gone. End their fixtures, so the
        next test that asks for them seeds them again instead of running without them."""
        for layer in list(reversed(self._keeper.layers)):
            layer.end()
        self._keeper.layers.clear()

    def _mixing_error(self, flavor: Flavor) -> SandboxError:
        have = "an async" if self._flavor == "async" else "a sync"
        return SandboxLoopError(
            f"This test's sandbox runs on {have} connection, and {flavor} code tried to use it at "
            f"{call_site()}.",
            why="one test shares one connection; an async driver's connection cannot serve sync "
            "code outside run_sync, and a sync one cannot serve async code.",
            fix="in async tests use async_db_session / async_db_connection and run sync code with "
            "await session.run_sync(fn); in sync tests use db_session / db_connection.",
        )

    def _root_invalidated(self, exception: BaseException | None) -> None:
        self._root_dead = True

    # engine events (installed once per run on the test engines)
    def before_statement(self, conn: Connection, statement: str, context: Any) -> None:
        if self.committed:
            self.statements += 1
            if is_write(statement, context):
                self.touched.update(tables_written(statement, context))
            if context is not None:
                context._sqlsandbox_started = time.perf_counter()
            return
        if not isinstance(conn, JoinedConnection):
            return  # the root's own BEGIN, or a connection of sqlsandbox's outside the sandbox
        site = call_site
        if is_transaction_control(statement, conn.dialect.name):
            verb = statement.strip().split(None, 1)[0].upper() if statement.strip() else "SQL"
            message = f"{verb} issued as SQL at {site(3)} would end the sandbox's transaction."
            self._problem(message)
            raise SandboxEscapeError(
                message,
                why="the test's work lives in one outer transaction that is rolled back at the end; "
                "a raw COMMIT would write it to the test database for good.",
                fix="use session.commit() / connection.commit(): inside the sandbox they release a "
                "savepoint, exactly as a commit looks to the code under test.",
            )
        if self._loop is not None or self._thread != threading.get_ident():
            mismatch = loop_mismatch(self._loop, self._thread, lambda: site(5))
            if mismatch is not None:
                raise mismatch
        self.statements += 1
        locked = self.units.before_statement(conn._unit, lambda: site(4), is_write(statement, context))
        if context is not None:
            context._sqlsandbox_locked = locked
            context._sqlsandbox_started = time.perf_counter()

    def rewrite_statement(
        self, conn: Connection, cursor: Any, statement: str, parameters: Any, context: Any
    ) -> tuple[str, Any]:
        if isinstance(conn, JoinedConnection):
            return self.faults.before_statement(conn, cursor, statement, parameters, context)
        return statement, parameters

    def after_statement(
        self, conn: Connection, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        if context is None:
            return
        if getattr(context, "_sqlsandbox_locked", False):
            context._sqlsandbox_locked = False
            self.units.after_statement()
        started = getattr(context, "_sqlsandbox_started", None)
        if started is not None and not getattr(conn, "_internal", False):
            self.queries.record(statement, parameters, started, many)

    def statement_failed(self, conn: Connection | None, context: Any) -> None:
        unit = conn._unit if isinstance(conn, JoinedConnection) else None
        if unit is not None:
            unit.wrote = True  # a failed statement may leave the transaction aborted: only a rollback heals it
        if context is not None and getattr(context, "_sqlsandbox_locked", False):
            context._sqlsandbox_locked = False
            self.units.after_statement()

    def outer_ended(self, conn: Connection, verb: str) -> None:
        if conn is not self._root or self._closing:
            return
        message = f"The sandbox's outer transaction was {verb} at {call_site(3)}."
        self._problem(message)
        if verb == "committed":
            raise SandboxEscapeError(
                message,
                why="committing it would write the test's data to the test database for good.",
                fix="commit through sessions or connections from the sandbox fixtures or bound "
                "factories: their commit releases a savepoint.",
            )
