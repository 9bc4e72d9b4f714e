"""MariaDB and MySQL: the mark is a marker table; a template is copied table by table (no CREATE DATABASE
... TEMPLATE), so one with views, triggers or routines cannot be; DDL commits implicitly."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import re
import shlex
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import URL, Connection, Dialect
from sqlalchemy.exc import DBAPIError

from ..drivers import Driver
from ..marks import DROPPING, MARKER_TABLE, Mark
from ..owner import OwnerLoop, proxied_creator
from ..sqltext import LEADING_COMMENTS, is_transaction_control
from .base import (
    DriverConnect,
    ServerProvisioner,
    Target,
    TemplateGone,
    error_code,
    marked_pairs,
    run_admin,
    transport_fd,
)

# MariaDB/MySQL commit the open transaction implicitly before these.
_IMPLICIT_COMMIT = re.compile(
    LEADING_COMMENTS
    + r"((?:CREATE|DROP)(?!\s+TEMPORARY)|ALTER|RENAME|TRUNCATE|LOCK\s+TABLES?|UNLOCK"
    + r"|SET\s+(?:SESSION\s+)?autocommit)\b",
    re.I | re.S,
)

# SET of a session variable, user variable, NAMES, or the session's transaction characteristics: none of them
# is undone by a rollback
# (MariaDB's `SET STATEMENT ... FOR` lasts one statement; `SET TRANSACTION` without SESSION sets the next
# transaction, which may be the next test's)
_SESSION_SET = re.compile(LEADING_COMMENTS + r"SET\b(?!\s+STATEMENT\b)", re.I | re.S)


class MySQLProvisioner(ServerProvisioner):
    family = "mysql"
    backslash_escapes = True
    dialect_names = ("mysql", "mariadb")
    sync_drivers = (Driver("pymysql", "pymysql", "pymysql"), Driver("mysqldb", "MySQLdb", "mysqlclient"))
    async_drivers = (Driver("asyncmy", "asyncmy", "asyncmy"), Driver("aiomysql", "aiomysql", "aiomysql"))

    @classmethod
    def driver_connects(cls) -> tuple[DriverConnect, ...]:
        # The connection's own connect method: every way in (connect(), the class, a pool, a reconnect on
        # ping) passes it, after the constructor has read the options file, so the database it names is final.
        return (
            DriverConnect("pymysql.connections", "Connection.connect", _connection_target("pymysql", "")),
            DriverConnect("asyncmy.connection", "Connection.connect", _connection_target("asyncmy", "_")),
            DriverConnect("aiomysql.connection", "Connection._connect", _connection_target("aiomysql", "_")),
        )

    def _admin_url(self) -> URL:
        return self.server_url._replace(database=None)

    def _mark_of(self, conn: Connection, name: str) -> str | bool | None:
        exists = conn.execute(
            text("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = :n"), {"n": name}
        ).first()
        if exists is None:
            return False
        marked = conn.execute(
            text("SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = :n AND TABLE_NAME = :t"),
            {"n": name, "t": MARKER_TABLE},
        ).first()
        if marked is None:
            return None
        try:
            return str(conn.exec_driver_sql(f"SELECT note FROM `{name}`.`{MARKER_TABLE}`").scalar() or "")
        except DBAPIError:
            return ""  # ours (its marker table was there), its mark unreadable: a concurrent run dropping it

    def _marked(self, conn: Connection, like: str) -> list[tuple[str, Mark]]:
        names = conn.execute(
            text("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE :p"),
            {"p": like},
        ).scalars()
        rows = [(str(name), self._mark_of(conn, name)) for name in sorted(names)]
        return marked_pairs([(name, note) for name, note in rows if isinstance(note, str)])

    def _create_marked(self, conn: Connection, name: str, mark: Mark, template: str | None = None) -> None:
        if template is not None and not isinstance(self._mark_of(conn, template), str):
            raise TemplateGone(template)
        conn.exec_driver_sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        conn.exec_driver_sql(f"CREATE TABLE `{name}`.`{MARKER_TABLE}` (note VARCHAR(255))")
        conn.execute(text(f"INSERT INTO `{name}`.`{MARKER_TABLE}` (note) VALUES (:m)"), {"m": str(mark)})
        if template is not None:
            self._copy_from_template(conn, template, name)

    def _set_mark(self, conn: Connection, name: str, mark: Mark, was: Mark | None = None) -> None:
        # with `was`, only if unchanged: a touch must never turn a template another run began dropping
        # (marked DROPPING, see _drop_surplus) back into a ready one
        where, params = (
            ("", {"m": str(mark)}) if was is None else (" WHERE note = :w", {"m": str(mark), "w": str(was)})
        )
        conn.execute(text(f"UPDATE `{name}`.`{MARKER_TABLE}` SET note = :m{where}"), params)

    def drop_command(self, name: str) -> str:
        url = self.server_url
        args = ["mysql"]
        args += ["-h", url.host] if url.host else []
        args += ["-P", str(url.port)] if url.port else []
        args += ["-u", url.username] if url.username else []
        return shlex.join([*args, "-e", f"DROP DATABASE `{name}`"])

    def _drop_database(self, conn: Connection, name: str, *, force: bool = True) -> None:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")

    def _sessions_in(self, conn: Connection, name: str, session_ids: Sequence[int]) -> list[int]:
        ours = set(session_ids)
        rows = conn.execute(text("SELECT ID FROM information_schema.PROCESSLIST WHERE DB = :n"), {"n": name})
        return [int(session_id) for session_id in rows.scalars() if int(session_id) in ours]

    def drop_if_unused(self, name: str, mark: Mark) -> str:
        def work(conn: Connection) -> str:
            now = self._mark_of(conn, name)
            if now is False:
                return ""
            if now is None:
                return "it no longer carries our mark"
            if Mark.parse(str(now)) != mark:
                return "its mark changed since it was judged"
            if not self._sees_all_connections(conn):
                return "this user cannot see other users' connections (it lacks the PROCESS privilege)"
            users = conn.execute(
                text(
                    "SELECT COUNT(*) FROM information_schema.PROCESSLIST "
                    "WHERE DB = :n AND ID <> CONNECTION_ID()"
                ),
                {"n": name},
            ).scalar()
            if users:
                return f"{users} connection(s) to it are open"
            # a connection that uses it from another database holds its tables' locks: wait 5 s, not a year
            conn.exec_driver_sql("SET SESSION lock_wait_timeout = 5")
            if mark.is_kept_template:  # in two steps, as _drop_surplus: a run copying it now learns so
                self._set_mark(conn, name, dataclasses.replace(mark, state=DROPPING), was=mark)
            try:
                self._drop_database(conn, name)
            except DBAPIError as exc:
                if error_code(exc) == "1205":  # lock wait timeout
                    return "a connection holds locks in it"
                raise
            return ""

        return run_admin(self._admin_url(), work)

    @staticmethod
    def _sees_all_connections(conn: Connection) -> bool:
        """PROCESSLIST shows other users' connections only to a user with the PROCESS privilege."""
        grants = " ".join(str(row[0]) for row in conn.exec_driver_sql("SHOW GRANTS"))
        return "ALL PRIVILEGES ON *.*" in grants or bool(re.search(r"\bPROCESS\b", grants))

    def _copy_from_template(self, conn: Connection, template: str, name: str) -> None:
        """No lock keeps another run (on another machine) from dropping a surplus template while this one
        copies it, so the drop goes in two steps (see _drop_surplus): its mark stops saying ready, then the
        database goes. A copy after which the template still says ready was made before the drop began,
        so it is whole; any other copy is dropped, and the caller looks for a template again."""
        try:
            self._copy_tables(conn, template, name)
            whole = self._is_ready(conn, template)
        except Exception:  # a driver error, wrapped or not (see run_admin)
            if self._is_ready(conn, template):
                self._drop_database(conn, name)  # a failed copy is no database
                raise
            whole = False
        if not whole:
            self._drop_database(conn, name)
            raise TemplateGone(template)

    def _is_ready(self, conn: Connection, template: str) -> bool:
        note = self._mark_of(conn, template)
        mark = Mark.parse(note) if isinstance(note, str) else None
        return mark is not None and mark.is_ready

    @staticmethod
    def _tables(conn: Connection, schema: str, kind: str = "BASE TABLE") -> list[str]:
        rows = conn.execute(
            text(
                "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = :s "
                "AND TABLE_TYPE = :k AND TABLE_NAME != :m ORDER BY TABLE_NAME"
            ),
            {"s": schema, "k": kind, "m": MARKER_TABLE},
        ).scalars()
        return [str(name) for name in rows]

    def _copy_tables(self, conn: Connection, source: str, target: str) -> None:
        """Recreate each table from its own DDL (SHOW CREATE TABLE keeps foreign keys, which CREATE TABLE
        ... LIKE drops) and copy its rows."""
        conn.exec_driver_sql(f"USE `{target}`")
        conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS=0")
        try:
            for table in self._tables(conn, source):
                ddl = conn.exec_driver_sql(f"SHOW CREATE TABLE `{source}`.`{table}`").one()[1]
                conn.exec_driver_sql(ddl)
                # generated columns compute themselves: copy only the stored ones
                columns = ", ".join(
                    f"`{name}`"
                    for name in conn.execute(
                        text(
                            "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = :s "
                            "AND TABLE_NAME = :t AND EXTRA NOT LIKE '%GENERATED%' ORDER BY ORDINAL_POSITION"
                        ),
                        {"s": source, "t": table},
                    ).scalars()
                )
                conn.exec_driver_sql(
                    f"INSERT INTO `{target}`.`{table}` ({columns}) SELECT {columns} FROM `{source}`.`{table}`"
                )
        finally:
            conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS=1")

    def can_copy(self, template: URL) -> bool:
        """Tables and rows are copied; views, triggers and routines are not, so such schemas are built
        for every run instead."""
        name = str(template.database)

        def work(conn: Connection) -> bool:
            others = conn.execute(
                text(
                    "SELECT (SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = :s "
                    "AND TABLE_TYPE != 'BASE TABLE') + (SELECT COUNT(*) FROM information_schema.TRIGGERS "
                    "WHERE TRIGGER_SCHEMA = :s) + (SELECT COUNT(*) FROM information_schema.ROUTINES "
                    "WHERE ROUTINE_SCHEMA = :s)"
                ),
                {"s": name},
            ).scalar()
            return not others

        return run_admin(self._admin_url(), work)

    def mark_uncopyable(self, template: URL, key: str, run_id: str) -> None:
        name = str(template.database)
        mark = Mark.now(key=key, base=self._base(), state="uncopyable", run=run_id)

        def work(conn: Connection) -> None:
            self._drop_database(conn, name)  # views, triggers, routines and all
            self._create_marked(conn, name, mark)
            self._drop_surplus(conn, name, key)

        run_admin(self._admin_url(), work)

    def seal_template(self, template: URL, key: str, run_id: str) -> URL:
        name = str(template.database)
        mark = Mark.now(key=key, base=self._base(), state="ready", run=run_id)

        def work(conn: Connection) -> None:
            self._set_mark(conn, name, mark)
            self._drop_surplus(conn, name, key)

        run_admin(self._admin_url(), work)
        return template

    def _drop_surplus(self, conn: Connection, keep: str, key: str) -> None:
        for other in self._surplus(conn, keep, key):
            # first unready, so a run copying it now learns its copy may be partial (_copy_from_template)
            with contextlib.suppress(DBAPIError):
                self._set_mark(conn, other, Mark.now(key=key, base=self._base(), state=DROPPING))
            self._drop_database(conn, other)

    # ---- quirks ---------------------------------------------------------------------------------------
    @classmethod
    def loop_free(cls, async_driver: str) -> bool:
        return async_driver in ("asyncmy", "aiomysql")

    @classmethod
    def async_creator(cls, url: URL, owner: OwnerLoop) -> Callable[[], Awaitable[Any]] | None:
        driver = url.get_driver_name()
        if driver not in ("asyncmy", "aiomysql"):
            return None
        module = importlib.import_module(driver)
        _, params = url.get_dialect(_is_async=True)().create_connect_args(url)

        async def connect(**params: Any) -> Any:  # aiomysql's connect() is an awaitable, not a coroutine
            return await module.connect(**params)

        connect.__module__ = driver  # LoopProxy wraps the objects of the driver's own package
        # close() (not awaited) closes the transport, which only its loop's thread may touch
        return proxied_creator(owner, connect, params, frozenset({"close"}))

    @classmethod
    def _ends(cls, statement: str) -> bool:
        return is_transaction_control(statement) or _IMPLICIT_COMMIT.match(statement) is not None

    @classmethod
    def empty_tables(cls, conn: Connection, names: list[str]) -> None:
        quote = conn.dialect.identifier_preparer.quote
        conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS=0")
        for name in names:
            conn.exec_driver_sql(f"TRUNCATE TABLE {quote(name)}")
        conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS=1")

    @classmethod
    def timeout_statement(cls, cursor: Any) -> str | None:
        return "SET STATEMENT max_statement_time=0.001 FOR SELECT SLEEP(5)"

    @classmethod
    def session_id_query(cls) -> str | None:
        return "SELECT CONNECTION_ID()"

    @classmethod
    def kill_statement(cls, session_id: int) -> str:
        return f"KILL {int(session_id)}"

    @classmethod
    def driver_error(
        cls, dialect: Dialect, class_name: str, message: str, sqlstate: str, errno: int
    ) -> BaseException:
        base: Callable[..., BaseException] = getattr(dialect.loaded_dbapi, class_name)
        return base(errno, message)

    @classmethod
    def socket_of(cls, driver_connection: Any) -> int | None:
        if hasattr(driver_connection, "_transport"):  # asyncmy
            return transport_fd(driver_connection._transport)
        if hasattr(driver_connection, "_writer"):  # aiomysql: asyncio streams
            writer = driver_connection._writer
            return transport_fd(writer.transport if writer is not None else None)
        sock = getattr(driver_connection, "_sock", None)  # pymysql; mysqlclient has none we can reach
        if sock is None:
            return -1 if hasattr(driver_connection, "_sock") else None
        return int(sock.fileno())

    @classmethod
    def in_transaction(cls, driver_connection: Any) -> bool | None:
        # SERVER_STATUS_IN_TRANS of the last reply: set once the transaction has touched a transactional table
        status = getattr(driver_connection, "server_status", None)
        return None if status is None else bool(status & 1)

    @classmethod
    def changes_session(cls, statement: str) -> bool:
        return _SESSION_SET.match(statement) is not None


def _connection_target(driver: str, prefix: str) -> Callable[[tuple[Any, ...], dict[str, Any]], Target]:
    """Read the target from the connection object (args[0]) a driver's connect method runs on: pymysql keeps
    it in `db`, `host`..., asyncmy and aiomysql in `_db`, `_host`... (str, or bytes once authenticated)."""

    def target(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Target:
        def get(name: str) -> str:
            value = getattr(args[0], prefix + name, None)
            return value.decode() if isinstance(value, bytes) else str(value or "")

        database = get("db")  # none: the server itself, where CREATE DATABASE works
        where = get("unix_socket") or f"{get('host') or 'localhost'}:{get('port') or 3306}"
        hidden = ":***" if get("password") else ""
        return database, f"mysql+{driver}://{get('user')}{hidden}@{where}/{database}"

    return target
