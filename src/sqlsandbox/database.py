"""The run's test database: created and schema built once, engines for both driver kinds, dropped at the end."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import MetaData, Table, event, func, select
from sqlalchemy.engine import URL, Connection, Engine, create_engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from . import drivers
from .binding import mark_own, real_connect
from .errors import ConfigError, DriverMissingError
from .marks import MARKER_TABLE
from .owner import OwnerLoop

if TYPE_CHECKING:
    from .dialects.base import Provisioner


class TestDatabase:
    """One provisioned database and the engines that reach it."""

    __test__ = False  # not a pytest test class

    def __init__(self, provisioner: Provisioner, url: URL) -> None:
        """Engines for url, a database the provisioner made (and drops)."""
        self.server_url = provisioner.server_url
        self.provisioner = provisioner
        self.url = url
        self.family = drivers.family(url)
        self._sync: Engine | None = None
        self._async: AsyncEngine | None = None
        self._listeners: list[Callable[[Engine], None]] = []
        self.baseline: dict[str, int] = {}
        self.seeded: dict[str, list[dict[str, Any]]] = {}  # the schema build's rows, per table
        self._has_sync: bool | None = None
        self.owner = OwnerLoop()  # started at the first async connection that lives there
        self._no_async: DriverMissingError | None = None
        # the server's ids of every connection this run made to it, so that the run can end those still open
        # (kill_sessions). Kept after their close: a connection closed mid-statement (Ctrl-C) lives on in the
        # server, its locks held, until its statement ends
        self._sessions: set[int] = set()
        self._sessions_mutex = threading.Lock()
        # set once the run has killed its connections (Ctrl-C): closing them must not try to roll back
        self.stopping = False

    def add_engine_setup(self, setup: Callable[[Engine], None]) -> None:
        """Run setup on every engine this database makes (the sandbox's engine events, events.py)."""
        self._listeners.append(setup)
        for engine in (self._sync, self._async.sync_engine if self._async else None):
            if engine is not None:
                setup(engine)

    def _prepare(self, engine: Engine) -> None:
        self.provisioner.prepare_engine(engine)
        for setup in self._listeners:
            setup(engine)
        query = self.provisioner.session_id_query()
        if query is not None:
            event.listen(engine, "connect", lambda dbapi, record: self._record_session(dbapi, query))

    def _record_session(self, dbapi_connection: Any, query: str) -> None:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(query)
            row = cursor.fetchone()
        finally:
            cursor.close()
        with self._sessions_mutex:
            self._sessions.add(int(row[0]))

    def kill_sessions(self) -> int:
        """End, from an admin connection, every connection of this run's to the test database that the server
        still has (a test interrupted mid-transaction or mid-statement, a close that never came): their
        locks would hold the DROP. Returns how many there were."""
        with self._sessions_mutex:
            ids = sorted(self._sessions)
        return self.provisioner.kill_sessions(self.url, ids)

    @property
    def sync_engine(self) -> Engine:
        if self._sync is None:
            # NullPool: the sandbox keeps its own connection open between tests.
            self._sync = mark_own(
                create_engine(
                    drivers.sync_url(self.url), poolclass=NullPool, **self.provisioner.sync_engine_options()
                )
            )
            self._prepare(self._sync)
        return self._sync

    @property
    def async_engine(self) -> AsyncEngine:
        if self._async is None:
            if self._no_async is not None:
                raise self._no_async
            try:
                url = drivers.async_url(self.url)
            except DriverMissingError as exc:
                self._no_async = exc
                raise
            creator = self.provisioner.async_creator(url, self.owner)
            options: dict[str, Any] = {"async_creator": creator} if creator is not None else {}
            self._async = create_async_engine(url, poolclass=NullPool, **options)
            mark_own(self._async.sync_engine)
            self._prepare(self._async.sync_engine)
        return self._async

    @property
    def async_loop_free(self) -> bool:
        """Whether the async connection serves every event loop of the test process (see owner.py)."""
        try:
            driver = self.async_engine.sync_engine.dialect.driver
        except DriverMissingError:
            return False
        return self.provisioner.loop_free(driver)

    def has_sync_driver(self) -> bool:
        if self._has_sync is None:
            try:
                drivers.sync_url(self.url)
                self._has_sync = True
            except Exception:
                self._has_sync = False
        return self._has_sync

    def run(self, fn: Callable[[Connection], Any]) -> Any:
        """Run fn on a connection of its own, in a transaction committed at the end: outside any sandbox,
        even while a test runs (Engine.connect is called past the per-test patch)."""
        if self.has_sync_driver():
            with real_connect(self.sync_engine) as conn, conn.begin():
                return fn(conn)
        return drivers.run_on_any_driver(self.url, fn)

    def upgrade_with_alembic(self, ini: Path) -> None:
        """Build the schema with the project's own migrations: `alembic upgrade head` on the test database.

        env.py gets the test database's URL as sqlalchemy.url (with an async driver if the project's own
        URL names one), and the open connection as config.attributes["connection"] for env.py files
        that use it."""
        try:
            from alembic import command
            from alembic.config import Config
        except ImportError:
            raise DriverMissingError(
                "sqlsandbox_alembic is set, and alembic is not installed.", fix="pip install alembic"
            ) from None
        cfg = Config(str(ini))
        own_url = cfg.get_main_option("sqlalchemy.url") or ""
        wants_async = bool(own_url) and drivers.is_async(make_url(own_url))
        url = drivers.async_url(self.url) if wants_async else drivers.sync_url(self.url)
        cfg.set_main_option("sqlalchemy.url", url.render_as_string(hide_password=False).replace("%", "%%"))
        if wants_async:
            command.upgrade(cfg, "head")
            return
        with real_connect(self.sync_engine) as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            conn.commit()

    def check_models_match_migrations(self, metadatas: Iterable[MetaData]) -> None:
        """Compare the migrated schema with the models, as alembic autogenerate would."""
        from alembic.autogenerate import compare_metadata
        from alembic.migration import MigrationContext

        metas = list(metadatas)

        def diff(conn: Connection) -> list[str]:
            found: list[str] = []
            for metadata in metas:
                # sqlsandbox's own marker table (MariaDB/MySQL) is not the project's schema
                opts = {"include_name": lambda name, kind, _: name != MARKER_TABLE}
                for entry in compare_metadata(MigrationContext.configure(conn, opts=opts), metadata):
                    found.append(repr(entry))
            return found

        differences = self.run(diff)
        if differences:
            listing = "\n  ".join(differences[:20])
            raise ConfigError(
                f"The models and the migrations disagree ({len(differences)} difference(s)):\n  {listing}",
                why="sqlsandbox_check_migrations compares the schema `alembic upgrade head` built with "
                "sqlsandbox_metadata, as `alembic revision --autogenerate` would.",
                fix="write the missing migration (alembic revision --autogenerate), or fix the models.",
            )

    def build_schema(self, metadatas: Iterable[MetaData]) -> None:
        metas = list(metadatas)

        def create(conn: Connection) -> None:
            for metadata in metas:
                metadata.create_all(conn)

        self.run(create)

    def record_baseline(self, metadatas: Iterable[MetaData]) -> None:
        """The row count per table now (seed rows of migrations included), for the end-of-run check, and
        the seeded rows themselves, to put back after a test that committed past its sandbox."""
        tables = _tables(metadatas)

        def read(conn: Connection) -> tuple[dict[str, int], dict[str, list[dict[str, Any]]]]:
            counts = _counts(conn, tables)
            seeded = {t.fullname: _rows(conn, t) for t in tables if 0 < counts[t.fullname] <= SEED_ROWS_KEPT}
            return counts, seeded

        self.baseline, self.seeded = self.run(read)

    def restore_baseline(self, metadatas: Iterable[MetaData]) -> list[str]:
        """Put every table back as the schema build left it: those that gained rows are emptied, seeded ones
        refilled with their seed rows. For a test that committed past its sandbox; returns what changed."""
        tables = _tables(metadatas)

        def work(conn: Connection) -> list[str]:
            counts = _counts(conn, tables)
            # a table seeded with more rows than were copied cannot be put back: the leak check reports it
            changed = [
                t
                for t in tables
                if (t.fullname in self.seeded or not self.baseline.get(t.fullname))
                and (
                    counts[t.fullname] != self.baseline.get(t.fullname, 0)
                    or (t.fullname in self.seeded and not _same_rows(_rows(conn, t), self.seeded[t.fullname]))
                )
            ]
            # the tables that reference a changed one go with it (a seeded parent row cannot be deleted
            # under its children): sorted_tables lists parents first
            for table in tables:
                if table not in changed and any(fk.column.table in changed for fk in table.foreign_keys):
                    changed.append(table)
            changed.sort(key=tables.index)
            for table in reversed(changed):  # children first: foreign keys hold at every step
                conn.execute(table.delete())
            for table in changed:
                if self.seeded.get(table.fullname):
                    conn.execute(table.insert(), self.seeded[table.fullname])
            return [t.fullname for t in changed]

        return list(self.run(work))

    def clean_tables(self, names: list[str]) -> None:
        """Empty these tables and restart their identity sequences (committed-mode clean-up)."""
        self.run(lambda conn: self.provisioner.empty_tables(conn, names))

    def leftovers(self, metadatas: Iterable[MetaData]) -> dict[str, tuple[int, int]]:
        """Tables whose row count differs from the one the schema build left: {table: (before, now)}."""
        tables = _tables(metadatas)
        now = self.run(lambda conn: _counts(conn, tables))
        return {
            table: (self.baseline.get(table, 0), count)
            for table, count in now.items()
            if count != self.baseline.get(table, 0)
        }

    def dispose(self) -> None:
        if self._sync is not None:
            self._sync.dispose()
        # NullPool async engine: nothing pooled to close, and the loops that made connections are gone.
        self._sync = self._async = None
        self.owner.stop()

    def drop(self) -> None:
        self.dispose()
        self.provisioner.drop(self.url)


# tables with more seed rows than this are counted, not copied: they cannot be put back after an escape
SEED_ROWS_KEPT = 10_000


def _tables(metadatas: Iterable[MetaData]) -> list[Table]:
    return [table for metadata in metadatas for table in metadata.sorted_tables]


def _rows(conn: Connection, table: Table) -> list[dict[str, Any]]:
    return [{c.key: row._mapping[c] for c in table.columns} for row in conn.execute(select(table))]


def _same_rows(now: list[dict[str, Any]], then: list[dict[str, Any]]) -> bool:
    return sorted(map(repr, now)) == sorted(map(repr, then))


def _counts(conn: Connection, tables: list[Table]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for table in tables:
        counts[table.fullname] = conn.execute(select(func.count()).select_from(table)).scalar_one()
    return counts
