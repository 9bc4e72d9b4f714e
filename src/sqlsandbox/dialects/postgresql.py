"""PostgreSQL: the mark is the database's comment; templates are cloned by CREATE DATABASE ... TEMPLATE."""

from __future__ import annotations

import contextlib
import getpass
import os
import shlex
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from sqlalchemy import text
from sqlalchemy.engine import URL, Connection, Dialect
from sqlalchemy.exc import DBAPIError

from ..drivers import Driver
from ..marks import MARK, Mark
from ..owner import OwnerLoop, proxied_creator
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


class PostgresProvisioner(ServerProvisioner):
    family = "postgresql"
    dialect_names = ("postgresql",)
    sync_drivers = (
        Driver("psycopg", "psycopg", "psycopg[binary]"),
        Driver("psycopg2", "psycopg2", "psycopg2-binary"),
    )
    async_drivers = (
        Driver("asyncpg", "asyncpg", "asyncpg"),
        Driver("psycopg_async", "psycopg", "psycopg[binary]"),
    )
    driver_partners = (("psycopg", "psycopg_async"), ("psycopg_async", "psycopg"))

    @classmethod
    def driver_connects(cls) -> tuple[DriverConnect, ...]:
        return (
            # psycopg: every Connection.connect() (psycopg.connect is it, bound at import) asks the class for
            # its parameters first, so a reference to connect taken before the run is covered too
            DriverConnect("psycopg.connection", "Connection._get_connection_params", _psycopg_target),
            DriverConnect(
                "psycopg.connection_async", "AsyncConnection._get_connection_params", _psycopg_target
            ),
            # psycopg2.connect() calls the module's _connect (from the C extension) by name
            DriverConnect("psycopg2", "_connect", _psycopg2_target),
            # asyncpg.connect() and its pools' connections all go through connect_utils._connect
            DriverConnect("asyncpg.connect_utils", "_connect", _asyncpg_target),
        )

    def _admin_url(self) -> URL:
        # The maintenance database: the URL's own database need not exist, only its name is used.
        return self.server_url.set(database="postgres")

    def _mark_of(self, conn: Connection, name: str) -> str | bool | None:
        row = conn.execute(
            text("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = :n"),
            {"n": name},
        ).first()
        if row is None:
            return False
        return row[0] if isinstance(row[0], str) and row[0].startswith(MARK) else None

    def _marked(self, conn: Connection, like: str) -> list[tuple[str, Mark]]:
        rows = conn.execute(
            text(
                "SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database "
                "WHERE datname LIKE :prefix ORDER BY datname"
            ),
            {"prefix": like},
        ).all()
        return marked_pairs([(str(name), mark) for name, mark in rows])

    def _create_marked(self, conn: Connection, name: str, mark: Mark, template: str | None = None) -> None:
        if template is None:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        else:
            self._clone(conn, name, template)
        self._set_mark(conn, name, mark)

    def _set_mark(self, conn: Connection, name: str, mark: Mark, was: Mark | None = None) -> None:
        # `was` is not asked: a comment changes at once, and a template here is dropped in one step
        text = str(mark).replace("'", "''")
        conn.exec_driver_sql(f"COMMENT ON DATABASE \"{name}\" IS '{text}'")

    def _drop_database(self, conn: Connection, name: str, *, force: bool = True) -> None:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"' + (" WITH (FORCE)" if force else ""))

    def _sessions_in(self, conn: Connection, name: str, session_ids: Sequence[int]) -> list[int]:
        ours = set(session_ids)
        rows = conn.execute(text("SELECT pid FROM pg_stat_activity WHERE datname = :n"), {"n": name}).scalars()
        return [int(pid) for pid in rows if int(pid) in ours]

    @staticmethod
    def _clone(conn: Connection, name: str, template: str) -> None:
        # CREATE DATABASE ... TEMPLATE refuses while anyone is connected to the template; our own
        # builders have closed theirs, so only a brief overlap (another run's check) is waited out.
        for attempt in range(50):
            try:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
                return
            except DBAPIError as exc:
                message = str(exc.orig)
                if "does not exist" in message:
                    raise TemplateGone(template) from None
                if "being accessed by other users" not in message or attempt == 49:
                    raise
                time.sleep(0.1)

    def drop_if_unused(self, name: str, mark: Mark) -> str:
        def work(conn: Connection) -> str:
            now = self._mark_of(conn, name)
            if now is False:
                return ""  # gone already (its own run ended meanwhile)
            if Mark.parse(now if isinstance(now, str) else None) != mark:
                return "its mark changed since it was judged"
            try:  # no FORCE: a run still connected to it keeps it
                self._drop_database(conn, name, force=False)
            except DBAPIError as exc:
                if error_code(exc) == "55006":  # object_in_use: someone is connected
                    return "a connection to it is open"
                raise
            return ""

        return run_admin(self._admin_url(), work)

    def drop_command(self, name: str) -> str:
        url = self.server_url
        host = url.host or url.query.get("host")  # a unix socket's folder (embedded servers) is a query
        args = ["dropdb"]
        args += ["-h", str(host)] if host else []
        args += ["-p", str(url.port)] if url.port else []
        args += ["-U", url.username] if url.username else []
        return shlex.join([*args, name])

    def seal_template(self, template: URL, key: str, run_id: str) -> URL:
        name = str(template.database)
        mark = Mark.now(key=key, base=self._base(), state="ready", run=run_id)

        def work(conn: Connection) -> None:
            self._set_mark(conn, name, mark)
            for other in self._surplus(conn, name, key):
                # no FORCE: a template being cloned right now is left for the next run
                with contextlib.suppress(DBAPIError):
                    self._drop_database(conn, other, force=False)

        run_admin(self._admin_url(), work)
        return template

    # ---- quirks ---------------------------------------------------------------------------------------
    @classmethod
    def loop_free(cls, async_driver: str) -> bool:
        # asyncpg's connection lives on the owner loop; psycopg's async one binds to no loop (its IO waits on
        # the caller's loop, statement by statement), so it serves any loop as it is
        return async_driver in ("asyncpg", "psycopg", "psycopg_async")

    @classmethod
    def async_creator(cls, url: URL, owner: OwnerLoop) -> Callable[[], Awaitable[Any]] | None:
        if url.get_driver_name() != "asyncpg":
            return None  # psycopg's AsyncConnection checks its own class (TypeInfo.fetch): not proxied yet
        import asyncpg  # type: ignore[import-untyped]

        _, params = url.get_dialect(_is_async=True)().create_connect_args(url)
        # terminate() aborts the transport, which only its loop's thread may touch
        return proxied_creator(owner, asyncpg.connect, params, frozenset({"terminate"}))

    @classmethod
    def empty_tables(cls, conn: Connection, names: list[str]) -> None:
        quote = conn.dialect.identifier_preparer.quote
        conn.exec_driver_sql(f"TRUNCATE {', '.join(quote(n) for n in names)} RESTART IDENTITY CASCADE")

    @classmethod
    def timeout_statement(cls, cursor: Any) -> str | None:
        cursor.execute("SET LOCAL statement_timeout = 1")
        return "SELECT pg_sleep(5)"

    @classmethod
    def session_id_query(cls) -> str | None:
        return "SELECT pg_backend_pid()"

    @classmethod
    def kill_statement(cls, session_id: int) -> str:
        return f"SELECT pg_terminate_backend({int(session_id)})"

    @classmethod
    def driver_error(
        cls, dialect: Dialect, class_name: str, message: str, sqlstate: str, errno: int
    ) -> BaseException:
        if dialect.driver in ("psycopg", "psycopg_async"):
            import psycopg.errors

            return psycopg.errors.lookup(sqlstate)(message)
        return super().driver_error(dialect, class_name, message, sqlstate, errno)

    @classmethod
    def socket_of(cls, driver_connection: Any) -> int | None:
        if hasattr(driver_connection, "is_closed"):  # asyncpg
            return -1 if driver_connection.is_closed() else transport_fd(driver_connection._transport)
        return -1 if driver_connection.closed else int(driver_connection.fileno())  # psycopg

    @classmethod
    def in_transaction(cls, driver_connection: Any) -> bool | None:
        if hasattr(driver_connection, "is_in_transaction"):  # asyncpg
            return bool(driver_connection.is_in_transaction())
        return int(driver_connection.info.transaction_status) != 0  # psycopg: 0 is IDLE


def _pg_target(driver: str, database: Any, user: Any, host: Any, port: Any, password: Any) -> Target:
    """What libpq (and asyncpg, which follows it) connects to: an unnamed user or database takes the
    environment's default, the database defaulting to the user's name."""
    if not user:
        try:
            user = os.environ.get("PGUSER") or getpass.getuser()
        except OSError:  # no name for this uid (a bare container)
            user = ""
    database = database or os.environ.get("PGDATABASE") or user
    host = host or os.environ.get("PGHOST") or "localhost"
    port = port or os.environ.get("PGPORT")
    hidden = ":***" if password else ""
    return str(database), f"postgresql+{driver}://{user}{hidden}@{host}{f':{port}' if port else ''}/{database}"


def _psycopg_target(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Target:
    # Connection._get_connection_params(cls, conninfo, **kwargs)
    from psycopg.conninfo import conninfo_to_dict

    conninfo = args[1] if len(args) > 1 else kwargs.get("conninfo", "")
    params = conninfo_to_dict(conninfo, **{k: v for k, v in kwargs.items() if k != "conninfo"})
    get = params.get
    return _pg_target("psycopg", get("dbname"), get("user"), get("host"), get("port"), get("password"))


def _psycopg2_target(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Target:
    # psycopg2._connect(dsn, connection_factory=None, **kwasync): psycopg2.connect() has made one dsn already
    from psycopg2.extensions import parse_dsn  # type: ignore[import-untyped,import-not-found,unused-ignore]

    params = parse_dsn(args[0] if args else kwargs.get("dsn", ""))
    get = params.get
    return _pg_target("psycopg2", get("dbname"), get("user"), get("host"), get("port"), get("password"))


def _asyncpg_target(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Target:
    """asyncpg's rules: an argument wins over the DSN's query, which wins over its path and netloc."""
    database, user, host, port, password = map(kwargs.get, ("database", "user", "host", "port", "password"))
    dsn = kwargs.get("dsn")
    if dsn:
        parts = urlsplit(dsn)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        userinfo, _, hosts = parts.netloc.rpartition("@")
        database = database or query.get("database") or query.get("dbname") or unquote(parts.path.lstrip("/"))
        user = user or query.get("user") or unquote(userinfo.partition(":")[0])
        password = password or query.get("password") or ":" in userinfo
        host = host or query.get("host") or unquote(hosts)  # hosts keeps its :port (or several hosts)
        if hosts and not kwargs.get("host"):
            port = None
    return _pg_target("asyncpg", database, user, host, port, password)
