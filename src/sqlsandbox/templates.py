"""The built schema, kept as a template between runs and cloned for every run and xdist worker.

A template is found again by a key: a hash of everything that builds the schema (the DDL the models
compile to on this dialect, the alembic.ini and every file of its migration scripts, and sqlsandbox's own
version). Change a model or a migration and the key changes, so the next run builds a new template;
`--sqlsandbox-rebuild` builds one regardless. A file lock makes the workers of one machine build it once.
"""

from __future__ import annotations

import configparser
import contextlib
import hashlib
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from sqlalchemy import MetaData, create_mock_engine
from sqlalchemy.engine import URL

from . import drivers, provision
from .database import TestDatabase
from .errors import ConfigError, ServerUnreachableError

FORMAT = "1"  # bump when the way templates are built changes: old ones are then never reused
LOCK_TIMEOUT = 600.0


@dataclass
class SchemaSource:
    """What builds the schema: the models, and the project's migrations if it has them."""

    metadatas: list[MetaData]
    alembic_ini: Path | None = None
    check_migrations: bool = False

    def key(self, url: URL) -> str:
        from . import __version__ as version

        digest = hashlib.sha256()
        digest.update(f"sqlsandbox-template {FORMAT} {version} {drivers.family(url)}\n".encode())
        for statement in _ddl(url, self.metadatas):
            digest.update(statement.encode() + b"\n")
        if self.alembic_ini is not None:
            digest.update(f"alembic check={self.check_migrations}\n".encode())
            for path in _migration_files(self.alembic_ini):
                digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
        return digest.hexdigest()


@dataclass
class Provisioned:
    db: TestDatabase
    template: str  # the template's database (or file) name
    built: bool  # this run built it
    seconds: float  # time to build it, or to find and clone it
    uncopyable: bool = False  # built in the test database: the schema has what templates cannot copy


def _ddl(url: URL, metadatas: Iterable[MetaData]) -> list[str]:
    """The DDL create_all would emit on this dialect (tables, indexes, types, sequences), not run."""
    statements: list[str] = []
    engine: Any = None

    def collect(sql: Any, *multiparams: Any, **params: Any) -> None:
        statements.append(str(sql.compile(dialect=engine.dialect)).strip())

    sync = url.set(drivername=url.get_backend_name())  # the dialect's default driver: compiles alike
    engine = create_mock_engine(sync, collect)
    for metadata in metadatas:
        metadata.create_all(engine, checkfirst=False)
    # SQLAlchemy emits a table's CREATE INDEX statements in set order, which changes between processes
    # (string hashing is randomised): sorted, the same schema hashes the same (column order still counts).
    return sorted(statements)


def _script_dir(ini: Path) -> Path:
    """The migration scripts' folder, read from alembic.ini as alembic reads it. A plain path is read
    with configparser (importing alembic costs ~0.2 s of every warm start); anything else asks alembic."""
    parser = configparser.ConfigParser(defaults={"here": str(ini.resolve().parent)})
    with contextlib.suppress(configparser.Error, OSError):
        parser.read(ini)
        location = parser.get("alembic", "script_location", fallback="")
        if location and ":" not in location.replace(":\\", "").replace(":/", ""):  # not package:path
            return Path(location).resolve()  # relative to the working directory, as alembic does
    try:
        from alembic.config import Config
        from alembic.script import ScriptDirectory

        return Path(ScriptDirectory.from_config(Config(str(ini))).dir)
    except Exception as exc:
        raise ConfigError(
            f"sqlsandbox_alembic names {str(ini)!r}, whose migration scripts could not be found ({exc}).",
            fix="check script_location in that alembic.ini (and that alembic is installed).",
        ) from None


def _migration_files(ini: Path) -> list[Path]:
    """alembic.ini and every file of its script_location (env.py, script.py.mako, versions/...)."""
    script_dir = _script_dir(ini)
    files = [
        path
        for path in sorted(script_dir.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo")
    ]
    return [ini, *files]


def lock_path(url: URL, key: str) -> Path:
    where = hashlib.sha256(provision.safe_url(url._replace(database=None)).encode()).hexdigest()[:12]
    folder = Path(tempfile.gettempdir(), f"{provision.MARK}-locks-{provision.user_tag()}")
    folder.mkdir(exist_ok=True)
    return folder / f"{where}-{key[:16]}.lock"


def provision_database(
    provisioner: provision.Provisioner,
    name: str,
    source: SchemaSource,
    build: Callable[[TestDatabase], None],
    *,
    run_id: str,
    rebuild: bool = False,
) -> Provisioned:
    """The run's test database, cloned from the template for source (built first if there is none).

    build(db) builds the schema in an empty database. With rebuild, a template built by an earlier run
    is not used (workers of this run share the one the first of them builds)."""
    started = time.perf_counter()
    key = source.key(provisioner.server_url)
    lock = FileLock(str(lock_path(provisioner.server_url, key)), timeout=LOCK_TIMEOUT)
    try:
        with lock:
            for _ in range(3):
                found = provisioner.find_template(key, run_id)
                built = False
                if found is None or (rebuild and provision.template_run(found[1]) != run_id):
                    template = _build_template(provisioner, key, run_id, build)
                    built = True
                elif provision.template_is_uncopyable(found[1]):
                    template = None  # an earlier run found it cannot be copied: not built twice
                else:
                    template = found[0]
                if template is None:
                    break  # built below, outside the lock: every worker builds its own, all at once
                try:
                    db = TestDatabase.create(provisioner, name, template)
                except provision.TemplateGone:
                    continue  # another run replaced it between our look and our copy: look again
                label = Path(str(template.database)).name
                return Provisioned(db, label, built, time.perf_counter() - started)
            else:
                raise ServerUnreachableError(
                    f"The schema template on {provision.safe_url(provisioner.server_url)} was dropped three "
                    "times while this run was copying it.",
                    why="another run sharing the server and database name replaced it each time "
                    "(see KEEP_TEMPLATES).",
                    fix="run again, or give the concurrent suites different database names in sqlsandbox_url.",
                )
    except Timeout:
        raise ServerUnreachableError(
            f"Waited {LOCK_TIMEOUT:.0f} s for another run on this machine to build the schema template "
            f"(lock file {lock.lock_file}).",
            why="runs and xdist workers that need the same template let the first of them build it.",
            fix="if no other pytest run is building it, delete the lock file and run again.",
        ) from None
    # the schema has what a template cannot copy (MariaDB/MySQL views, triggers, routines)
    db = TestDatabase.create(provisioner, name)
    _build_or_drop(db, build)
    return Provisioned(db, "", True, time.perf_counter() - started, uncopyable=True)


def _build_template(
    provisioner: provision.Provisioner, key: str, run_id: str, build: Callable[[TestDatabase], None]
) -> URL | None:
    template = provisioner.create_template(key, run_id)
    db = TestDatabase(provisioner, template)
    _build_or_drop(db, build)
    db.dispose()  # nothing may stay connected to a template that is about to be cloned
    if not provisioner.can_copy(template):
        provisioner.mark_uncopyable(template, key, run_id)
        return None
    return provisioner.seal_template(template, key, run_id)


def _build_or_drop(db: TestDatabase, build: Callable[[TestDatabase], None]) -> None:
    try:
        build(db)
    except BaseException:
        db.drop()
        raise
