"""The engine events through which every statement of a test passes, installed once per run on the test
database's engines.

A statement on a sandbox connection (a JoinedConnection) flows:
  before_cursor_execute -> refused if it is work a finished test left running (Sandbox._check_work_is_ours);
                           refused if it, or a statement of a multi-statement string, would end the outer
                           transaction (COMMIT issued as SQL, MariaDB DDL...);
                           failed if the driver says the outer transaction ended since the last statement
                           (a driver-level commit: Sandbox._check_outer_open);
                           noted if it changes session state a rollback does not undo (SET, PRAGMA);
                           refused from a thread or loop the connection does not belong to;
                           waits its turn in the unit-of-work stack (units.py);
                           then armed faults may fail it or rewrite it (faults.py)
  the driver runs it
  after_cursor_execute  -> the turn is released; the statement is recorded (sandbox.queries), and the
                           driver's transaction status read until it reports the outer one open
  handle_error          -> the turn is released; its unit is marked as needing a rollback
A COMMIT or ROLLBACK of the sandbox's own outer transaction (`commit` / `rollback` events) is reported.
In committed mode statements are only counted and the tables they write remembered.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from . import sandbox as sandbox_mod
from .callsite import call_site
from .connection import JoinedConnection
from .errors import SandboxEscapeError
from .loops import loop_mismatch
from .sqltext import is_plain_read, is_transaction_control, is_unit_sql, is_write, verb

if TYPE_CHECKING:
    from .sandbox import Sandbox


def install(engine: Engine) -> None:
    event.listen(engine, "before_cursor_execute", _before_cursor_execute, retval=True)
    event.listen(engine, "after_cursor_execute", _after_cursor_execute)
    event.listen(engine, "handle_error", _handle_error)
    event.listen(engine, "commit", _on_commit)
    event.listen(engine, "rollback", _on_rollback)


def _before_cursor_execute(
    conn: Connection, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
) -> tuple[str, Any]:
    box = sandbox_mod.active()
    if box is None:
        return statement, parameters
    if box.committed_mode is not None:
        box.statements += 1
        box.committed_mode.saw(statement, context)
        if context is not None:
            context._sqlsandbox_started = time.perf_counter()
        return statement, parameters
    if not isinstance(conn, JoinedConnection):
        return statement, parameters  # the root's own BEGIN, or a connection of sqlsandbox's outside
    _guard(box, conn, statement, context)
    if box._faults_armed:
        return box.faults.before_statement(conn, cursor, statement, parameters, context)
    return statement, parameters


def _guard(box: Sandbox, conn: JoinedConnection, statement: str, context: Any) -> None:
    box._check_work_is_ours(lambda: call_site(5))
    ender = box.db.provisioner.ends_transaction(statement)
    if ender is not None:
        raise _refused(box, statement, ender)
    if box._driver_began:
        box._check_outer_open(lambda: call_site(5))
    if not box.session_changed and box.db.provisioner.changes_session(statement):
        box.session_changed = True
    if box._loop is not None and not box._loop_free:  # else it serves every thread and loop
        mismatch = loop_mismatch(box._loop, lambda: call_site(5))
        if mismatch is not None:
            raise mismatch
    box.statements += 1
    # a unit's own SAVEPOINT / RELEASE / ROLLBACK TO leave it a plain reader (begin_nested()'s are seen by
    # the unit stack itself)
    plain_read = is_plain_read(context) or is_unit_sql(statement)
    locked = box.units.before_statement(
        conn._unit, lambda: call_site(4), is_write(statement, context), plain_read
    )
    if context is not None:
        context._sqlsandbox_locked = locked
        context._sqlsandbox_started = time.perf_counter()


def _refused(box: Sandbox, statement: str, ender: str) -> SandboxEscapeError:
    """The error for a statement that would end the outer transaction, said for what it is."""
    among = f" (one of the statements in `{_short(statement)}`)" if ender.strip() != statement.strip() else ""
    if is_transaction_control(ender):
        message = f"{verb(ender)} issued as SQL{among} at {call_site(4)} would end the sandbox's transaction."
        why = (
            "the test's work lives in one outer transaction that is rolled back at the end; a raw "
            f"{verb(ender)} would end it, and a COMMIT write the test's work to the test database for good."
        )
        fix = (
            "use session.commit() / connection.commit() (or rollback()): inside the sandbox they release "
            "(or roll back to) a savepoint, exactly as a commit looks to the code under test."
        )
    else:
        message = (
            f"{verb(ender)} issued as SQL{among} at {call_site(4)} would commit the sandbox's transaction: "
            "MariaDB and MySQL commit implicitly before it."
        )
        why = (
            "MariaDB and MySQL commit the open transaction before DDL (CREATE, ALTER, DROP, RENAME, "
            "TRUNCATE) and LOCK TABLES; no savepoint can hold it, so the test's work would be written "
            "for good."
        )
        fix = (
            "build the schema in sqlsandbox_metadata or your migrations (sqlsandbox_alembic), not in the "
            "test; empty a table with DELETE instead of TRUNCATE; use a TEMPORARY table for scratch data "
            "(CREATE TEMPORARY TABLE does not commit); or mark the test "
            "@pytest.mark.sqlsandbox(committed=True) to run its DDL for real."
        )
    box._problem(message)
    return SandboxEscapeError(message, why=why, fix=fix)


def _short(statement: str) -> str:
    flat = " ".join(statement.split())
    return flat if len(flat) <= 60 else flat[:57] + "..."


def _after_cursor_execute(
    conn: Connection, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
) -> None:
    box = sandbox_mod.active()
    if box is None or context is None:
        return
    if isinstance(conn, JoinedConnection) and box.committed_mode is None:
        box._saw_statement(statement)
    if getattr(context, "_sqlsandbox_locked", False):
        context._sqlsandbox_locked = False
        box.units.after_statement()
    started = getattr(context, "_sqlsandbox_started", None)
    if started is not None and not getattr(conn, "_internal", False):
        box.queries.record(statement, parameters, started, many)


def _handle_error(context: Any) -> None:
    box = sandbox_mod.active()
    if box is None:
        return
    conn, execution = context.connection, context.execution_context
    if isinstance(conn, JoinedConnection):
        box._last_failed = True
    unit = conn._unit if isinstance(conn, JoinedConnection) else None
    if unit is not None:
        unit.wrote = True  # a failed statement may leave the transaction aborted: only a rollback heals it
    if execution is not None and getattr(execution, "_sqlsandbox_locked", False):
        execution._sqlsandbox_locked = False
        box.units.after_statement()


def _on_commit(conn: Connection) -> None:
    _outer_ended(conn, "committed")


def _on_rollback(conn: Connection) -> None:
    _outer_ended(conn, "rolled back")


def _outer_ended(conn: Connection, how: str) -> None:
    box = sandbox_mod.active()
    if box is None or conn is not box._root or box._closing:
        return
    message = f"The sandbox's outer transaction was {how} at {call_site(3)}."
    box._problem(message)
    if how == "committed":
        raise SandboxEscapeError(
            message,
            why="committing it would write the test's data to the test database for good.",
            fix="commit through sessions or connections from the sandbox fixtures or bound "
            "factories: their commit releases a savepoint.",
        )
