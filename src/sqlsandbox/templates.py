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
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from sqlalchemy import MetaData, create_mock_engine
from sqlalchemy.engine import URL

from . import drivers
from .errors import ConfigError, ServerUnreachableError
from .marks import MARK, Mark, user_tag

FORMAT = "1"  # bump when the way templates are built changes: old ones are then never reused
LOCK_TIMEOUT = 600.0


@dataclass
class SchemaSource:
    """What builds the schema: the models, and the project's migrations if it has them."""

    metadatas: list[MetaData]
    alembic_ini: Path | None = None
    check_migrations: bool = False
    # The project's name (pyproject's, else its folder's) is part of the key: two projects with the same (or
    # no) schema on one server never clone each other's template. Which templates are kept is still decided
    # per database name (KEEP).
    project: str = ""

    def key(self, url: URL) -> str:
        from . import __version__ as version

        digest = hashlib.sha256()
        digest.update(f"sqlsandbox-template {FORMAT} {version} {drivers.family(url)}\n".encode())
        digest.update(f"project {self.project}\n".encode())
        for statement in _ddl(url, self.metadatas):
            digest.update(statement.encode() + b"\n")
        if self.alembic_ini is not None:
            digest.update(f"alembic check={self.check_migrations}\n".encode())
            for path in _migration_files(self.alembic_ini):
                digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
        return digest.hexdigest()


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


KEEP = 16  # per database name: suites or branches sharing one server and name take turns without rebuilds


def pick(marked: Sequence[tuple[str, Mark]], run_id: str) -> tuple[str, Mark] | None:
    """The template to clone (or the word that it cannot be): the one this run built (xdist workers,
    --sqlsandbox-rebuild), else the newest."""
    kept = [(name, mark) for name, mark in marked if mark.is_kept_template]
    if not kept:
        return None
    return max(kept, key=lambda item: (item[1].run == run_id, item[1].at))


def surplus(marked: Sequence[tuple[str, Mark]], base: str, keep: str, key: str) -> list[str]:
    """Templates to drop once `keep` (of key) is built: older ones of the same key, and this project's
    beyond the newest KEEP."""
    kept = [(name, mark) for name, mark in marked if name != keep and mark.is_kept_template]
    same_key = [name for name, mark in kept if mark.key == key[:16]]
    ours = [(name, mark) for name, mark in kept if mark.base == base and name not in same_key]
    ours.sort(key=lambda item: -item[1].at)
    return same_key + [name for name, _ in ours[KEEP - 1 :]]


def lock_path(url: URL, key: str) -> Path:
    where = url._replace(database=None).render_as_string(hide_password=True)
    folder = Path(tempfile.gettempdir(), f"{MARK}-locks-{user_tag()}")
    folder.mkdir(exist_ok=True)
    return folder / f"{hashlib.sha256(where.encode()).hexdigest()[:12]}-{key[:16]}.lock"


@contextlib.contextmanager
def build_lock(url: URL, key: str) -> Iterator[None]:
    """Held while a template for key is looked for, built and cloned: the runs and xdist workers of this
    machine that need the same template let the first of them build it."""
    lock = FileLock(str(lock_path(url, key)), timeout=LOCK_TIMEOUT)
    try:
        lock.acquire()
    except Timeout:
        raise ServerUnreachableError(
            f"Waited {LOCK_TIMEOUT:.0f} s for another run on this machine to build the schema template "
            f"(lock file {lock.lock_file}).",
            why="runs and xdist workers that need the same template let the first of them build it.",
            fix="if no other pytest run is building it, delete the lock file and run again.",
        ) from None
    try:
        yield
    finally:
        lock.release()
