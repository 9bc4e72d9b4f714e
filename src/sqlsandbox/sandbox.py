"""The per-test sandbox: one connection, an outer transaction that is always rolled back, joined units of work.

The connection is opened lazily, by the first thing that uses the database: so the same fixtures serve sync
tests, pytest-asyncio (any loop scope) and anyio. A sync connection serves every thread of the test; an async
one every event loop where its driver allows it (owner.py), else the loop that opened it. Statements are
guarded by the engine events (events.py) and take turns in the unit stack (units.py); what is kept between
tests by the RootKeeper (keeper.py); seed layers are in layers.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import MetaData
from sqlalchemy.engine import Connection, Engine, Transaction
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlalchemy.orm import Session
from sqlalchemy.pool import PoolProxiedConnection

from . import drivers
from .actors import current_actor
from .binding import Bindings, real_connect, resolve_bindable, sandbox_options
from .callsite import call_site
from .committed import CommittedMode
from .connection import JoinedConnection, discard, idle_root_alive
from .errors import (
    SandboxClosedError,
    SandboxError,
    SandboxEscapeError,
    SandboxLateWorkError,
    SandboxLoopError,
)
from .faults import Faults
from .keeper import RootKeeper
from .loops import in_greenlet, loop_mismatch, run_on_idle_loop, running_loop
from .queries import ChangeTracker, Queries
from .units import UnitStack, forget_held_units

if TYPE_CHECKING:
    from .database import TestDatabase

Flavor = Literal["sync", "async"]
_active: Sandbox | None = None
# Savepoint names are unique across sandboxes: a seed layer's open savepoints sit below a test's, and
# MariaDB silently replaces a savepoint of the same name.
_savepoint_names = itertools.count(1)


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


def active() -> Sandbox | None:
    """The sandbox of the test that is running now, if it asked for one."""
    return _active


# The test whose body is running, in the context of all the work it starts: a task copies its creator's
# context, and so does a thread started through anyio.to_thread, run_in_executor or contextvars. Work that
# carries the name of a test other than the running one was left running by that test (set-up and
# tear-down carry none: what fixtures start may outlive a test).
_work_of: ContextVar[str | None] = ContextVar("sqlsandbox_work_of", default=None)


@contextlib.contextmanager
def work_of(name: str | None) -> Iterator[None]:
    """Everything started inside the block belongs to `name` (None: to no test)."""
    token = _work_of.set(name)
    try:
        yield
    finally:
        _work_of.reset(token)


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
        self.units = UnitStack(lock_timeout, self._problem, self._raw_execute, self._next_savepoint_name)
        self.problems: list[str] = []
        self.statements = 0
        self._root: Connection | None = None
        self._outer: Transaction | None = None  # the root's transaction, or a savepoint above seed layers
        self._flavor: Flavor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_free = False  # the async connection serves every loop (see _open_root)
        self._joined: weakref.WeakSet[JoinedConnection] = weakref.WeakSet()
        self._closing = False
        self.closed = False
        self._root_dead = False
        # set once the driver reports the outer transaction open; from then on it must stay open
        self._driver_began = False
        self._last_statement = ""
        self._last_failed = False  # the last statement failed: a server may end the transaction for it
        self.session_changed = False  # a statement changed session state a rollback does not undo
        self.escaped: str | None = None  # how the outer transaction ended past SQLAlchemy, if it did
        self.restored: list[str] = []  # the tables put back as the schema build left them, after an escape
        self.late_work: list[str] = []  # work of finished tests refused here: "test: where"
        # tasks and threads that ran statements as work of this test's body (not of its fixtures, nor anyio's
        # long-lived runner task): the ones that must be done by its end
        self._body_actors: weakref.WeakSet[Any] = weakref.WeakSet()
        self.bindings = Bindings(self)
        self.faults = Faults(self)
        self._faults_armed = False
        self.queries = Queries()
        self._metadatas = list(metadatas)
        self.committed_mode = CommittedMode(db, self._metadatas) if committed else None
        self._activated = False
        self._closers: list[Callable[[], None]] = []  # what the test's helpers need done before the rollback

    # ---- public API -------------------------------------------------------------------------------
    @property
    def committed(self) -> bool:
        """Whether work commits for real (committed mode)."""
        return self.committed_mode is not None

    @property
    def touched(self) -> set[str]:
        """Committed mode: the tables written so far, emptied after the test."""
        return self.committed_mode.touched if self.committed_mode is not None else set()

    @property
    def sync_engine(self) -> Engine:
        """The engine sync sessions bind to: every connect() on it joins this sandbox."""
        self._check_activated()
        return self.db.sync_engine if self.db.has_sync_driver() else self.db.async_engine.sync_engine

    @property
    def async_engine(self) -> AsyncEngine:
        """The engine async sessions bind to: every connect() on it joins this sandbox."""
        self._check_activated()
        return self.db.async_engine

    @property
    def url(self) -> str:
        """The test database's URL (sync driver, password included): an engine the test or the app builds
        on it joins this sandbox."""
        return drivers.sync_url(self.db.url).render_as_string(hide_password=False)

    @property
    def async_url(self) -> str:
        """The test database's URL with its async driver; see url."""
        return drivers.async_url(self.db.url).render_as_string(hide_password=False)

    def bind(self, obj: Any) -> Any:
        """Make a sessionmaker, async_sessionmaker, scoped session, Engine or AsyncEngine join this sandbox
        until the test ends; returns obj."""
        self._check_activated()
        self.bindings.bind(resolve_bindable(obj))
        return obj

    def asgi_client(self, app: Any, base_url: str = "http://testserver") -> Any:
        """An httpx.AsyncClient calling this ASGI app in the test's loop, inside this sandbox, its lifespan
        running from the first request (or `await client.start()`) until the test ends: one per app, as
        many apps as the test needs. Needs sqlsandbox[asgi]."""
        from .integrations.asgi import close_client, make_client

        client = make_client(app, base_url)
        self._closers.append(lambda: close_client(client))
        return client

    def session(self, class_: type[Session] = Session, **kw: Any) -> Session:
        """A Session in the sandbox; class_ for a subclass (SQLModel's Session, the app's own)."""
        return class_(bind=self.sync_engine, **kw)

    def async_session(self, class_: type[AsyncSession] = AsyncSession, **kw: Any) -> AsyncSession:
        """An AsyncSession in the sandbox (expire_on_commit=False for reading objects after a commit)."""
        return class_(bind=self.async_engine, **kw)

    def connection(self) -> Connection:
        if self.committed_mode is not None:
            return self.committed_mode.connection(self.sync_engine)
        return self._new_joined(self.sync_engine)

    def async_connection(self) -> AsyncConnection:
        if self.committed_mode is not None:
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
    def closing(self) -> bool:
        """Whether the sandbox is ending (or has ended): it takes no more engines in."""
        return self._closing or self.closed

    @property
    def flavor(self) -> Flavor | None:
        """'sync' or 'async' once the test has used the database, else None."""
        return self._flavor

    # ---- lifecycle ----------------------------------------------------------------------------------
    def activate(self) -> None:
        """Become the sandbox of the code running now: the test engines' connect() joins it. Run.sandbox()
        does this (and binds the run's objects); a Sandbox never activated refuses to be used."""
        global _active
        if self.closed:
            raise SandboxClosedError(f"The sandbox of {self.nodeid} is closed; it cannot be activated again.")
        _active = self
        self._activated = True
        forget_held_units()
        self.bindings.bind_test_engines()

    def close(self) -> None:
        """Roll everything back and let go; raises SandboxError if the test misused the sandbox."""
        stopped: BaseException | None = None  # Ctrl-C in an app's shutdown: raised once all is rolled back
        while self._closers:  # last made, first closed: an app's shutdown may still use the database
            try:
                self._closers.pop()()
            except (KeyboardInterrupt, SystemExit) as exc:
                stopped = exc
            except BaseException as exc:  # a CancelledError from a task group too: the rollback must happen
                self._problem(f"Closing an app the test started: {type(exc).__name__}: {exc}")
        self._closing = True
        self.units.end()
        # after Ctrl-C the interrupted test's own task is left pending: that is no misuse of the test's
        interrupted = self.db.stopping
        for unit in [] if interrupted else self.units.held_by_pending_tasks(self._body_actors):
            self._problem(
                f"{unit.describe()} is still open as the test ends, and its task has not finished: the test "
                "started work it did not await. Await or cancel the tasks a test starts before it returns; "
                "their work is rolled back with the test, and a later statement of theirs is refused."
            )
        try:
            if self.committed_mode is not None:
                self.committed_mode.close()
            elif self._root is not None:
                self._finish_root_anywhere()
        finally:
            self._let_go()
        if self.escaped is not None:  # what it committed for real must not reach the next test
            try:
                self.restored = self.db.restore_baseline(self._metadatas)
            except Exception as exc:  # the escape is the news; the end-of-run leak check names what stayed
                self._problem(f"Putting the tables back after it failed: {type(exc).__name__}: {exc}")
        if stopped is not None:
            raise stopped
        if self.problems and not interrupted:  # Ctrl-C ends the run with pytest's own one line
            raise SandboxError("The sandbox caught a problem in this test:\n- " + "\n- ".join(self.problems))

    def interrupted(self) -> None:
        """Ctrl-C: the interrupted test's tasks stay pending, and end later with an error of the connection
        the run killed; expected, so retrieved here, or asyncio would print each as 'never retrieved'."""
        for actor in list(self._body_actors):
            if isinstance(actor, asyncio.Task):
                actor.add_done_callback(_retrieve)

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

    def _finish_root_anywhere(self) -> None:
        run_on_idle_loop(self._loop, self._finish_root, self._drop_root)

    def _drop_root(self) -> None:
        root, self._root = self._root, None
        if root is not None:
            discard(root)

    def _finish_root(self) -> None:
        if self._driver_began:
            self._check_outer_open(None)
        root, self._root = self._root, None
        assert root is not None and self._flavor is not None
        self.units.clear()
        if self.db.stopping:
            # the run killed its connections (Ctrl-C): the server rolled this one back, and a rollback
            # sent now would only fail (PostgreSQL: AdminShutdown) or wait on a half-read reply
            self._keeper.layers.clear()
            discard(root, dead=True)
            return
        try:
            if root.invalidated or self._root_dead:
                root.close()
                self._keeper.layers.lose()
                return
            if self.escaped is not None or self.session_changed:
                # its transaction is gone, or its settings (SET, PRAGMA) would reach the next test: that
                # one starts on a fresh connection (and seed layers, which lived in this one, seed again)
                root.close()
                self._keeper.layers.lose()
                return
            if self._outer is not None and self._outer.is_active:
                self._outer.rollback()
            keep = (
                self._flavor == "sync" or self._loop_free or self._keep_async_root or bool(self._keeper.layers)
            )
            if keep:
                self._keeper.give(self._flavor, self._loop, root)
            else:
                root.close()
        except Exception:
            discard(root)
            raise

    # ---- internals used by JoinedConnection and the engine events -----------------------------------
    def _problem(self, message: str) -> None:
        self.problems.append(message)

    def _raw_execute(self, sql: str) -> None:
        """Run sql on the sandbox connection's driver connection, past SQLAlchemy and its events."""
        assert self._root is not None
        try:
            cursor = self._root.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            try:
                cursor.execute(sql)
            finally:
                cursor.close()
        except Exception:
            # past SQLAlchemy, a dead connection is not noticed for us: the next use starts a fresh one
            self._root_dead = True
            raise

    def _saw_statement(self, statement: str) -> None:
        """After each statement of the test: remember it, and notice when the driver's transaction opens."""
        self._last_statement = statement
        self._last_failed = False
        if not self._driver_began and self._root is not None:
            driver = self._root.connection.driver_connection
            self._driver_began = bool(self.db.provisioner.in_transaction(driver))

    def _check_work_is_ours(self, site: Callable[[], str]) -> None:
        """Refuse a statement of work that a finished test left running (see _work_of)."""
        started_by = _work_of.get()
        if started_by is None:
            return
        if started_by == self.nodeid:
            self._body_actors.add(current_actor())
            return
        where = site()
        if not any(late.startswith(f"{started_by} ") for late in self.late_work):  # its clean-up is refused too
            self.late_work.append(f"{started_by} (at {where})")
        raise SandboxLateWorkError(
            f"Work started by {started_by}, which has ended, used the database during {self.nodeid} at "
            f"{where}.",
            why="a task or thread a test starts belongs to that test: its sandbox was rolled back when it "
            "ended, and the running test's data is not its to change. It was refused; nothing reached the "
            "running test.",
            fix="await or cancel the tasks a test starts before it returns (asyncio.TaskGroup, "
            "task.cancel() in a finally), join its threads, or start long-lived work in a fixture that "
            "stops it at teardown.",
        )

    def _check_outer_open(self, next_site: Callable[[], str] | None) -> None:
        """Fail the test if its outer transaction ended past SQLAlchemy (a driver-level commit) since the
        last statement: found before the next statement (next_site), or at teardown (None)."""
        root = self._root
        if root is None or self._root_dead or root.invalidated or self.escaped is not None:
            return
        driver, quirks = root.connection.driver_connection, self.db.provisioner
        if quirks.in_transaction(driver) is not False:
            return
        if quirks.socket_of(driver) == -1:  # the connection died (a disconnect fault, a kill): not an escape
            self._root_dead = True
            return
        last = " ".join(self._last_statement.split())
        last = last if len(last) <= 60 else last[:57] + "..."
        until = f"the statement at {next_site()}" if next_site is not None else "the end of the test"
        if self._last_failed:  # a deadlock (or a lock timeout, so configured) rolls the transaction back
            self.escaped = (
                f"The server ended the sandbox's outer transaction when `{last}` failed, before {until}: "
                "the test's work so far was rolled back, and what it ran after that committed for real."
            )
        else:
            self.escaped = (
                f"The sandbox's outer transaction was ended past SQLAlchemy between `{last}` and {until}: "
                "what the test wrote until then was committed for real."
            )
        cause = (
            "On MariaDB/MySQL a deadlock (or a lock wait timeout, with innodb_rollback_on_timeout) rolls the "
            "whole transaction back: retry the work in a new test-level transaction, or test the failure "
            "with sandbox.faults, which fails the statement without ending the transaction."
            if self._last_failed
            else "A commit on the driver connection (dbapi_connection.commit(), driver_connection.commit(), a "
            "raw cursor's COMMIT) ends the transaction the sandbox rolls back. Commit through the session or "
            "connection instead (inside the sandbox that releases a savepoint), or mark the test "
            "@pytest.mark.sqlsandbox(committed=True) if the code under test must commit on the driver."
        )
        self._problem(
            f"{self.escaped}\n  {cause} The tables were put back as the schema build left them, so later "
            "tests start clean."
        )
        if next_site is not None:
            raise SandboxEscapeError(
                self.escaped,
                why="a commit on the driver connection (dbapi_connection.commit(), "
                "driver_connection.commit(), a raw cursor's COMMIT) ends the one transaction the sandbox "
                "rolls back.",
                fix="commit through the session or connection (inside the sandbox that releases a "
                "savepoint), or mark the test @pytest.mark.sqlsandbox(committed=True) if the code under "
                "test must commit on the driver.",
            )

    def _next_savepoint_name(self) -> str:
        return f"sqlsandbox_sp_{next(_savepoint_names)}"

    def _check_activated(self) -> None:
        if not self._activated:
            raise SandboxError(
                f"The sandbox of {self.nodeid} was used before it was activated (at {call_site()}).",
                why="until activate() the test database's engines do not join it: its sessions and "
                "connections would commit for real.",
                fix="get a sandbox from the fixtures (pytest) or `with run.sandbox() as sandbox:` "
                "(sqlsandbox.Run), which activate it.",
            )

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
        home = self.db.async_engine.sync_engine if in_greenlet() else self.sync_engine
        conn: Connection
        if self.committed_mode is not None:  # a real connection of its own, committing for real
            self._flavor = self._flavor or ("async" if in_greenlet() else "sync")
            conn = self.committed_mode.connection(home)
        else:
            conn = self._new_joined(home)
        if engine is not None and engine is not home:
            # A Session files the connections of its transaction under conn.engine and looks them up by
            # its bind: for the app's own engine to find its connection again (one transaction, not one
            # per statement), the connection must report that engine. It still speaks the test
            # database's dialect and runs the test engine's events (its dispatch was joined with `home`'s
            # when it was made; SQLAlchemy checks conn.engine's flag for them, so ours is set).
            conn.engine = engine
            conn._has_events = conn._has_events or home._has_events
            options = sandbox_options(engine)  # e.g. a tenant's schema_translate_map
            if options:
                conn._execution_options = conn._execution_options.union(options)
        return conn

    def _attach(self, conn: JoinedConnection) -> PoolProxiedConnection:
        flavor: Flavor = "async" if conn.dialect.is_async else "sync"
        if self.closed:
            raise SandboxClosedError(
                f"A connection was used after its test ended (at {call_site()}).",
                fix="keep sessions and connections inside the test that made them.",
            )
        if self._root is None or self._root_dead or self._root.invalidated:
            # One actor at a time (re)opens it: opening an async connection awaits, and other tasks that
            # need it meanwhile must get this one, not open a second one.
            self.units.lock.acquire(
                self.units.timeout, lambda owner: self.units._busy(owner, f"Connecting at {call_site()}")
            )
            try:
                if self._root is not None and (self._root_dead or self._root.invalidated):
                    self._replace_dead_root()
                if self._root is None:
                    self._open_root(flavor, conn.home)
            finally:
                self.units.lock.release()
        if flavor != self._flavor:
            raise self._mixing_error(flavor)
        elif self._loop is not None and not self._loop_free:  # else it serves every thread and loop
            mismatch = loop_mismatch(self._loop, call_site)
            if mismatch is not None:
                raise mismatch
        assert self._root is not None
        return self._root.connection

    def _open_root(self, flavor: Flavor, engine: Engine) -> None:
        # An async connection that serves every loop (asyncpg's lives on the owner loop) is kept, closed and
        # rolled back there; any other belongs to the loop that opens it.
        self._loop_free = flavor == "async" and self.db.async_loop_free
        loop = self.db.owner.loop if self._loop_free else running_loop() if flavor == "async" else None
        if flavor == "async" and not in_greenlet():
            raise SandboxLoopError(
                f"Sync code used the async sandbox connection directly at {call_site()}.",
                why="an asyncio driver can only be used from SQLAlchemy's async API (AsyncSession, "
                "AsyncConnection) or from code they run with run_sync().",
                fix="await session.run_sync(fn) / await connection.run_sync(fn) to run sync code, "
                "or use a sync test with db_session.",
            )
        root = self._keeper.take(flavor, loop, self.nodeid)
        if root is not None and not idle_root_alive(root, self.db.provisioner.socket_of):
            self._lost_between_tests(root)
            root = None
        if root is None:
            root = real_connect(engine)  # the instance's connect() is patched during tests
        self._root, self._flavor, self._loop = root, flavor, loop
        self._driver_began = False  # a new connection: its transaction opens at its first statement
        root._sqlsandbox_root = True  # type: ignore[attr-defined]
        # The outer transaction: never committed, rolled back at the end. Above seed layers (whose
        # transaction the kept connection holds open) it is a savepoint, so only this test's work goes.
        self._outer = root.begin_nested() if root.in_transaction() else root.begin()

    def _lost_between_tests(self, root: Connection) -> None:
        """The kept connection died while idle (killed from outside, a server restart): this test starts
        on a fresh one. Seed layers lived in its transaction; a test that needs them cannot run."""
        layers = [layer.name for layer in self._keeper.layers]
        discard(root)
        self._keeper.layers.lose()
        if layers:
            raise SandboxError(
                f"The sandbox connection was closed from outside between tests, and with it the seed "
                f"layers {', '.join(map(repr, layers))} this test runs on.",
                why="a seed layer's rows live in the open transaction of the kept connection.",
                fix="find what closes the test database's connections (a pg_terminate_backend / KILL, "
                "a server restart, an idle timeout); the next test that asks for the layers seeds them again.",
            )

    def _replace_dead_root(self) -> None:
        """After a disconnect (a fault, or the server went away) start over on a fresh connection: the
        work of this test so far went with the old one, as it would on a real server."""
        root, self._root = self._root, None
        assert root is not None
        self.units.clear(keep_lock=True)  # the caller holds it while it opens the new one
        self._driver_began = False
        self._keeper.layers.lose()
        for conn in list(self._joined):
            if conn._dbapi_connection is not None:
                conn._detach()
        discard(root)
        self._root_dead = False

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
