"""Test databases per dialect: create, recognise as ours, drop. Nothing else is ever touched.

Each dialect family registers a provisioner (as SQLAlchemy's own testing/provision.py does). A database we
create carries a mark (a comment on PostgreSQL, a marker table on MariaDB/MySQL, a private temp dir on SQLite);
we only ever drop, or run DDL in, a database that carries our mark.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Sequence
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
TEMPLATE_PREFIX = "sqlsandbox_tpl_"
T = TypeVar("T")


class TemplateGone(Exception):
    """The template to clone was dropped in the meantime (another run replaced it): build it again."""


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


@functools.cache
def host() -> str:
    """Where a pid means one process: the host name and, on Linux, the pid namespace's id. Containers that
    share a host name (and a database server) but not their pids so never judge each other's databases."""
    name = socket.gethostname()
    with contextlib.suppress(OSError):
        name += "~" + re.sub(r"\D", "", os.readlink("/proc/self/ns/pid"))  # 'pid:[4026531836]'
    return name


def _mark_text(template: str = "") -> str:
    """Our ownership mark. A template's adds `; template <key> of <base>; building|ready; run <id>`."""
    mark = _mark_for(os.getpid(), host(), time.time())
    return f"{mark}; template {template}" if template else mark


def _mark_for(pid: int | str, where: str, at: float) -> str:
    """A mark's origin part, as mark_origin reads it back."""
    return f"{MARK}: created by pid {pid} on {where} at {at:.0f}"


def _host_hash(where: str) -> str:
    """Names SQLite template builds by host, where a host name may not be part of a file name."""
    return hashlib.sha256(where.encode()).hexdigest()[:8]


_MARK_RE = re.compile(rf"^{MARK}: created by pid (\d+) on (\S+) at")


def user_tag() -> str:
    """Names this user's folders under the shared temp dir, so two users on one machine never share one."""
    geteuid = getattr(os, "geteuid", None)
    return str(geteuid()) if geteuid is not None else re.sub(r"\W", "_", os.environ.get("USERNAME", "user"))


def template_name(key: str, run_id: str) -> str:
    return f"{TEMPLATE_PREFIX}{key[:16]}_{re.sub(r'[^A-Za-z0-9]', '', run_id)[:8] or 'run'}"


def template_mark(key: str, base: str, state: str, run_id: str) -> str:
    return f"{key[:16]} of {base}; {state}; run {run_id}"


def template_is_ready(mark: str | None) -> bool:
    """A template to clone."""
    return bool(mark) and "; template " in str(mark) and "; ready; " in str(mark)


def template_is_uncopyable(mark: str | None) -> bool:
    """What is left of a template that could not be copied (MariaDB/MySQL views, triggers, routines): an
    empty database whose mark tells later runs to build the schema in their test database straight away."""
    return bool(mark) and "; template " in str(mark) and "; uncopyable; " in str(mark)


def template_is_kept(mark: str | None) -> bool:
    """Meant to outlive its run."""
    return template_is_ready(mark) or template_is_uncopyable(mark)


def template_run(mark: str | None) -> str:
    return str(mark or "").rpartition("; run ")[2]


def _template_base(mark: str | None) -> str:
    found = re.search(r"; template \S+ of (\S+);", mark or "")
    return found.group(1) if found else ""


KEEP_TEMPLATES = (
    8  # per database name: suites or branches sharing one server and name take turns without rebuilds
)


def _with_time(mark: str, at: float) -> str:
    return re.sub(r" at \d+", f" at {at:.0f}", mark, count=1)


def _mark_time(mark: str | None) -> float:
    found = re.search(r" at (\d+)", mark or "")
    return float(found.group(1)) if found else 0.0


def _template_key(mark: str | None) -> str:
    found = re.search(r"; template (\S+) of ", mark or "")
    return found.group(1) if found else ""


def surplus_templates(marked: Sequence[tuple[str, str | None]], base: str, keep: str, key: str) -> list[str]:
    """Templates to drop once `keep` (of key) is built: older ones of the same key, and this project's
    beyond the newest KEEP_TEMPLATES."""
    ready = [(name, mark) for name, mark in marked if name != keep and template_is_kept(mark)]
    same_key = [name for name, mark in ready if _template_key(mark) == key[:16]]
    ours = [(name, mark) for name, mark in ready if _template_base(mark) == base and name not in same_key]
    ours.sort(key=lambda item: -_mark_time(item[1]))
    return same_key + [name for name, _ in ours[KEEP_TEMPLATES - 1 :]]


def pick_template(marked: Sequence[tuple[str, str | None]], run_id: str) -> tuple[str, str] | None:
    """The template to clone (or the word that it cannot be): the one this run built (xdist workers,
    --sqlsandbox-rebuild), else the newest."""
    ready = [(name, str(mark)) for name, mark in marked if template_is_kept(mark)]
    if not ready:
        return None
    return max(ready, key=lambda item: (template_run(item[1]) == run_id, _mark_time(item[1])))


def mark_origin(mark: str | None) -> tuple[int, str, float] | None:
    """(pid, host, unix time) of the run that made a database, from its mark; None for no mark of ours."""
    found = _MARK_RE.match(mark or "")
    return (int(found.group(1)), found.group(2), _mark_time(mark)) if found else None


def made_here(where: str) -> bool:
    """Whether a mark's host is this host (and pid namespace), where its pid can be looked up."""
    # a mark without "~" was made before pid namespaces were recorded: judged by host name, as then
    return where in (host(), socket.gethostname())


def is_stale(mark: str | None) -> bool:
    """A database of ours whose run is gone: made on this host (and pid namespace) by a process that no
    longer exists. A kept template is never stale: outliving its run is its purpose."""
    origin = mark_origin(mark)
    if origin is None or not made_here(origin[1]) or template_is_kept(mark):
        return False
    pid = origin[0]
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _run_database(base: str) -> re.Pattern[str]:
    """The names of the test databases runs of project `base` make: test_<name>_<run id>[_gw<N>]; not
    test_<name>_v2_<run id>, which project <name>_v2's runs make."""
    return re.compile(rf"{re.escape(base)}_[0-9A-Za-z]+(_gw\d+)?")


def _error_code(exc: DBAPIError) -> str:
    """The server's code for a driver error: SQLSTATE on PostgreSQL, the error number on MariaDB/MySQL
    (their messages follow the server's language, the codes do not)."""
    orig = exc.orig
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if code is None and orig is not None and orig.args and isinstance(orig.args[0], int):
        code = orig.args[0]
    return str(code or "")


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
    """Creates and drops test databases, and the schema templates they are cloned from, on one dialect
    family's server."""

    family = ""

    def __init__(self, server_url: URL) -> None:
        self.server_url = server_url
        self.removed_stale: list[str] = []  # databases of killed runs removed while provisioning

    def create(self, name: str, template: URL | None = None) -> URL:
        """A new, marked database; a copy of template (schema and rows) if given."""
        raise NotImplementedError

    def drop(self, test_url: URL) -> None:
        raise NotImplementedError

    # templates: a database holding the built schema, found again by the key of what built it
    def find_template(self, key: str, run_id: str = "") -> tuple[URL, str] | None:
        """A ready template for key and its mark, if there is one (see pick_template)."""
        raise NotImplementedError

    def create_template(self, key: str, run_id: str) -> URL:
        """An empty database to build the template for key in (marked as building)."""
        raise NotImplementedError

    def seal_template(self, template: URL, key: str, run_id: str) -> URL:
        """Mark a built template ready (returns where it now is), and drop this project's templates of
        other keys."""
        raise NotImplementedError

    def can_copy(self, template: URL) -> bool:
        """Whether clones made by create(template=...) hold everything the template holds."""
        return True

    def mark_uncopyable(self, template: URL, key: str, run_id: str) -> None:
        """Empty a template that can_copy refused, keeping its mark as the word for later runs."""
        raise NotImplementedError(f"{type(self).__name__} can copy every template")

    # clean-up on demand (pytest --sqlsandbox-clean, see cleanup.py)
    def project_databases(self) -> list[tuple[str, str]]:
        """(name, mark) of each database of ours that this project's runs made (test databases named
        after the URL's database, templates built for them), whoever made it and whenever."""
        raise NotImplementedError

    def drop_if_unused(self, name: str, mark: str) -> str:
        """Drop one of project_databases() if it still carries the mark it was judged by and nobody uses
        it: '' once it is gone, else why it was kept."""
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


class ServerProvisioner(Provisioner):
    """What PostgreSQL and MariaDB/MySQL share: marked databases listed by name, leftovers of dead runs
    dropped, templates found among them."""

    def _admin_url(self) -> URL:
        raise NotImplementedError

    def _marked(self, conn: Connection, like: str) -> list[tuple[str, str | None]]:
        """(name, mark) of our databases whose names match like."""
        raise NotImplementedError

    def _drop_leftover(self, conn: Connection, name: str) -> None:
        """Drop a dead run's database; IF EXISTS: a concurrent run may be removing it right now."""
        raise NotImplementedError

    def _drop_stale(self, conn: Connection, like: str, keep: str) -> None:
        for other, mark in self._marked(conn, like):
            if other != keep and is_stale(mark):
                self._drop_leftover(conn, other)
                self.removed_stale.append(other)

    def project_databases(self) -> list[tuple[str, str]]:
        base = base_name(self.server_url)
        run_database = _run_database(base)

        def work(conn: Connection) -> list[tuple[str, str]]:
            tests = [(n, m) for n, m in self._marked(conn, _like_prefix(base)) if run_database.fullmatch(n)]
            kept = [
                (n, m)
                for n, m in self._marked(conn, _like_prefix(TEMPLATE_PREFIX[:-1]))
                if _template_base(m) == base
            ]
            return [(name, str(mark)) for name, mark in tests + kept if mark_origin(mark) is not None]

        return run_admin(self._admin_url(), work)

    def find_template(self, key: str, run_id: str = "") -> tuple[URL, str] | None:
        def work(conn: Connection) -> tuple[URL, str] | None:
            self._drop_stale(conn, _like_prefix(TEMPLATE_PREFIX[:-1]), keep="")  # half-built by dead runs
            picked = pick_template(self._marked(conn, _like_prefix(TEMPLATE_PREFIX + key[:16])), run_id)
            return (self.server_url.set(database=picked[0]), picked[1]) if picked else None

        return run_admin(self._admin_url(), work)


@register
class PostgresProvisioner(ServerProvisioner):
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

    def _marked(self, conn: Connection, like: str) -> list[tuple[str, str | None]]:
        rows = conn.execute(
            text(
                "SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database "
                "WHERE datname LIKE :prefix ORDER BY datname"
            ),
            {"prefix": like},
        ).all()
        return [(str(name), mark) for name, mark in rows]

    def _drop_leftover(self, conn: Connection, name: str) -> None:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def create(self, name: str, template: URL | None = None) -> URL:
        def work(conn: Connection) -> None:
            self._drop_stale(conn, _like_prefix("test"), keep=name)  # any of ours whose run is dead
            mark = self._mark_of(conn, name)
            if mark is not False:
                if not (isinstance(mark, str) and mark.startswith(MARK)):
                    raise _not_ours(name, self.server_url)
                conn.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
            if template is None:
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
            else:
                self._clone(conn, name, str(template.database))
            conn.exec_driver_sql(f"COMMENT ON DATABASE \"{name}\" IS '{_mark_text()}'")

        run_admin(self._admin_url(), work)
        return self.server_url.set(database=name)

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

    def drop(self, test_url: URL) -> None:
        name = str(test_url.database)

        def work(conn: Connection) -> None:
            mark = self._mark_of(conn, name)
            if isinstance(mark, str) and mark.startswith(MARK):
                conn.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')

        run_admin(self._admin_url(), work)

    def drop_if_unused(self, name: str, mark: str) -> str:
        def work(conn: Connection) -> str:
            now = self._mark_of(conn, name)
            if now is False:
                return ""  # gone already (its own run ended meanwhile)
            if now != mark:
                return "its mark changed since it was judged"
            try:  # no FORCE: a run still connected to it keeps it
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
            except DBAPIError as exc:
                if _error_code(exc) == "55006":  # object_in_use: someone is connected
                    return "a connection to it is open"
                raise
            return ""

        return run_admin(self._admin_url(), work)

    def create_template(self, key: str, run_id: str) -> URL:
        name = template_name(key, run_id)
        base = base_name(self.server_url)

        def work(conn: Connection) -> None:
            mark = self._mark_of(conn, name)
            if mark is not False:  # a rebuild in this run; a database of that name not ours: refused
                if not (isinstance(mark, str) and mark.startswith(MARK)):
                    raise _not_ours(name, self.server_url)
                conn.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
            mark = _mark_text(template_mark(key, base, "building", run_id))
            conn.exec_driver_sql(f"COMMENT ON DATABASE \"{name}\" IS '{mark}'")

        run_admin(self._admin_url(), work)
        return self.server_url.set(database=name)

    def seal_template(self, template: URL, key: str, run_id: str) -> URL:
        name = str(template.database)
        base = base_name(self.server_url)

        def work(conn: Connection) -> None:
            mark = _mark_text(template_mark(key, base, "ready", run_id))
            conn.exec_driver_sql(f"COMMENT ON DATABASE \"{name}\" IS '{mark}'")
            for other in surplus_templates(
                self._marked(conn, _like_prefix(TEMPLATE_PREFIX[:-1])), base, name, key
            ):
                # no FORCE: a template being cloned right now is left for the next run
                with contextlib.suppress(DBAPIError):
                    conn.exec_driver_sql(f'DROP DATABASE "{other}"')

        run_admin(self._admin_url(), work)
        return template


@register
class MySQLProvisioner(ServerProvisioner):
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

    def _marked(self, conn: Connection, like: str) -> list[tuple[str, str | None]]:
        names = conn.execute(
            text("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE :p"),
            {"p": like},
        ).scalars()
        found = []
        for name in sorted(names):
            if self._state(conn, name) == "ours":
                try:
                    note = conn.exec_driver_sql(f"SELECT note FROM `{name}`.`{MARKER_TABLE}`").scalar()
                except DBAPIError:
                    continue  # dropped by a concurrent run between the listing and this read
                found.append((str(name), note))
        return found

    def _drop_leftover(self, conn: Connection, name: str) -> None:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")

    def drop_if_unused(self, name: str, mark: str) -> str:
        def work(conn: Connection) -> str:
            state = self._state(conn, name)
            if state != "ours":
                return "" if state == "absent" else "it no longer carries our mark"
            with contextlib.suppress(DBAPIError):  # dropped between the two reads: IF EXISTS below
                if conn.exec_driver_sql(f"SELECT note FROM `{name}`.`{MARKER_TABLE}`").scalar() != mark:
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
            try:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
            except DBAPIError as exc:
                if _error_code(exc) == "1205":  # lock wait timeout
                    return "a connection holds locks in it"
                raise
            return ""

        return run_admin(self._admin_url(), work)

    @staticmethod
    def _sees_all_connections(conn: Connection) -> bool:
        """PROCESSLIST shows other users' connections only to a user with the PROCESS privilege."""
        grants = " ".join(str(row[0]) for row in conn.exec_driver_sql("SHOW GRANTS"))
        return "ALL PRIVILEGES ON *.*" in grants or bool(re.search(r"\bPROCESS\b", grants))

    def _create_marked(self, conn: Connection, name: str, mark: str) -> None:
        conn.exec_driver_sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        conn.exec_driver_sql(f"CREATE TABLE `{name}`.`{MARKER_TABLE}` (note VARCHAR(255))")
        conn.execute(text(f"INSERT INTO `{name}`.`{MARKER_TABLE}` (note) VALUES (:m)"), {"m": mark})

    def create(self, name: str, template: URL | None = None) -> URL:
        def work(conn: Connection) -> None:
            self._drop_stale(conn, _like_prefix("test"), keep=name)  # any of ours whose run is dead
            state = self._state(conn, name)
            if state == "foreign":
                raise _not_ours(name, self.server_url)
            if state == "ours":
                conn.exec_driver_sql(f"DROP DATABASE `{name}`")
            if template is not None and self._state(conn, str(template.database)) != "ours":
                raise TemplateGone(str(template.database))
            self._create_marked(conn, name, _mark_text())
            if template is not None:
                self._copy_from_template(conn, str(template.database), name)

        run_admin(self._admin_url(), work)
        return self.server_url.set(database=name)

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
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")  # a failed copy is no database
                raise
            whole = False
        if not whole:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
            raise TemplateGone(template)

    def _is_ready(self, conn: Connection, template: str) -> bool:
        if self._state(conn, template) != "ours":
            return False
        try:
            note = conn.exec_driver_sql(f"SELECT note FROM `{template}`.`{MARKER_TABLE}`").scalar()
        except DBAPIError:
            return False  # dropped between the two reads
        return template_is_ready(note)

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
        """MariaDB/MySQL have no CREATE DATABASE ... TEMPLATE: recreate each table from its own DDL
        (SHOW CREATE TABLE keeps foreign keys, which CREATE TABLE ... LIKE drops) and copy its rows."""
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

    def drop(self, test_url: URL) -> None:
        name = str(test_url.database)

        def work(conn: Connection) -> None:
            if self._state(conn, name) == "ours":
                conn.exec_driver_sql(f"DROP DATABASE `{name}`")

        run_admin(self._admin_url(), work)

    def create_template(self, key: str, run_id: str) -> URL:
        name = template_name(key, run_id)
        base = base_name(self.server_url)

        def work(conn: Connection) -> None:
            if self._state(conn, name) == "ours":
                conn.exec_driver_sql(f"DROP DATABASE `{name}`")
            self._create_marked(conn, name, _mark_text(template_mark(key, base, "building", run_id)))

        run_admin(self._admin_url(), work)
        return self.server_url.set(database=name)

    def mark_uncopyable(self, template: URL, key: str, run_id: str) -> None:
        name = str(template.database)
        mark = _mark_text(template_mark(key, base_name(self.server_url), "uncopyable", run_id))

        def work(conn: Connection) -> None:
            conn.exec_driver_sql(f"DROP DATABASE `{name}`")  # views, triggers, routines and all
            self._create_marked(conn, name, mark)
            self._drop_surplus(conn, name, key)

        run_admin(self._admin_url(), work)

    def seal_template(self, template: URL, key: str, run_id: str) -> URL:
        name = str(template.database)
        mark = _mark_text(template_mark(key, base_name(self.server_url), "ready", run_id))

        def work(conn: Connection) -> None:
            conn.execute(text(f"UPDATE `{name}`.`{MARKER_TABLE}` SET note = :m"), {"m": mark})
            self._drop_surplus(conn, name, key)

        run_admin(self._admin_url(), work)
        return template

    def _drop_surplus(self, conn: Connection, keep: str, key: str) -> None:
        marked = self._marked(conn, _like_prefix(TEMPLATE_PREFIX[:-1]))
        for other in surplus_templates(marked, base_name(self.server_url), keep, key):
            # first unready, so a run copying it now learns its copy may be partial (_copy_from_template)
            with contextlib.suppress(DBAPIError):
                conn.execute(
                    text(f"UPDATE `{other}`.`{MARKER_TABLE}` SET note = :m"),
                    {"m": _mark_text("being dropped")},
                )
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{other}`")


@register
class SQLiteProvisioner(Provisioner):
    """A file in a private temp dir: shared by the sync and async drivers, never the app's own file.
    Templates are files in the project's cache folder, cloned by copying."""

    family = "sqlite"
    cache_dir: Path | None = None  # set by the run: pytest's cache folder when there is one

    def _templates(self, create: bool = True) -> Path:
        folder = self.cache_dir or Path(tempfile.gettempdir(), f"{MARK}-templates-{user_tag()}")
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        return folder

    def create(self, name: str, template: URL | None = None) -> URL:
        for marker in Path(tempfile.gettempdir()).glob(f"{MARK}-*/{MARKER_TABLE}"):
            try:
                if is_stale(marker.read_text()):
                    shutil.rmtree(marker.parent, ignore_errors=True)
                    self.removed_stale.append(str(marker.parent))
            except OSError:
                continue
        folder = tempfile.mkdtemp(prefix=f"{MARK}-")
        Path(folder, MARKER_TABLE).write_text(_mark_text())
        path = Path(folder, f"{name}.db")
        if template is not None:
            try:
                shutil.copyfile(str(template.database), path)
            except FileNotFoundError:
                shutil.rmtree(folder, ignore_errors=True)
                raise TemplateGone(str(template.database)) from None
        return self.server_url.set(database=str(path))

    def drop(self, test_url: URL) -> None:
        folder = Path(str(test_url.database)).parent
        if Path(folder, MARKER_TABLE).exists():
            shutil.rmtree(folder, ignore_errors=True)
        elif folder == self._templates():  # a template that failed to build
            Path(str(test_url.database)).unlink(missing_ok=True)

    def project_databases(self) -> list[tuple[str, str]]:
        """The private temp dirs of this project's test databases, and template files whose build was
        cut short (named <key>.building-<host hash>-<pid>.db, or <key>.building-<pid>.db by earlier
        versions), each with a mark made up from its name, so they are judged as server databases are.
        Files cannot say who has them open, so their time is that of their last write, not their making."""
        run_database = _run_database(base_name(self.server_url))
        found = []
        for marker in Path(tempfile.gettempdir()).glob(f"{MARK}-*/{MARKER_TABLE}"):
            with contextlib.suppress(OSError):
                files = [f for f in marker.parent.iterdir() if run_database.fullmatch(f.name.partition(".")[0])]
                mark = marker.read_text()
                origin = mark_origin(mark)
                if files and origin is not None:
                    written = max(f.stat().st_mtime for f in files)
                    found.append((str(marker.parent), _with_time(mark, max(origin[2], written))))
        here = _host_hash(host())
        templates = self._templates(create=False)
        for left in templates.glob("*.building-*.db") if templates.is_dir() else ():
            parts = left.stem.rpartition(".building-")[2].split("-")
            if not parts[-1].isdigit():
                continue
            where = (host() if parts[0] == here else f"host-{parts[0]}") if len(parts) == 2 else "unknown"
            with contextlib.suppress(OSError):
                written = left.stat().st_mtime
                found.append((str(left), _mark_for(parts[-1], where, written)))
        return found

    def drop_if_unused(self, name: str, mark: str) -> str:
        path = Path(name)
        if not path.exists():
            return ""
        if path.is_dir():
            marker = Path(path, MARKER_TABLE)
            try:
                origin = mark_origin(marker.read_text())
            except OSError:
                return "it no longer carries our mark"
            judged = mark_origin(mark)
            if origin is None or judged is None or origin[:2] != judged[:2]:  # its time is the last write
                return "its mark changed since it was judged"
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        return "it could not be removed entirely" if path.exists() else ""

    def find_template(self, key: str, run_id: str = "") -> tuple[URL, str] | None:
        path = self._templates() / f"{key[:16]}.db"
        mark = self._templates() / f"{key[:16]}.mark"
        try:
            note = mark.read_text()
        except OSError:
            return None
        if not path.exists() or not template_is_ready(note):
            return None
        return self.server_url.set(database=str(path)), note

    def create_template(self, key: str, run_id: str) -> URL:
        # builds of killed runs on this host: a project folder mounted into containers is seen by others
        here = _host_hash(host())
        for left in self._templates().glob(f"*.building-{here}-*.db"):
            pid = left.stem.rpartition("-")[2]
            if pid.isdigit() and is_stale(_mark_for(pid, host(), 0)):
                left.unlink(missing_ok=True)
        path = self._templates() / f"{key[:16]}.building-{here}-{os.getpid()}.db"
        path.unlink(missing_ok=True)
        return self.server_url.set(database=str(path))

    def seal_template(self, template: URL, key: str, run_id: str) -> URL:
        folder = self._templates()
        base = base_name(self.server_url)
        # The file first, then its mark: a reader that sees a ready mark finds the finished file.
        os.replace(str(template.database), folder / f"{key[:16]}.db")
        (folder / f"{key[:16]}.mark").write_text(_mark_text(template_mark(key, base, "ready", run_id)))
        marked = []
        for other in folder.glob("*.mark"):
            with contextlib.suppress(OSError):
                marked.append((other.stem, other.read_text()))
        for stem in surplus_templates(marked, base, key[:16], key):
            (folder / f"{stem}.mark").unlink(missing_ok=True)
            (folder / f"{stem}.db").unlink(missing_ok=True)
        return self.server_url.set(database=str(folder / f"{key[:16]}.db"))
