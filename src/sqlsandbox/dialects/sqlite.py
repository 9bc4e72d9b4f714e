"""SQLite: a file in a private temp dir, shared by the sync and async drivers, never the app's own file.
Its mark is a marker file beside it; templates are files in the project's cache folder, cloned by copying."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shlex
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote

from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Dialect, Engine

from .. import templates
from ..drivers import Driver
from ..marks import MARK, MARKER_TABLE, Mark, host, user_tag
from ..sqltext import LEADING_COMMENTS
from .base import TOUCH_EVERY, DriverConnect, Kept, Provisioner, Target, TemplateGone
from .naming import base_name, run_database

if TYPE_CHECKING:
    from ..config import Settings


def _host_hash(where: str) -> str:
    """Names template builds by host, where a host name may not be part of a file name."""
    return hashlib.sha256(where.encode()).hexdigest()[:8]


def _read_mark(path: Path) -> Mark | None:
    try:
        return Mark.parse(path.read_text())
    except OSError:
        return None


# `PRAGMA name = value` and `PRAGMA name(value)` set a connection's setting, which outlives any transaction;
# the same parenthesised form of these only reads
_PRAGMA = re.compile(LEADING_COMMENTS + r"PRAGMA\s+(?:\w+\.)?(\w+)\s*(=|\()", re.I | re.S)
_QUERY_PRAGMAS = frozenset(
    [
        "table_info",
        "table_xinfo",
        "table_list",
        "index_list",
        "index_info",
        "index_xinfo",
        "foreign_key_list",
        "foreign_key_check",
        "integrity_check",
        "quick_check",
        "optimize",
        "wal_checkpoint",
        "incremental_vacuum",
    ]
)


def _write_mark(path: Path, mark: Mark) -> None:
    """Replace a mark file whole: a reader sees the old mark or the new, never half of one."""
    part = path.with_name(f"{path.name}.{os.getpid()}.part")
    part.write_text(str(mark))
    os.replace(part, path)


class SQLiteProvisioner(Provisioner):
    family = "sqlite"
    dialect_names = ("sqlite",)
    sync_drivers = (Driver("pysqlite", "sqlite3", "(part of Python)"),)
    async_drivers = (Driver("aiosqlite", "aiosqlite", "aiosqlite"),)

    def _templates(self, create: bool = True) -> Path:
        folder = self.cache_dir or Path(tempfile.gettempdir(), f"{MARK}-templates-{user_tag()}")
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        return folder

    def create(self, name: str, template: URL | None = None) -> URL:
        for marker in Path(tempfile.gettempdir()).glob(f"{MARK}-*/{MARKER_TABLE}"):
            mark = _read_mark(marker)
            if mark is not None and mark.is_stale:
                shutil.rmtree(marker.parent, ignore_errors=True)
                self.removed_stale.append(str(marker.parent))
        folder = tempfile.mkdtemp(prefix=f"{MARK}-")
        Path(folder, MARKER_TABLE).write_text(str(Mark.now()))
        path = Path(folder, f"{name}.db")
        if template is not None:
            try:
                shutil.copyfile(str(template.database), path)
            except FileNotFoundError:
                shutil.rmtree(folder, ignore_errors=True)
                raise TemplateGone(str(template.database)) from None
            self._touch(Path(str(template.database)).with_suffix(".mark"))
        return self.server_url.set(database=str(path))

    @staticmethod
    def _touch(marker: Path) -> None:
        """Record that a run cloned the template now (see ServerProvisioner._touch). The mark is replaced
        whole (a reader never sees half of one); a failure only leaves the older time."""
        mark = _read_mark(marker)
        if mark is None or not mark.is_ready or time.time() - mark.at < TOUCH_EVERY:
            return
        with contextlib.suppress(OSError):
            _write_mark(marker, mark.with_time(time.time()))

    def keep(self, test_url: URL) -> Kept:
        folder = Path(str(test_url.database)).parent
        marker = Path(folder, MARKER_TABLE)
        mark = _read_mark(marker)
        if mark is not None:
            _write_mark(marker, mark.kept())
        return Kept(str(folder), shlex.join(["rm", "-r", str(folder)]))

    def drop_command(self, name: str) -> str:
        return shlex.join(["rm", "-r", name])

    def drop(self, test_url: URL) -> None:
        folder = Path(str(test_url.database)).parent
        if Path(folder, MARKER_TABLE).exists():
            shutil.rmtree(folder, ignore_errors=True)
        elif folder == self._templates():  # a template that failed to build
            Path(str(test_url.database)).unlink(missing_ok=True)

    def project_databases(self) -> list[tuple[str, Mark]]:
        """The private temp dirs of this project's test databases, and template files whose build was
        cut short (named <key>.building-<host hash>-<pid>.db, or <key>.building-<pid>.db by earlier
        versions), each with a mark made up from its name, so they are judged as server databases are.
        Files cannot say who has them open, so their time is that of their last write, not their making."""
        tests = run_database(base_name(self.server_url))
        found = []
        for marker in Path(tempfile.gettempdir()).glob(f"{MARK}-*/{MARKER_TABLE}"):
            with contextlib.suppress(OSError):
                files = [f for f in marker.parent.iterdir() if tests.fullmatch(f.name.partition(".")[0])]
                mark = _read_mark(marker)
                if files and mark is not None:
                    written = max(f.stat().st_mtime for f in files)
                    found.append((str(marker.parent), mark.with_time(max(mark.at, written))))
        here = _host_hash(host())
        folder = self._templates(create=False)
        for marker in folder.glob("*.mark") if folder.is_dir() else ():  # built templates: <key>.db
            mark = _read_mark(marker)
            if mark is not None and mark.is_kept_template and mark.base == base_name(self.server_url):
                found.append((str(marker.with_suffix(".db")), mark))
        for left in folder.glob("*.building-*.db") if folder.is_dir() else ():
            parts = left.stem.rpartition(".building-")[2].split("-")
            if not parts[-1].isdigit():
                continue
            where = (host() if parts[0] == here else f"host-{parts[0]}") if len(parts) == 2 else "unknown"
            with contextlib.suppress(OSError):
                found.append((str(left), Mark(int(parts[-1]), where, float(int(left.stat().st_mtime)))))
        return found

    def drop_if_unused(self, name: str, mark: Mark) -> str:
        path = Path(name)
        marker = path.with_suffix(".mark")
        if path.suffix == ".db" and marker.exists():  # a built template
            if _read_mark(marker) != mark:
                return "its mark changed since it was judged (a run cloned it meanwhile)"
            # the mark first: a run that looks now builds afresh; one copying it already keeps its open file
            marker.unlink(missing_ok=True)
            path.unlink(missing_ok=True)
            return "it could not be removed entirely" if path.exists() else ""
        if not path.exists():
            return ""
        if path.is_dir():
            marker = Path(path, MARKER_TABLE)
            if not marker.exists():
                return "it no longer carries our mark"
            now = _read_mark(marker)
            if now is None or (now.pid, now.host) != (mark.pid, mark.host):  # its time is the last write
                return "its mark changed since it was judged"
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        return "it could not be removed entirely" if path.exists() else ""

    def find_template(self, key: str, run_id: str = "") -> tuple[URL, Mark] | None:
        path = self._templates() / f"{key[:16]}.db"
        mark = _read_mark(self._templates() / f"{key[:16]}.mark")
        if mark is None or not path.exists() or not mark.is_ready:
            return None
        return self.server_url.set(database=str(path)), mark

    def create_template(self, key: str, run_id: str) -> URL:
        # builds of killed runs on this host: a project folder mounted into containers is seen by others
        here = _host_hash(host())
        for left in self._templates().glob(f"*.building-{here}-*.db"):
            pid = left.stem.rpartition("-")[2]
            if pid.isdigit() and Mark(int(pid), host(), 0).is_stale:
                left.unlink(missing_ok=True)
        path = self._templates() / f"{key[:16]}.building-{here}-{os.getpid()}.db"
        path.unlink(missing_ok=True)
        return self.server_url.set(database=str(path))

    def seal_template(self, template: URL, key: str, run_id: str) -> URL:
        folder = self._templates()
        # The file first, then its mark: a reader that sees a ready mark finds the finished file.
        os.replace(str(template.database), folder / f"{key[:16]}.db")
        mark = Mark.now(key=key, base=self._base(), state="ready", run=run_id)
        _write_mark(folder / f"{key[:16]}.mark", mark)
        marked = []
        for other in folder.glob("*.mark"):
            found = _read_mark(other)
            if found is not None:
                marked.append((other.stem, found))
        for stem in templates.surplus(marked, self._base(), key[:16], key):
            (folder / f"{stem}.mark").unlink(missing_ok=True)
            (folder / f"{stem}.db").unlink(missing_ok=True)
        return self.server_url.set(database=str(folder / f"{key[:16]}.db"))

    # ---- quirks ---------------------------------------------------------------------------------------
    @classmethod
    def prepare_engine(cls, engine: Engine) -> None:
        """SQLAlchemy's documented recipe: let SQLAlchemy, not pysqlite, emit BEGIN, so SAVEPOINTs nest
        inside a real transaction and a released savepoint does not survive the outer rollback."""

        @event.listens_for(engine, "connect")
        def _connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            # The sandbox's own connection is the only one in use: it takes the write lock up front.
            # Other connections (committed mode) begin as the app's would, deferred.
            conn.exec_driver_sql("BEGIN IMMEDIATE" if getattr(conn, "_sqlsandbox_root", False) else "BEGIN")

    @classmethod
    def setup_for(cls, settings: Settings) -> Callable[[Engine], None] | None:
        if settings.sqlite_foreign_keys:
            return None  # prepare_engine turns them on

        def foreign_keys_off(engine: Engine) -> None:
            @event.listens_for(engine, "connect")
            def _connect(dbapi_connection: Any, _record: Any) -> None:
                cursor = dbapi_connection.cursor()
                cursor.execute("PRAGMA foreign_keys=OFF")
                cursor.close()

        return foreign_keys_off

    @classmethod
    def loop_free(cls, async_driver: str) -> bool:
        # aiosqlite runs each connection in a thread of its own and answers on the caller's loop
        return async_driver == "aiosqlite"

    @classmethod
    def sync_engine_options(cls) -> dict[str, Any]:
        # The sandbox's one connection serves every thread of the test (worker threads, TestClient, FastAPI's
        # `def` routes), one statement at a time (units.py); pysqlite would refuse it outside its own thread.
        return {"connect_args": {"check_same_thread": False}}

    @classmethod
    def empty_tables(cls, conn: Connection, names: list[str]) -> None:
        quote = conn.dialect.identifier_preparer.quote
        conn.exec_driver_sql("PRAGMA defer_foreign_keys=ON")
        for name in names:
            conn.exec_driver_sql(f"DELETE FROM {quote(name)}")
        if conn.exec_driver_sql("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'").first():
            for name in names:
                conn.exec_driver_sql("DELETE FROM sqlite_sequence WHERE name = ?", (name,))

    @classmethod
    def driver_connects(cls) -> tuple[DriverConnect, ...]:
        # sqlite3.connect is a builtin, re-exported: both names are wrapped. aiosqlite calls sqlite3.connect
        # by name in its thread, so it is covered too. sqlite3.Connection(...) itself cannot be wrapped.
        return (
            DriverConnect("sqlite3", "connect", _sqlite3_target),
            DriverConnect("sqlite3.dbapi2", "connect", _sqlite3_target),
        )

    @classmethod
    def is_scratch(cls, database: str) -> bool:
        return database == ""

    @classmethod
    def database_of(cls, cargs: tuple[Any, ...], cparams: dict[str, Any]) -> str:
        return sqlite_file(cargs[0] if cargs else cparams.get("database", ""), bool(cparams.get("uri")))

    @classmethod
    def describe_target(cls, dialect: Dialect, cargs: tuple[Any, ...], cparams: dict[str, Any]) -> str:
        return f"sqlite:///{cls.database_of(cargs, cparams)}"

    @classmethod
    def in_transaction(cls, driver_connection: Any) -> bool | None:
        return bool(driver_connection.in_transaction)  # sqlite3 and aiosqlite alike

    @classmethod
    def changes_session(cls, statement: str) -> bool:
        found = _PRAGMA.match(statement)
        return found is not None and (found.group(2) == "=" or found.group(1).lower() not in _QUERY_PRAGMAS)

    @classmethod
    def ends_transaction(cls, statement: str) -> str | None:
        # sqlite3 runs one statement per execute (it refuses more): only the first one counts, and a
        # trigger's BEGIN ... END body is not split into statements
        return statement if cls._ends(statement) else None


def sqlite_file(database: object, uri: bool) -> str:
    """The file a sqlite3.connect() database argument opens; "" for a private in-memory (":memory:",
    "file:...?mode=memory") or temporary ("") database, which nothing else can see."""
    name = os.fsdecode(database) if isinstance(database, (str, bytes, os.PathLike)) else str(database)
    if uri and name.startswith("file:"):
        path, _, query = name[len("file:") :].partition("#")[0].partition("?")
        if parse_qs(query).get("mode") == ["memory"]:
            return ""
        if path.startswith("//"):  # file://host/path: only an empty host or localhost is allowed
            path = "/" + path[2:].partition("/")[2]
        name = unquote(path)
    return "" if name in ("", ":memory:") else name


def _sqlite3_target(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Target | None:
    # sqlite3.connect(database, timeout, detect_types, isolation_level, check_same_thread, factory,
    # cached_statements, uri, ...)
    database = args[0] if args else kwargs.get("database", "")
    name = sqlite_file(database, bool(args[7] if len(args) > 7 else kwargs.get("uri")))
    return (name, f"sqlite:///{name}") if name else None
