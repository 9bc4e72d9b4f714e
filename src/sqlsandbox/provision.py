"""Test databases per dialect: create, recognise as ours, drop. Nothing else is ever touched.

Each dialect family registers a provisioner (as SQLAlchemy's own testing/provision.py does). A database we
create carries a mark (a comment on PostgreSQL, a marker table on MariaDB/MySQL, a private temp dir on SQLite);
we only ever drop, or run DDL in, a database that carries our mark.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from . import drivers
from .errors import ConfigError, DriverMissingError, NotOurDatabaseError, ServerUnreachableError

MARK = "sqlsandbox"
MARKER_TABLE = "_sqlsandbox_owner"
T = TypeVar("T")


def safe_url(url: URL | str) -> str:
    """The URL as it may be shown: password hidden."""
    return make_url(url).render_as_string(hide_password=True)


def parse_url(raw: str | None) -> URL:
    if not raw:
        return make_url("sqlite:///sqlsandbox.db")
    try:
        return make_url(raw)
    except Exception as exc:
        raise ConfigError(
            f"sqlsandbox_url {raw!r} is not a SQLAlchemy URL ({exc}).",
            fix="write it as dialect+driver://user:password@host:port/dbname, "
            "e.g. postgresql+psycopg://postgres@127.0.0.1:5432/app",
        ) from None


def base_name(url: URL) -> str:
    base = url.database or "sqlsandbox"
    if drivers.family(url) == "sqlite":
        base = Path(base).stem if base != ":memory:" else "sqlsandbox"
    return re.sub(r"[^A-Za-z0-9_]", "_", f"test_{base}")[:40]


def test_database_name(url: URL, suffix: str = "") -> str:
    """test_<name>_<run id>[_<xdist worker>]: unique per run, so concurrent runs, nested pytest runs and
    CI shards never share (or drop) each other's database."""
    base = base_name(url)
    name = re.sub(r"[^A-Za-z0-9_]", "_", f"{base}{suffix}")
    return name[:63]


def _like_prefix(base: str) -> str:
    return base.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%") + "\\_%"


def _mark_text() -> str:
    return f"{MARK}: created by pid {os.getpid()} on {socket.gethostname()} at {time.time():.0f}"


_MARK_RE = re.compile(rf"^{MARK}: created by pid (\d+) on (\S+) at")


def is_stale(mark: str | None) -> bool:
    """A database of ours whose run is gone: made on this host by a process that no longer exists."""
    found = _MARK_RE.match(mark or "")
    if found is None or found.group(2) != socket.gethostname():
        return False
    pid = int(found.group(1))
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def run_admin(url: URL, fn: Callable[[Connection], T]) -> T:
    """Run fn on an AUTOCOMMIT connection to url, through a sync driver if one is installed."""
    try:
        sync = drivers.sync_url(url)
    except DriverMissingError:
        sync = None
    try:
        if sync is not None:
            engine = create_engine(sync, poolclass=NullPool, isolation_level="AUTOCOMMIT")
            try:
                with engine.connect() as conn:
                    return fn(conn)
            finally:
                engine.dispose()

        async def via_async() -> T:
            aengine = create_async_engine(
                drivers.async_url(url), poolclass=NullPool, isolation_level="AUTOCOMMIT"
            )
            try:
                async with aengine.connect() as aconn:
                    return await aconn.run_sync(fn)
            finally:
                await aengine.dispose()

        return asyncio.run(via_async())
    except Exception as exc:
        # A driver error can also arrive unwrapped (e.g. when the driver module was re-imported and
        # SQLAlchemy no longer recognises its classes), so judge by what it says, not only its type.
        orig = exc.orig if isinstance(exc, DBAPIError) else exc
        is_driver_error = isinstance(exc, DBAPIError) or type(exc).__module__.split(".")[0] in _DRIVER_MODULES
        if is_driver_error and _is_connect_error(exc):
            raise ServerUnreachableError(
                f"Could not connect to {safe_url(url)}: {str(orig).strip()}",
                why="sqlsandbox needs the server named by sqlsandbox_url to create its test database.",
                fix="start the server, or point sqlsandbox_url / SQLSANDBOX_URL at a running one "
                "(unset it to use the embedded SQLite default).",
            ) from None
        raise


_DRIVER_MODULES = {"psycopg", "psycopg2", "asyncpg", "pymysql", "asyncmy", "aiomysql", "MySQLdb", "sqlite3"}


def _is_connect_error(exc: Exception) -> bool:
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated or exc.statement is None:
            return True
        exc = exc.orig  # type: ignore[assignment]
    words = (
        "connect",
        "refused",
        "could not",
        "can't",
        "unreachable",
        "no such host",
        "timeout",
        "access denied",
    )
    message = str(exc).lower()
    return any(word in message for word in words)


class Provisioner:
    """Creates and drops test databases on one dialect family's server."""

    family = ""

    def __init__(self, server_url: URL) -> None:
        self.server_url = server_url
        self.removed_stale: list[str] = []  # databases of killed runs removed while provisioning

    def create(self, name: str) -> URL:
        raise NotImplementedError

    def drop(self, test_url: URL) -> None:
        raise NotImplementedError


PROVISIONERS: dict[str, type[Provisioner]] = {}


def register(cls: type[Provisioner]) -> type[Provisioner]:
    PROVISIONERS[cls.family] = cls
    return cls


def provisioner_for(url: URL) -> Provisioner:
    fam = drivers.family(url)
    if fam not in PROVISIONERS:
        raise ConfigError(
            f"sqlsandbox cannot provision {url.get_backend_name()!r} databases.",
            fix="use a PostgreSQL, MariaDB/MySQL or SQLite URL.",
        )
    return PROVISIONERS[fam](url)


def _not_ours(name: str, url: URL) -> NotOurDatabaseError:
    return NotOurDatabaseError(
        f"Database {name!r} already exists on {safe_url(url)} and was not created by sqlsandbox.",
        why="sqlsandbox only drops or builds schemas in databases it created and marked as its own; "
        "this one may hold someone's data.",
        fix=f"drop {name!r} yourself if it is disposable, or point sqlsandbox_url at a database "
        "whose derived test_<name> is free.",
    )


@register
class PostgresProvisioner(Provisioner):
    family = "postgresql"

    def _admin_url(self) -> URL:
        # The maintenance database: the URL's own database need not exist, only its name is used.
        return self.server_url.set(database="postgres")

    @staticmethod
    def _mark_of(conn: Connection, name: str) -> str | bool | None:
        row = conn.execute(
            text("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = :n"),
            {"n": name},
        ).first()
        if row is None:
            return False
        return row[0] or None

    def create(self, name: str) -> URL:
        def work(conn: Connection) -> None:
            rows = conn.execute(
                text(
                    "SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database "
                    "WHERE datname LIKE :prefix"
                ),
                {"prefix": _like_prefix(base_name(self.server_url))},
            ).all()
            for other, other_mark in rows:
                if other != name and is_stale(other_mark):
                    conn.exec_driver_sql(f'DROP DATABASE "{other}" WITH (FORCE)')
                    self.removed_stale.append(other)
            mark = self._mark_of(conn, name)
            if mark is not False:
                if not (isinstance(mark, str) and mark.startswith(MARK)):
                    raise _not_ours(name, self.server_url)
                conn.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
            conn.exec_driver_sql(f"COMMENT ON DATABASE \"{name}\" IS '{_mark_text()}'")

        run_admin(self._admin_url(), work)
        return self.server_url.set(database=name)

    def drop(self, test_url: URL) -> None:
        name = str(test_url.database)

        def work(conn: Connection) -> None:
            mark = self._mark_of(conn, name)
            if isinstance(mark, str) and mark.startswith(MARK):
                conn.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')

        run_admin(self._admin_url(), work)


@register
class MySQLProvisioner(Provisioner):
    family = "mysql"

    def _admin_url(self) -> URL:
        return self.server_url._replace(database=None)

    @staticmethod
    def _state(conn: Connection, name: str) -> str:
        exists = conn.execute(
            text("SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = :n"), {"n": name}
        ).first()
        if exists is None:
            return "absent"
        marked = conn.execute(
            text("SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = :n AND TABLE_NAME = :t"),
            {"n": name, "t": MARKER_TABLE},
        ).first()
        return "ours" if marked else "foreign"

    def create(self, name: str) -> URL:
        def work(conn: Connection) -> None:
            others = conn.execute(
                text("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE :p"),
                {"p": _like_prefix(base_name(self.server_url))},
            ).scalars()
            for other in list(others):
                if other != name and self._state(conn, other) == "ours":
                    note = conn.exec_driver_sql(f"SELECT note FROM `{other}`.`{MARKER_TABLE}`").scalar()
                    if is_stale(note):
                        conn.exec_driver_sql(f"DROP DATABASE `{other}`")
                        self.removed_stale.append(other)
            state = self._state(conn, name)
            if state == "foreign":
                raise _not_ours(name, self.server_url)
            if state == "ours":
                conn.exec_driver_sql(f"DROP DATABASE `{name}`")
            conn.exec_driver_sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
            conn.exec_driver_sql(f"CREATE TABLE `{name}`.`{MARKER_TABLE}` (note VARCHAR(255))")
            conn.execute(
                text(f"INSERT INTO `{name}`.`{MARKER_TABLE}` (note) VALUES (:m)"),
                {"m": _mark_text()},
            )

        run_admin(self._admin_url(), work)
        return self.server_url.set(database=name)

    def drop(self, test_url: URL) -> None:
        name = str(test_url.database)

        def work(conn: Connection) -> None:
            if self._state(conn, name) == "ours":
                conn.exec_driver_sql(f"DROP DATABASE `{name}`")

        run_admin(self._admin_url(), work)


@register
class SQLiteProvisioner(Provisioner):
    """A file in a private temp dir: shared by the sync and async drivers, never the app's own file."""

    family = "sqlite"

    def create(self, name: str) -> URL:
        for marker in Path(tempfile.gettempdir()).glob(f"{MARK}-*/{MARKER_TABLE}"):
            try:
                if is_stale(marker.read_text()):
                    shutil.rmtree(marker.parent, ignore_errors=True)
                    self.removed_stale.append(str(marker.parent))
            except OSError:
                continue
        folder = tempfile.mkdtemp(prefix=f"{MARK}-")
        Path(folder, MARKER_TABLE).write_text(_mark_text())
        return self.server_url.set(database=str(Path(folder, f"{name}.db")))

    def drop(self, test_url: URL) -> None:
        folder = Path(str(test_url.database)).parent
        if Path(folder, MARKER_TABLE).exists():
            shutil.rmtree(folder, ignore_errors=True)
