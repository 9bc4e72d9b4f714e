"""What every database family shares: naming test databases, admin connections, and the base class each
family's file fills in, for provisioning and for every quirk the rest of sqlsandbox asks about.

A provisioner creates, recognises as ours, and drops test databases, and keeps the schema templates they
are cloned from. It only ever drops, or runs DDL in, a database that carries our mark (marks.py). Its quirk
methods (engine set-up, clean-up, transaction-ending SQL, fault injection, connect arguments) have the
defaults of a plain SQL database; a family overrides what differs.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.engine import URL, Connection, Dialect, Engine
from sqlalchemy.exc import DBAPIError

from .. import drivers, templates
from ..database import TestDatabase
from ..drivers import Driver
from ..errors import NotOurDatabaseError, ServerUnreachableError
from ..marks import Mark
from ..owner import OwnerLoop
from ..sqltext import is_transaction_control, statements

if TYPE_CHECKING:
    from ..config import Settings
from .naming import TEMPLATE_PREFIX, base_name, like_prefix, run_database, safe_url, template_name

T = TypeVar("T")

# A clone records its template's use at most this often (seconds): --sqlsandbox-clean-templates counts in
# days, and a mark rewritten by every run and xdist worker would only make concurrent runs' writes collide.
TOUCH_EVERY = 3600.0


class TemplateGone(Exception):
    """The template to clone was dropped in the meantime (another run replaced it): build it again."""


def error_code(exc: DBAPIError) -> str:
    """The server's code for a driver error: SQLSTATE on PostgreSQL, the error number on MariaDB/MySQL
    (their messages follow the server's language, the codes do not)."""
    orig = exc.orig
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if code is None and orig is not None and orig.args and isinstance(orig.args[0], int):
        code = orig.args[0]
    return str(code or "")


_DRIVER_MODULES = {"psycopg", "psycopg2", "asyncpg", "pymysql", "asyncmy", "aiomysql", "MySQLdb", "sqlite3"}


# Every admin connection waits at most this long for a lock (a DROP behind a connection that holds its
# tables' metadata locks waited for a year, MariaDB's default, and queued every other run's queries behind
# it), and runs a statement at most ADMIN_STATEMENT_SECONDS (a template clone copies a whole database).
ADMIN_LOCK_SECONDS = 10
ADMIN_STATEMENT_SECONDS = 300


def admin_bounds(conn: Connection) -> list[str]:
    """The statements that bound an admin session's lock waits and statements, for its server."""
    if conn.dialect.name == "postgresql":
        return [
            f"SET lock_timeout = '{ADMIN_LOCK_SECONDS}s'",
            f"SET statement_timeout = '{ADMIN_STATEMENT_SECONDS}s'",
        ]
    if conn.dialect.name in ("mysql", "mariadb"):
        bounds = [
            f"SET SESSION lock_wait_timeout = {ADMIN_LOCK_SECONDS}",
            f"SET SESSION innodb_lock_wait_timeout = {ADMIN_LOCK_SECONDS}",
        ]
        if getattr(conn.dialect, "is_mariadb", False):  # MySQL's max_execution_time bounds SELECTs only
            bounds.append(f"SET SESSION max_statement_time = {ADMIN_STATEMENT_SECONDS}")
        return bounds
    return []


def run_admin(url: URL, fn: Callable[[Connection], T]) -> T:
    """Run fn on an AUTOCOMMIT connection to url, through a sync driver if one is installed; its lock
    waits and statements bounded (admin_bounds)."""

    def bounded(conn: Connection) -> T:
        for statement in admin_bounds(conn):
            conn.exec_driver_sql(statement)
        return fn(conn)

    try:
        return drivers.run_on_any_driver(url, bounded, autocommit=True)
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


def not_ours(name: str, url: URL) -> NotOurDatabaseError:
    return NotOurDatabaseError(
        f"Database {name!r} already exists on {safe_url(url)} and was not created by sqlsandbox.",
        why="sqlsandbox only drops or builds schemas in databases it created and marked as its own; "
        "this one may hold someone's data.",
        fix=f"drop {name!r} yourself if it is disposable, or point sqlsandbox_url at a database "
        "whose derived test_<name> is free.",
    )


@dataclass(frozen=True)
class Kept:
    """A test database kept after its run: its name as --sqlsandbox-clean lists it, and the family's own
    command that drops it."""

    name: str
    drop_command: str


Target = tuple[str, str]  # a connect call's database name, and its URL with the password hidden


@dataclass(frozen=True)
class DriverConnect:
    """A driver function that opens a connection, which the blocker (blocker.py) wraps while a run is active.

    `attribute` is a module-level name or "Class.method" in `module`; `target` reads the database the call
    would open from the call's arguments (for a method, args[0] is the instance or class), or returns None for
    one nothing else can see (SQLite in memory). The point chosen is the one every way into the driver passes
    (its pool, SQLAlchemy's dialect, `creator=`, a `from driver import connect` taken before the run)."""

    module: str
    attribute: str
    target: Callable[[tuple[Any, ...], dict[str, Any]], Target | None]


@dataclass
class Provisioned:
    """A run's test database, and how its schema came to be."""

    db: TestDatabase
    template: str  # the template's database (or file) name
    built: bool  # this run built it
    seconds: float  # time to build it, or to find and clone it
    uncopyable: bool = False  # built in the test database: the schema has what templates cannot copy


class Provisioner:
    """One database family's server: its test databases, their templates, and its quirks."""

    family = ""
    dialect_names: tuple[str, ...] = ()  # SQLAlchemy dialect names this family serves
    # its drivers, best first (the sync one for sync tests, the async one for async tests)
    sync_drivers: tuple[Driver, ...] = ()
    async_drivers: tuple[Driver, ...] = ()
    driver_partners: tuple[tuple[str, str], ...] = ()  # (a driver named in the URL, its library's other half)
    backslash_escapes = False  # whether a backslash escapes a quote in its strings (sqltext.statements)

    def __init__(self, server_url: URL, cache_dir: Path | None = None) -> None:
        self.server_url = server_url
        self.cache_dir = cache_dir  # where a file-based family keeps its templates (pytest's cache folder)
        self.removed_stale: list[str] = []  # databases of killed runs removed while provisioning

    def _base(self) -> str:
        return base_name(self.server_url)

    # ---- the run's test database ------------------------------------------------------------------
    def test_database(
        self,
        name: str,
        source: templates.SchemaSource,
        build: Callable[[TestDatabase], None],
        *,
        run_id: str,
        rebuild: bool = False,
    ) -> Provisioned:
        """The run's test database, cloned from the template for source (built first if there is none).

        build(db) builds the schema in an empty database. With rebuild, a template built by an earlier
        run is not used (workers of this run share the one the first of them builds)."""
        started = time.perf_counter()
        key = source.key(self.server_url)
        with templates.build_lock(self.server_url, key):
            for _ in range(3):
                found = self.find_template(key, run_id)
                built = False
                if found is None or (rebuild and found[1].run != run_id):
                    template = self._build_template(key, run_id, build)
                    built = True
                elif found[1].is_uncopyable:
                    template = None  # an earlier run found it cannot be copied: not built twice
                else:
                    template = found[0]
                if template is None:
                    break  # built below, outside the lock: every worker builds its own, all at once
                try:
                    db = TestDatabase(self, self.create(name, template))
                except TemplateGone:
                    continue  # another run replaced it between our look and our copy: look again
                return Provisioned(db, Path(str(template.database)).name, built, time.perf_counter() - started)
            else:
                raise ServerUnreachableError(
                    f"The schema template on {safe_url(self.server_url)} was dropped three times while this "
                    "run was copying it.",
                    why="another run sharing the server and database name replaced it each time "
                    "(see templates.KEEP).",
                    fix="run again, or give the concurrent suites different database names in sqlsandbox_url.",
                )
        # the schema has what a template cannot copy (MariaDB/MySQL views, triggers, routines)
        db = TestDatabase(self, self.create(name))
        _build_or_drop(db, build)
        return Provisioned(db, "", True, time.perf_counter() - started, uncopyable=True)

    def _build_template(self, key: str, run_id: str, build: Callable[[TestDatabase], None]) -> URL | None:
        template = self.create_template(key, run_id)
        db = TestDatabase(self, template)
        _build_or_drop(db, build)
        db.dispose()  # nothing may stay connected to a template that is about to be cloned
        if not self.can_copy(template):
            self.mark_uncopyable(template, key, run_id)
            return None
        return self.seal_template(template, key, run_id)

    # ---- what each family provides ----------------------------------------------------------------
    def create(self, name: str, template: URL | None = None) -> URL:
        """A new, marked database; a copy of template (schema and rows) if given."""
        raise NotImplementedError

    def drop(self, test_url: URL) -> None:
        """Drop a test database or a template, if it carries our mark."""
        raise NotImplementedError

    def keep(self, test_url: URL) -> Kept:
        """Mark the run's test database as kept (the user asked): no run drops it, --sqlsandbox-clean
        only with --sqlsandbox-clean-kept. Says how to drop it."""
        raise NotImplementedError

    def find_template(self, key: str, run_id: str = "") -> tuple[URL, Mark] | None:
        """A ready (or uncopyable) template for key and its mark, if there is one (see templates.pick)."""
        raise NotImplementedError

    def create_template(self, key: str, run_id: str) -> URL:
        """An empty database to build the template for key in (marked as building)."""
        raise NotImplementedError

    def seal_template(self, template: URL, key: str, run_id: str) -> URL:
        """Mark a built template ready (returns where it now is), and drop this project's surplus ones."""
        raise NotImplementedError

    def can_copy(self, template: URL) -> bool:
        """Whether clones made by create(template=...) hold everything the template holds."""
        return True

    def mark_uncopyable(self, template: URL, key: str, run_id: str) -> None:
        """Empty a template that can_copy refused, keeping its mark as the word for later runs."""
        raise NotImplementedError(f"{type(self).__name__} can copy every template")

    def project_databases(self) -> list[tuple[str, Mark]]:
        """(name, mark) of each database of ours that this project's runs made (test databases named
        after the URL's database, templates built for them), whoever made it and whenever."""
        raise NotImplementedError

    def drop_if_unused(self, name: str, mark: Mark) -> str:
        """Drop one of project_databases() if it still carries the mark it was judged by and nobody uses
        it: '' once it is gone, else why it was kept."""
        raise NotImplementedError

    def kill_sessions(self, test_url: URL, session_ids: Sequence[int]) -> int:
        """End these sessions of ours (server ids, see session_id_query) that are still connected to the test
        database: how many were. Nothing to do where there is no server."""
        return 0

    # ---- quirks (class-level: asked of a dialect name, without a server) ---------------------------
    @classmethod
    def prepare_engine(cls, engine: Engine) -> None:
        """Event listeners every engine to the test database needs (SQLite's transaction recipe)."""

    @classmethod
    def setup_for(cls, settings: Settings) -> Callable[[Engine], None] | None:
        """What the project's settings ask of every engine to the test database (SQLite's foreign keys)."""
        return None

    @classmethod
    def loop_free(cls, async_driver: str) -> bool:
        """Whether the run's async connection through this driver serves every event loop (it lives on the
        owner loop, see owner.py, or needs no loop of its own); else it belongs to the loop that made it."""
        return False

    @classmethod
    def async_creator(cls, url: URL, owner: OwnerLoop) -> Callable[[], Awaitable[Any]] | None:
        """create_async_engine()'s async_creator for url's async driver: a connection made on the owner loop,
        behind a LoopProxy; None to connect in the caller's loop as usual."""
        return None

    @classmethod
    def sync_engine_options(cls) -> dict[str, Any]:
        """create_engine() keywords for the test database's sync engine."""
        return {}

    @classmethod
    def ends_transaction(cls, statement: str) -> str | None:
        """The statement, or the one among several in one string, that would end the sandbox's outer
        transaction; None if none would."""
        parts = statements(statement, cls.backslash_escapes)
        return next((part for part in parts if cls._ends(part)), None)

    @classmethod
    def _ends(cls, statement: str) -> bool:
        return is_transaction_control(statement)

    @classmethod
    def empty_tables(cls, conn: Connection, names: list[str]) -> None:
        """Empty these tables and restart their identity sequences (committed mode's clean-up)."""
        quote = conn.dialect.identifier_preparer.quote
        for name in names:
            conn.exec_driver_sql(f"DELETE FROM {quote(name)}")

    @classmethod
    def driver_connects(cls) -> tuple[DriverConnect, ...]:
        """Where this family's drivers open connections, for the blocker to check (none by default: then only
        connections through SQLAlchemy are checked)."""
        return ()

    @classmethod
    def is_scratch(cls, database: str) -> bool:
        """Whether database_of()'s answer is one nothing else can see (SQLite in memory): always allowed."""
        return False

    @classmethod
    def database_of(cls, cargs: tuple[Any, ...], cparams: dict[str, Any]) -> str:
        """The database a driver's connect() arguments name (for the blocker)."""
        for key in ("dbname", "database", "db"):
            if cparams.get(key):
                return str(cparams[key])
        return ""

    @classmethod
    def describe_target(cls, dialect: Dialect, cargs: tuple[Any, ...], cparams: dict[str, Any]) -> str:
        """A connect()'s target as a URL, password hidden."""
        user = cparams.get("user") or cparams.get("username") or ""
        host = cparams.get("host") or "localhost"
        port = f":{cparams['port']}" if cparams.get("port") else ""
        password = ":***" if cparams.get("password") or cparams.get("passwd") else ""
        database = cls.database_of(cargs, cparams)
        return f"{dialect.name}+{dialect.driver}://{user}{password}@{host}{port}/{database}"

    # fault injection (faults.py): how this server times a statement out and kills a session for real
    @classmethod
    def timeout_statement(cls, cursor: Any) -> str | None:
        """A statement that fails on a statement timeout (cursor may set one up first); None: simulated."""
        return None

    @classmethod
    def session_id_query(cls) -> str | None:
        """The query for the server's id of this session; None: no session to kill (simulated)."""
        return None

    @classmethod
    def kill_statement(cls, session_id: int) -> str:
        raise NotImplementedError

    @classmethod
    def driver_error(
        cls, dialect: Dialect, class_name: str, message: str, sqlstate: str, errno: int
    ) -> BaseException:
        """An instance of the driver's own exception class."""
        base: Callable[..., BaseException] = getattr(dialect.loaded_dbapi, class_name)
        return base(message)

    @classmethod
    def changes_session(cls, statement: str) -> bool:
        """Whether the statement changes the connection's session state in a way the outer rollback does
        not undo (MariaDB's SET, SQLite's PRAGMA): the test's connection is then not kept for the next."""
        return False

    @classmethod
    def in_transaction(cls, driver_connection: Any) -> bool | None:
        """What the driver says: is a transaction open on this connection? None: it cannot tell. How an
        outer transaction ended past SQLAlchemy (a driver-level commit) is noticed (events.py)."""
        return None

    # the kept connection's health between tests (connection.idle_root_alive)
    @classmethod
    def socket_of(cls, driver_connection: Any) -> int | None:
        """The file descriptor of the driver connection's socket, -1 once the driver knows it is closed;
        None where there is no socket to lose (SQLite)."""
        return None


def transport_fd(transport: Any) -> int:
    """An asyncio transport's socket descriptor, -1 once it is closed (asyncpg, asyncmy)."""
    if transport is None or transport.is_closing():
        return -1
    sock = transport.get_extra_info("socket")
    return -1 if sock is None else int(sock.fileno())


def _build_or_drop(db: TestDatabase, build: Callable[[TestDatabase], None]) -> None:
    try:
        build(db)
    except BaseException:
        db.drop()
        raise


class ServerProvisioner(Provisioner):
    """What PostgreSQL and MariaDB/MySQL share: marked databases listed by name, a database replaced only
    if it is ours, leftovers of dead runs dropped, templates found among them."""

    def _admin_url(self) -> URL:
        raise NotImplementedError

    # ---- the family's SQL ---------------------------------------------------------------------------
    def _mark_of(self, conn: Connection, name: str) -> str | bool | None:
        """False when database name does not exist; None when it exists and is not ours; else the text of
        our mark (which may not parse: a build cut short, an older sqlsandbox)."""
        raise NotImplementedError

    def _marked(self, conn: Connection, like: str) -> list[tuple[str, Mark]]:
        """(name, mark) of our databases whose names match like."""
        raise NotImplementedError

    def _create_marked(self, conn: Connection, name: str, mark: Mark, template: str | None = None) -> None:
        """CREATE DATABASE name (a copy of template, if given) and mark it."""
        raise NotImplementedError

    def _drop_database(self, conn: Connection, name: str, *, force: bool = True) -> None:
        """DROP DATABASE IF EXISTS (a concurrent run may be removing it right now)."""
        raise NotImplementedError

    def _set_mark(self, conn: Connection, name: str, mark: Mark, was: Mark | None = None) -> None:
        """Replace the mark of one of our databases (if it is still `was`, where the family can ask that
        in the same statement)."""
        raise NotImplementedError

    def drop_command(self, name: str) -> str:
        """The shell command that drops database name on this server (for the user to run)."""
        raise NotImplementedError

    # ---- the shared sequences -----------------------------------------------------------------------
    def _ours(self, conn: Connection, name: str) -> bool | None:
        """True if name is ours, None if absent; refuses (NotOurDatabaseError) a database not ours."""
        text = self._mark_of(conn, name)
        if text is False:
            return None
        if text is None or text is True:
            raise not_ours(name, self.server_url)
        return True

    def _replace(self, conn: Connection, name: str, mark: Mark, template: str | None = None) -> None:
        """Check our mark, refuse if foreign, drop, create, mark: what every new database goes through."""
        if self._ours(conn, name):
            self._drop_database(conn, name)
        self._create_marked(conn, name, mark, template)

    def _drop_stale(self, conn: Connection, like: str, keep: str) -> None:
        for other, mark in self._marked(conn, like):
            if other != keep and mark.is_stale:
                self._drop_database(conn, other)
                self.removed_stale.append(other)

    def create(self, name: str, template: URL | None = None) -> URL:
        def work(conn: Connection) -> None:
            self._drop_stale(conn, like_prefix("test"), keep=name)  # any of ours whose run is dead
            self._replace(conn, name, Mark.now(), str(template.database) if template is not None else None)
            if template is not None:
                self._touch(conn, str(template.database))

        run_admin(self._admin_url(), work)
        return self.server_url.set(database=name)

    def _touch(self, conn: Connection, template: str) -> None:
        """Record that a run cloned the template now: its mark's time is when it was last used, which
        --sqlsandbox-clean-templates judges by. Best effort: a template another user owns may refuse it,
        and a run that clones it is not worth failing for that."""
        text = self._mark_of(conn, template)
        mark = Mark.parse(text) if isinstance(text, str) else None
        if mark is None or not mark.is_ready or time.time() - mark.at < TOUCH_EVERY:
            return
        with contextlib.suppress(DBAPIError):
            self._set_mark(conn, template, mark.with_time(time.time()), was=mark)

    def keep(self, test_url: URL) -> Kept:
        name = str(test_url.database)

        def work(conn: Connection) -> None:
            text = self._mark_of(conn, name)
            mark = Mark.parse(text) if isinstance(text, str) else None
            if mark is not None:
                self._set_mark(conn, name, mark.kept())

        run_admin(self._admin_url(), work)
        return Kept(name, self.drop_command(name))

    def kill_sessions(self, test_url: URL, session_ids: Sequence[int]) -> int:
        if not session_ids:
            return 0
        name = str(test_url.database)

        def work(conn: Connection) -> int:
            # only ids still connected to our own test database: a server reuses ids (PostgreSQL's are pids)
            alive = self._sessions_in(conn, name, session_ids)
            for session_id in alive:
                with contextlib.suppress(DBAPIError):  # it ended between the look and the kill
                    conn.exec_driver_sql(self.kill_statement(session_id))
            return len(alive)

        return run_admin(self._admin_url(), work)

    def _sessions_in(self, conn: Connection, name: str, session_ids: Sequence[int]) -> list[int]:
        """Which of these session ids are connected to database name now."""
        raise NotImplementedError

    def drop(self, test_url: URL) -> None:
        name = str(test_url.database)

        def work(conn: Connection) -> None:
            if isinstance(self._mark_of(conn, name), str):
                self._drop_database(conn, name)

        run_admin(self._admin_url(), work)

    def create_template(self, key: str, run_id: str) -> URL:
        name = template_name(key, run_id)
        mark = Mark.now(key=key, base=self._base(), state="building", run=run_id)
        run_admin(self._admin_url(), lambda conn: self._replace(conn, name, mark))
        return self.server_url.set(database=name)

    def project_databases(self) -> list[tuple[str, Mark]]:
        base = base_name(self.server_url)
        tests = run_database(base)

        def work(conn: Connection) -> list[tuple[str, Mark]]:
            found = [(n, m) for n, m in self._marked(conn, like_prefix(base)) if tests.fullmatch(n)]
            found += [
                (n, m) for n, m in self._marked(conn, like_prefix(TEMPLATE_PREFIX[:-1])) if m.base == base
            ]
            return found

        return run_admin(self._admin_url(), work)

    def find_template(self, key: str, run_id: str = "") -> tuple[URL, Mark] | None:
        def work(conn: Connection) -> tuple[URL, Mark] | None:
            self._drop_stale(conn, like_prefix(TEMPLATE_PREFIX[:-1]), keep="")  # half-built by dead runs
            picked = templates.pick(self._marked(conn, like_prefix(TEMPLATE_PREFIX + key[:16])), run_id)
            return (self.server_url.set(database=picked[0]), picked[1]) if picked else None

        return run_admin(self._admin_url(), work)

    def _surplus(self, conn: Connection, keep: str, key: str) -> list[str]:
        marked = self._marked(conn, like_prefix(TEMPLATE_PREFIX[:-1]))
        return templates.surplus(marked, self._base(), keep, key)


def marked_pairs(rows: Sequence[tuple[str, str | None]]) -> list[tuple[str, Mark]]:
    """(name, mark text) rows as (name, Mark), leaving out those without a mark of ours."""
    found = []
    for name, text in rows:
        mark = Mark.parse(text)
        if mark is not None:
            found.append((str(name), mark))
    return found
