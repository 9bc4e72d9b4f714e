"""A run: what the tests of one process share (settings, the test database, imported models, bound objects),
and the sandboxes it hands out. It knows nothing of pytest, so a script or another test runner can use it:

    with sqlsandbox.Run(url="postgresql://localhost/app", metadata=[Base]) as run:
        with run.sandbox() as sandbox:
            ...  # rolled back when the block ends

Provisioning flows one way: the run asks the server's provisioner (dialects/) for a test database; finding,
building and cloning the schema template is a step inside that; a TestDatabase comes back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

from sqlalchemy import MetaData

from . import dialects, drivers, embedded, events, templates
from .binding import check_bindable, resolve_bindable
from .blocker import Blocker
from .config import Settings, import_string, load_toml
from .database import TestDatabase
from .embedded import EmbeddedPostgres
from .errors import ConfigError, SandboxError, ServerUnreachableError
from .keeper import RootKeeper
from .mappers import check_mappers
from .sandbox import Sandbox, work_of
from .sandbox import active as active_sandbox


class Run:
    """One process's test database and what its sandboxes share.

    Settings come whole (settings=...) or as keywords (url=..., metadata=[Base], bind=[SessionLocal],
    any field of Settings), or both, the keywords winning."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        worker: str = "",
        rootdir: Path | None = None,
        run_id: str = "",
        cache_dir: Path | None = None,
        **options: Any,
    ) -> None:
        for key in ("metadata", "bind"):  # one object, or any collection of them
            if key in options:
                value = options[key]
                options[key] = tuple(value) if isinstance(value, (list, tuple, set, frozenset)) else (value,)
        try:
            settings = dataclasses.replace(settings or Settings(), **options)
        except TypeError:
            known = ", ".join(field.name for field in dataclasses.fields(Settings))
            raise ConfigError(
                f"Run() got an unknown setting among {', '.join(sorted(options))}.", fix=f"use one of: {known}."
            ) from None
        self.settings = settings
        # part of database names and of marks: letters and digits only
        self.run_id = re.sub(r"[^0-9A-Za-z]", "", run_id) or uuid.uuid4().hex[:8]
        self.rootdir = rootdir
        self.worker = worker
        self.server_url = dialects.parse_url(settings.url)
        self.keeper = RootKeeper()
        self._db: TestDatabase | None = None
        self._failure: SandboxError | None = None
        self.metadatas: list[MetaData] = []
        self.bound: list[Any] = []
        self.leftovers: dict[str, tuple[int, int]] = {}
        self.blocker = Blocker()
        self.finish_error: str | None = None
        self.interrupted = False  # Ctrl-C (or pytest.exit): interrupt() ended this run's connections
        self.killed = 0  # this run's connections still open at the end, ended from an admin connection
        self.removed_stale: list[str] = []
        self.cache_dir = cache_dir  # where SQLite templates are kept (pytest's cache folder)
        self.schema_note = ""  # how the schema came to be, for the report
        self.embedded: EmbeddedPostgres | None = None
        self.kept: dialects.Kept | None = None  # the test database, kept after the run (keep_db)
        self.app_urls_given = False  # app_url() was called: the app may connect in any test

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

    def app_url(self, *, asynchronous: bool = False) -> str:
        """The test database's URL, password included, for engines the app builds itself: an engine made
        on it joins the active sandbox when it connects (binding.py), or connects for real outside one."""
        db = self.database()
        url = drivers.async_url(db.url) if asynchronous else drivers.sync_url(db.url)
        self.app_urls_given = True
        return url.render_as_string(hide_password=False)

    @property
    def where(self) -> str:
        """The server, as the report names it."""
        if self.embedded is not None:
            return self.embedded.describe()
        return dialects.safe_url(self.server_url) if self.settings.url else "embedded SQLite"

    def __enter__(self) -> Run:
        self.database()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.finish()
        if exc_type is not None:
            return  # the block's own error is the one to show
        if self.finish_error is not None:
            raise SandboxError(f"The end-of-run check failed: {self.finish_error}")
        if self.leftovers:
            tables = ", ".join(
                f"{t} ({now} rows, {before} after the schema build)"
                for t, (before, now) in self.leftovers.items()
            )
            raise SandboxError(
                f"Rows outlived their sandboxes: {tables}.",
                why="something committed past the sandbox (a connection not made through it, or a raw "
                "driver commit).",
                fix="open every session and connection through the sandbox or the bound factories.",
            )

    def new_sandbox(self, name: str, *, committed: bool = False, keep_async_root: bool = False) -> Sandbox:
        """An active sandbox with the run's objects bound to it: close() it (or keep it as a seed layer)."""
        box = Sandbox(
            self.database(),
            self.keeper,
            name,
            lock_timeout=self.settings.lock_timeout,
            keep_async_root=keep_async_root,
            metadatas=self.metadatas,
            committed=committed,
        )
        box.activate()
        try:
            for obj in self.bound:
                box.bind(obj)
        except BaseException:
            box.close()
            raise
        return box

    @contextlib.contextmanager
    def sandbox(
        self, name: str = "sandbox", *, committed: bool = False, keep_async_root: bool = False
    ) -> Iterator[Sandbox]:
        """`with run.sandbox() as sandbox:` everything the block writes through it (and through the bound
        factories and engines) is rolled back at the end; a misuse it caught is raised there."""
        box = self.new_sandbox(name, committed=committed, keep_async_root=keep_async_root)
        try:
            with work_of(name):  # tasks and threads the block starts are its own (Sandbox._check_work_is_ours)
                yield box
        finally:
            box.close()

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
        self.bound = [
            resolve_bindable(_imported(spec, "sqlsandbox_bind"), spec if isinstance(spec, str) else "")
            for spec in self.settings.bind
        ]
        for spec, obj in zip(self.settings.bind, self.bound, strict=True):  # told once, at start, not per test
            check_bindable(obj, spec if isinstance(spec, str) else "")
        suffix = f"_{self.run_id}" + (f"_{self.worker}" if self.worker else "")
        name = dialects.naming.test_database_name(self.server_url, suffix)
        provisioner = dialects.provisioner_for(self.server_url, self.cache_dir)
        self.removed_stale = provisioner.removed_stale
        ini = _alembic_ini(self.settings.alembic, self.rootdir) if self.settings.alembic else None
        project = project_name(self.rootdir)
        source = templates.SchemaSource(self.metadatas, ini, self.settings.check_migrations, project)
        done = provisioner.test_database(
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
            setup = provisioner.setup_for(self.settings)
            if setup is not None:
                db.add_engine_setup(setup)
            db.add_engine_setup(events.install)
            db.add_engine_setup(self.blocker.own)
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

    def interrupt(self) -> None:
        """Ctrl-C: end this run's connections now, from an admin connection, before anything tries to
        close them. The interrupted test's may be mid-transaction holding locks (MariaDB: the metadata
        locks the DROP at finish() would wait for), or mid-statement, its reply half read (a ROLLBACK sent
        on it would wait for the rest). The server rolls each back; closing them afterwards sends nothing."""
        self.interrupted = True
        if self._db is None:
            return
        self._db.owner.interrupted()
        box = active_sandbox()
        if box is not None:
            box.interrupted()
        self._db.stopping = self.keeper.dead = True
        try:
            self.killed += self._db.kill_sessions()
        except Exception as exc:  # finish() tries again, and says why if it cannot drop
            self.finish_error = f"could not end this run's connections: {_one_line(exc)}"

    def finish(self) -> None:
        """Close this run's connections, check for rows that outlived their sandboxes (not after Ctrl-C), and
        drop the test database: in that order, so the DROP never waits behind a connection of our own."""
        if self._db is None:
            return
        db = self._db
        try:
            box = active_sandbox()
            if box is not None and box.db is db and not box.closed:
                with contextlib.suppress(Exception):  # its fixture's teardown never ran: no test to fail
                    box.close()
            self.keeper.close()
            if self.metadatas and not self.interrupted:
                self.leftovers = db.leftovers(self.metadatas)
        except Exception as exc:  # the end-of-run check must not hide the run's own report
            self.finish_error = f"{type(exc).__name__}: {exc}"
        finally:
            try:
                # any connection of ours still open (a close that never came) would hold the DROP
                try:
                    self.killed += db.kill_sessions()
                except Exception as exc:  # the drop (or the keep) is tried all the same
                    self.finish_error = f"could not end this run's connections: {_one_line(exc)}"
                if not self.settings.keep_db:
                    db.drop()
                else:  # marked as kept, so no later run (of any project) takes it for a killed run's
                    db.dispose()
                    self.kept = db.provisioner.keep(db.url)
            except Exception as exc:  # one line in the report, never a traceback over pytest's own
                self.finish_error = (
                    f"could not drop the test database {self.database_name}: {_one_line(exc)} "
                    "(the next run on this host removes it)"
                )
            finally:
                if self.embedded is not None:
                    self.embedded.stop()


def _one_line(exc: BaseException) -> str:
    """A driver error's own message, first line: SQLAlchemy's adds the statement and a link."""
    orig = getattr(exc, "orig", None) or exc
    lines = str(orig).strip().splitlines()
    return f"{type(orig).__name__}: {lines[0] if lines else ''}"


def project_name(rootdir: Path | None) -> str:
    """The project a template belongs to: pyproject's [project] name, else the root folder's name."""
    if rootdir is None:
        return ""
    try:
        name = load_toml(rootdir / "pyproject.toml")["project"]["name"]
        return str(name)
    except Exception:  # no pyproject, no [project] table, a file pytest reads but we cannot: the folder
        return rootdir.name


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


def _imported(spec: Any, setting: str) -> Any:
    """A 'package.module:attr' spec imported; an object given as itself, as is."""
    return import_string(spec, setting) if isinstance(spec, str) else spec


def _as_metadata(spec: Any) -> MetaData:
    obj = _imported(spec, "sqlsandbox_metadata")
    metadata = obj if isinstance(obj, MetaData) else getattr(obj, "metadata", None)
    if not isinstance(metadata, MetaData):
        raise ConfigError(
            f"sqlsandbox_metadata entry {spec!r} is a {type(obj).__name__}, not a MetaData.",
            fix="name a MetaData object or a declarative base class (whose .metadata is used).",
        )
    return metadata
