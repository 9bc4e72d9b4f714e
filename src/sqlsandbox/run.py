"""What one pytest run shares: settings, the test database, imported models and bound objects."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import MetaData, event
from sqlalchemy.engine import Connection, Engine

from . import embedded, provision, sandbox, templates
from .blocker import Blocker
from .config import Settings, import_string
from .database import TestDatabase
from .embedded import EmbeddedPostgres
from .errors import ConfigError, SandboxError, ServerUnreachableError
from .mappers import check_mappers


class Run:
    def __init__(
        self,
        settings: Settings,
        worker: str = "",
        rootdir: Path | None = None,
        run_id: str = "",
        cache_dir: Path | None = None,
    ) -> None:
        self.settings = settings
        self.run_id = run_id or uuid.uuid4().hex[:8]
        self.rootdir = rootdir
        self.worker = worker
        self.server_url = provision.parse_url(settings.url)
        self.keeper = sandbox.RootKeeper()
        self._db: TestDatabase | None = None
        self._failure: SandboxError | None = None
        self.metadatas: list[MetaData] = []
        self.bound: list[Any] = []
        self.tests_with_db = 0
        self.statements = 0
        self.problems = 0
        # per test: (nodeid, statements, sandbox set-up + tear-down seconds), for the report
        self.per_test: list[tuple[str, int, float]] = []
        self.leftovers: dict[str, tuple[int, int]] = {}
        self.blocker = Blocker()
        self.finish_error: str | None = None
        self.removed_stale: list[str] = []
        self.cache_dir = cache_dir  # where SQLite templates are kept (pytest's cache folder)
        self.schema_note = ""  # how the schema came to be, for the report
        self.embedded: EmbeddedPostgres | None = None

    @property
    def database_name(self) -> str:
        return Path(str(self._db.url.database)).name if self._db is not None else ""

    @property
    def started(self) -> bool:
        return self._db is not None

    def database(self) -> TestDatabase:
        """Provision on first use; a failure is kept and re-raised, so it is explained once per test
        without retrying a dead server for every test."""
        if self._failure is not None:
            raise self._failure
        if self._db is None:
            test, self.blocker.current_test = self.blocker.current_test, None  # our own admin work
            try:
                self._db = self._start()
            except SandboxError as exc:
                self._failure = exc
                raise
            except (OSError, subprocess.SubprocessError) as exc:  # temp folders, server tools
                self._failure = ServerUnreachableError(
                    f"sqlsandbox could not prepare the test database: {type(exc).__name__}: {exc}",
                    fix="check that the temp folder (TMPDIR) is writable by this user and that the tools "
                    "named above can run.",
                )
                raise self._failure from exc
            finally:
                self.blocker.current_test = test
        return self._db

    @property
    def where(self) -> str:
        """The server, as the report names it."""
        if self.embedded is not None:
            return self.embedded.describe()
        return provision.safe_url(self.server_url) if self.settings.url else "embedded SQLite"

    def _start(self) -> TestDatabase:
        if not embedded.is_embedded(self.server_url):
            return self._provision()
        requested, self.embedded = self.server_url, EmbeddedPostgres.start(self.server_url)
        self.server_url = self.embedded.url
        try:
            db = self._provision()
        except BaseException:
            self.embedded.stop()
            self.server_url, self.embedded = requested, None  # a retry starts from what was asked for
            raise
        self.removed_stale += self.embedded.removed_stale
        return db

    def _provision(self) -> TestDatabase:
        self.metadatas = [_as_metadata(spec) for spec in self.settings.metadata]
        check_mappers(self.rootdir)
        self.bound = [import_string(spec, "sqlsandbox_bind") for spec in self.settings.bind]
        suffix = f"_{self.run_id}" + (f"_{self.worker}" if self.worker else "")
        name = provision.test_database_name(self.server_url, suffix)
        provisioner = provision.provisioner_for(self.server_url)
        if isinstance(provisioner, provision.SQLiteProvisioner):
            provisioner.cache_dir = self.cache_dir
        self.removed_stale = provisioner.removed_stale
        ini = _alembic_ini(self.settings.alembic, self.rootdir) if self.settings.alembic else None
        source = templates.SchemaSource(self.metadatas, ini, self.settings.check_migrations)
        done = templates.provision_database(
            provisioner,
            name,
            source,
            lambda db: self._build_schema(db, source),
            run_id=self.run_id,
            rebuild=self.settings.rebuild,
        )
        db = done.db
        self.blocker.allow_database(str(db.url.database))
        self.schema_note = (
            f"schema built in {done.seconds:.2f} s, for every run: it has views, triggers or routines, "
            "which a MariaDB/MySQL template cannot copy"
            if done.uncopyable
            else f"schema built in {done.seconds:.2f} s and kept as template {done.template} for the next runs"
            if done.built
            else f"schema cloned from template {done.template} in {done.seconds:.2f} s "
            "(models and migrations unchanged; --sqlsandbox-rebuild builds it afresh)"
        )
        try:
            db.record_baseline(self.metadatas)
            db.add_engine_setup(_install_guards)
        except BaseException:
            db.drop()
            raise
        return db

    def _build_schema(self, db: TestDatabase, source: templates.SchemaSource) -> None:
        if source.alembic_ini is not None:
            db.upgrade_with_alembic(source.alembic_ini)
            if source.check_migrations:
                db.check_models_match_migrations(self.metadatas)
        db.build_schema(self.metadatas)

    def finish(self) -> None:
        if self._db is None:
            return
        try:
            self.keeper.close()
            if self.metadatas:
                self.leftovers = self._db.leftovers(self.metadatas)
        except Exception as exc:  # the end-of-run check must not hide the run's own report
            self.finish_error = f"{type(exc).__name__}: {exc}"
        finally:
            try:
                if not os.environ.get("SQLSANDBOX_KEEP_DB"):
                    self._db.drop()
                else:
                    self._db.dispose()
            finally:
                if self.embedded is not None:
                    self.embedded.stop()


def _alembic_ini(path: str, rootdir: Path | None) -> Path:
    ini = Path(path)
    if not ini.is_absolute() and rootdir is not None:
        ini = rootdir / ini
    if not ini.is_file():
        raise ConfigError(
            f"sqlsandbox_alembic names {str(ini)!r}, which is not a file.",
            fix="point it at your alembic.ini (relative paths start at pytest's rootdir).",
        )
    return ini


def _as_metadata(spec: str) -> MetaData:
    obj = import_string(spec, "sqlsandbox_metadata")
    metadata = obj if isinstance(obj, MetaData) else getattr(obj, "metadata", None)
    if not isinstance(metadata, MetaData):
        raise ConfigError(
            f"sqlsandbox_metadata entry {spec!r} is a {type(obj).__name__}, not a MetaData.",
            fix="name a MetaData object or a declarative base class (whose .metadata is used).",
        )
    return metadata


def _install_guards(engine: Engine) -> None:
    event.listen(engine, "before_cursor_execute", _before_cursor_execute, retval=True)
    event.listen(engine, "after_cursor_execute", _after_cursor_execute)
    event.listen(engine, "handle_error", _handle_error)
    event.listen(engine, "commit", _on_commit)
    event.listen(engine, "rollback", _on_rollback)


def _before_cursor_execute(
    conn: Connection, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
) -> tuple[str, Any]:
    current = sandbox.active()
    if current is not None:
        current.before_statement(conn, statement, context)
        if current._faults_armed:
            return current.rewrite_statement(conn, cursor, statement, parameters, context)
    return statement, parameters


def _after_cursor_execute(
    conn: Connection, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
) -> None:
    current = sandbox.active()
    if current is not None:
        current.after_statement(conn, statement, parameters, context, many)


def _handle_error(context: Any) -> None:
    current = sandbox.active()
    if current is not None:
        current.statement_failed(context.connection, context.execution_context)


def _on_commit(conn: Connection) -> None:
    current = sandbox.active()
    if current is not None:
        current.outer_ended(conn, "committed")


def _on_rollback(conn: Connection) -> None:
    current = sandbox.active()
    if current is not None:
        current.outer_ended(conn, "rolled back")
