"""Fault injection on the real database: make chosen statements or commits fail as they would in production.

`sandbox.faults.fail("INSERT", table="orders", error="unique_violation")` makes the first matching statement
raise the driver's own exception class, which SQLAlchemy then wraps exactly as it wraps a real failure
(`IntegrityError` with the statement and parameters). Where the database can do it for real, it does:
`error="disconnect"` terminates the sandbox's server session (PostgreSQL, MariaDB) and `error="timeout"`
runs the statement under a 1 ms statement timeout. After any fault the sandbox recovers, and the next test
starts clean.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Connection

from . import dialects
from .errors import ConfigError
from .sqltext import tables_named

if TYPE_CHECKING:
    from .sandbox import Sandbox

ErrorKind = Literal[
    "operational", "disconnect", "deadlock", "serialization", "unique_violation", "integrity", "timeout"
]

# kind -> (DBAPI class name, message, PostgreSQL SQLSTATE, MySQL errno)
_KINDS: dict[str, tuple[str, str, str, int]] = {
    "operational": ("OperationalError", "the operation failed on the server", "58000", 1205),
    "disconnect": ("OperationalError", "server closed the connection unexpectedly", "57P01", 2013),
    "deadlock": ("OperationalError", "deadlock detected", "40P01", 1213),
    "serialization": (
        "OperationalError",
        "could not serialize access due to concurrent update",
        "40001",
        1213,
    ),
    "unique_violation": (
        "IntegrityError",
        "duplicate key value violates unique constraint",
        "23505",
        1062,
    ),
    "integrity": ("IntegrityError", "integrity constraint violation", "23000", 1452),
    "timeout": (
        "OperationalError",
        "canceling statement due to statement timeout",
        "57014",
        1969,
    ),
}
_VERBS = ("SELECT", "INSERT", "UPDATE", "DELETE")


class SimulatedDriverError(Exception):
    """The `orig` of errors built by dbapi_error() when no driver exception is given."""


def dbapi_error(
    cls: type[sa_exc.DBAPIError],
    message: str,
    *,
    statement: str | None = None,
    params: Any = None,
    orig: BaseException | None = None,
    connection_invalidated: bool = False,
) -> sa_exc.DBAPIError:
    """Build a SQLAlchemy DBAPIError subclass correctly, for tests that must raise one by hand.

    SQLAlchemy's signature is (statement, params, orig): `OperationalError("Commit failed", {}, None)` makes
    "Commit failed" the *statement* and leaves no driver error behind it. This builds one that renders,
    pickles and carries `orig` like a real one.
    """
    if not (isinstance(cls, type) and issubclass(cls, sa_exc.DBAPIError)):
        raise TypeError(f"dbapi_error() takes a sqlalchemy.exc.DBAPIError subclass, not {cls!r}")
    driver_error = orig if orig is not None else SimulatedDriverError(message)
    return cls(statement, params, driver_error, connection_invalidated=connection_invalidated)


@dataclass
class Fault:
    """One armed fault; `fired` counts how often it struck."""

    on: Literal["statement", "commit"]
    error: str
    verb: str | None = None
    table: str | None = None
    pattern: re.Pattern[str] | None = None
    nth: int = 1
    times: int | None = 1  # None: every match from the nth on
    seen: int = 0
    fired: int = 0
    log: list[str] = field(default_factory=list)

    @property
    def spent(self) -> bool:
        return self.times is not None and self.fired >= self.times

    def matches(self, statement: str) -> bool:
        text = statement.lstrip()
        if self.verb == "WRITE":
            if text[:6].upper() not in ("INSERT", "UPDATE", "DELETE"):
                return False
        elif self.verb is not None and text[: len(self.verb)].upper() != self.verb:
            return False
        if self.table is not None and self.table.lower() not in tables_named(statement):
            return False
        return self.pattern is None or self.pattern.search(statement) is not None

    def strike(self) -> bool:
        """Count a match; True if this one must fail."""
        self.seen += 1
        if self.spent or self.seen < self.nth:
            return False
        self.fired += 1
        return True


class Faults:
    """`sandbox.faults`: arm failures for the rest of the test (or until clear())."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sandbox = sandbox
        self.armed: list[Fault] = []

    def fail(
        self,
        what: str | None = None,
        *,
        table: str | None = None,
        match: str | None = None,
        nth: int = 1,
        times: int | None = 1,
        error: ErrorKind = "operational",
    ) -> Fault:
        """Make the nth statement matching `what` (an SQL verb: SELECT/INSERT/UPDATE/DELETE, or None for
        any), `table` and the regex `match` fail with `error`; `times=None` fails every match from then on."""
        verb = what.upper() if what else None
        if verb is not None and verb not in _VERBS:
            raise ConfigError(
                f"faults.fail() got {what!r} as the statement kind.",
                fix=f"use one of {', '.join(_VERBS)}, or match=<regex> for anything else.",
            )
        return self._arm(
            Fault(
                "statement",
                _check_kind(error),
                verb=verb,
                table=table,
                pattern=re.compile(match, re.I | re.S) if match else None,
                nth=nth,
                times=times,
            )
        )

    def fail_next(self, event: Literal["commit", "flush"], *, error: ErrorKind = "operational") -> Fault:
        """Make the next commit (of any session or connection in the sandbox), or the next write a flush
        sends, fail with `error`."""
        if event == "commit":
            return self._arm(Fault("commit", _check_kind(error)))
        if event == "flush":
            return self._arm(Fault("statement", _check_kind(error), verb="WRITE"))
        raise ConfigError(f"faults.fail_next() got {event!r}.", fix="use 'commit' or 'flush'.")

    def clear(self) -> None:
        self.armed.clear()
        self._sandbox._faults_armed = False

    def _arm(self, fault: Fault) -> Fault:
        self.armed.append(fault)
        self._sandbox._faults_armed = True
        return fault

    # --- called by the sandbox ------------------------------------------------------------------
    def before_statement(
        self, conn: Connection, cursor: Any, statement: str, parameters: Any, context: Any
    ) -> tuple[str, Any]:
        for fault in self.armed:
            if fault.on == "statement" and fault.matches(statement) and fault.strike():
                fault.log.append(statement)
                return self._raise_or_rewrite(conn, cursor, fault, statement, parameters, context)
        return statement, parameters

    def before_commit(self, conn: Connection) -> None:
        for fault in self.armed:
            if fault.on == "commit" and fault.strike():
                fault.log.append("COMMIT")
                error = _driver_error(conn, fault.error)
                if fault.error == "disconnect" and self._terminate_for_real(conn, None):
                    return  # the RELEASE that follows meets the dead connection for real
                conn._handle_dbapi_exception(error, None, None, None, None)  # wraps and raises

    def _raise_or_rewrite(
        self, conn: Connection, cursor: Any, fault: Fault, statement: str, parameters: Any, context: Any
    ) -> tuple[str, Any]:
        quirks = self._sandbox.db.provisioner
        if fault.error == "timeout":
            timeout = quirks.timeout_statement(cursor)
            if timeout is not None:  # the server's own statement timeout, for real
                return timeout, _empty_like(parameters)
        if fault.error == "disconnect" and self._terminate_for_real(conn, cursor):
            return statement, parameters  # the driver now meets a dead connection, for real
        # SQLAlchemy's own handling: wraps the driver error (IntegrityError, OperationalError...) with the
        # statement and parameters, runs handle_error listeners, and raises; on 2.0 and 2.1 alike.
        # An insertmanyvalues batch is a sub-execution: its parameters are one batch, not a list of sets.
        style = getattr(getattr(context, "execute_style", None), "name", "")
        conn._handle_dbapi_exception(
            _driver_error(conn, fault.error),
            statement,
            parameters,
            cursor,
            context,
            is_sub_exec=style == "INSERTMANYVALUES",
        )
        raise AssertionError("unreachable")  # pragma: no cover

    def _terminate_for_real(self, conn: Connection, cursor: Any) -> bool:
        db = self._sandbox.db
        query = db.provisioner.session_id_query()
        if query is None or not db.has_sync_driver():
            return False
        raw = cursor if cursor is not None else conn.connection.cursor()
        raw.execute(query)
        row: Any = raw.fetchone()
        kill = db.provisioner.kill_statement(int(row[0]))
        db.run(lambda admin: admin.exec_driver_sql(kill))
        return True


def _check_kind(error: str) -> str:
    if error not in _KINDS:
        raise ConfigError(f"Unknown fault error {error!r}.", fix=f"use one of: {', '.join(sorted(_KINDS))}.")
    return error


def _empty_like(parameters: Any) -> Any:
    return {} if isinstance(parameters, dict) else ()


def _driver_error(conn: Connection, kind: str) -> BaseException:
    """An instance of the connection's own driver exception class for `kind`."""
    class_name, message, sqlstate, errno = _KINDS[kind]
    quirks = dialects.quirks(conn.dialect.name)
    return quirks.driver_error(conn.dialect, class_name, f"{message} (injected by sqlsandbox)", sqlstate, errno)
