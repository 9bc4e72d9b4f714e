"""JoinedConnection: what engine.connect() returns during a test.

It is a real SQLAlchemy Connection (so Session, AsyncConnection and Core accept it as is) that shares the
sandbox's one DBAPI connection and whose transaction is a SAVEPOINT: begin() opens one, commit() releases it,
rollback() and close() roll back to it. Whatever the app does, the sandbox's outer transaction is never
committed, and everything is gone when the test's sandbox rolls back.
"""

from __future__ import annotations

import contextlib
import select
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection, Engine, RootTransaction
from sqlalchemy.exc import ResourceClosedError
from sqlalchemy.pool import PoolProxiedConnection

from .actors import current_actor
from .callsite import call_site
from .loops import in_greenlet
from .units import Unit

if TYPE_CHECKING:
    from .sandbox import Sandbox

_NOT_YET = object()  # Connection.__init__ would check out a pool connection if given None


class JoinedConnection(Connection):
    """A Connection on the sandbox's DBAPI connection whose transactions are savepoints."""

    def __init__(self, sandbox: Sandbox, engine: Engine) -> None:
        super().__init__(engine, connection=_NOT_YET)  # type: ignore[arg-type]
        self.home = engine  # the test engine it was made on (self.engine may be the app's: Sandbox._connect)
        self._dbapi_connection = None  # attached on first use, in the caller's loop
        self._sandbox = sandbox
        self._unit: Unit | None = None
        self._internal = False  # sqlsandbox's own reads: not recorded in sandbox.queries

    # -- attach lazily: an async driver connection must be made inside the test's own loop ----------
    def _revalidate_connection(self) -> PoolProxiedConnection:
        if self.closed:
            raise ResourceClosedError("This Connection is closed")
        fairy = self._sandbox._attach(self)
        self._dbapi_connection = fairy
        return fairy

    # -- a transaction is a savepoint ----------------------------------------------------------------
    def _begin_impl(self, transaction: RootTransaction) -> None:
        name = self._sandbox._next_savepoint_name()
        unit = Unit(self, name, call_site(3), current_actor())
        self._unit = unit
        # The SAVEPOINT statement runs while the RootTransaction is still being made: without this
        # flag, executing it would autobegin another transaction, and so on forever.
        self._allow_autobegin = False
        try:
            self._sandbox.units.open(unit, lambda: Connection._savepoint_impl(self, name))
        except BaseException:
            self._unit = None
            raise
        finally:
            self._allow_autobegin = True

    def _savepoint_impl(self, name: str | None = None) -> str:
        # Savepoint names must be unique across every connection sharing the DBAPI connection:
        # MariaDB silently replaces a savepoint of the same name.
        return super()._savepoint_impl(name or self._sandbox._next_savepoint_name())

    def _commit_impl(self) -> None:
        if self._unit is None:
            return
        if self._sandbox._faults_armed:
            try:
                self._sandbox.faults.before_commit(self)
            except BaseException:
                # A failed COMMIT ends the transaction on the server, its work discarded: the same here.
                self._rollback_impl()
                raise
        unit, self._unit = self._unit, None
        self._sandbox.units.release(unit, lambda: Connection._release_savepoint_impl(self, unit.savepoint))

    def _rollback_impl(self) -> None:
        unit, self._unit = self._unit, None
        if unit is None:
            return

        def do_rollback() -> None:
            if self._still_open_and_dbapi_connection_is_valid:
                Connection._rollback_to_savepoint_impl(self, unit.savepoint)

        self._sandbox.units.rollback(unit, do_rollback)

    def close(self) -> None:
        try:
            if self._transaction:
                self._transaction.close()
        finally:
            self._detach()

    def _detach(self) -> None:
        """Let go of the shared DBAPI connection without returning it to any pool."""
        self._dbapi_connection = None
        self._Connection__can_reconnect = False
        self._transaction = self._nested_transaction = None

    def invalidate(self, exception: BaseException | None = None) -> None:
        # A disconnect kills the shared connection: the sandbox notices and opens a fresh one.
        self._sandbox._root_invalidated(exception)
        super().invalidate(exception)

    def __repr__(self) -> str:
        return f"<JoinedConnection {self._unit.describe() if self._unit else 'idle'}>"


def discard(root: Connection, *, dead: bool = False) -> None:
    """Drop a connection that cannot be closed normally (its loop is gone, or the server ended its session:
    `dead`, so nothing is sent on it); the server rolls back."""
    fairy = root._dbapi_connection
    terminated = False
    try:
        raw = getattr(fairy, "dbapi_connection", None)
        if dead and fairy is not None and not hasattr(raw, "terminate"):
            if fairy.is_valid:  # SQLAlchemy invalidates a connection a KeyboardInterrupt cut short itself
                fairy.invalidate()  # closes the driver connection without the pool's reset (a ROLLBACK)
        elif raw is not None and hasattr(raw, "terminate"):
            terminated = True
            raw.terminate()
        elif in_greenlet() or not root.dialect.is_async:
            root.close()
    except Exception:
        pass
    finally:
        root._dbapi_connection = None
        if terminated and fairy is not None:
            # checked back in as invalid, so that the garbage collector does not find (and warn of) it
            with contextlib.suppress(Exception):
                fairy.invalidate()


def idle_root_alive(root: Connection, socket_of: Callable[[Any], int | None]) -> bool:
    """Whether a connection kept idle between tests is still usable: a connection killed from outside
    (pg_terminate_backend, KILL, a server restart) would fail the next test at its first SAVEPOINT.

    An idle connection's socket has nothing to read, so checking it costs no round trip; only when
    something did arrive (the server's goodbye, or a stray notice) is the server asked, once."""
    fairy = root._dbapi_connection
    if root.invalidated or fairy is None or fairy.dbapi_connection is None:
        return False
    try:
        fd = socket_of(fairy.driver_connection)
    except Exception:  # the driver's insides are not what we know: ask the server
        fd = -2
    if fd is None:
        return True  # nothing to lose between tests (SQLite)
    if fd == -1:
        return False
    if fd >= 0 and not _has_input(fd):
        return True
    try:
        return bool(root.dialect.do_ping(fairy.dbapi_connection))
    except Exception:
        return False


def _has_input(fd: int) -> bool:
    """Whether the socket has something to read (or was closed), without waiting."""
    try:
        if hasattr(select, "poll"):  # select() cannot take descriptors above 1023
            poller = select.poll()
            poller.register(fd, select.POLLIN | select.POLLPRI)
            return bool(poller.poll(0))
        return bool(select.select([fd], [], [], 0)[0])
    except (OSError, ValueError):
        return True  # let the server decide
