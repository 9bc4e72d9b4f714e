"""PostgreSQL: the mark is the database's comment; templates are cloned by CREATE DATABASE ... TEMPLATE."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import URL, Connection, Dialect
from sqlalchemy.exc import DBAPIError

from ..drivers import Driver
from ..marks import MARK, Mark
from ..owner import OwnerLoop, proxied_creator
from .base import ServerProvisioner, TemplateGone, error_code, marked_pairs, run_admin


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

    @staticmethod
    def _set_mark(conn: Connection, name: str, mark: Mark) -> None:
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
        return async_driver == "asyncpg"

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
