"""What every strategy plugin shares: the database named by the BENCH_* environment, engines, admin work.

Environment (set by benchmarks/run.py for each pytest subprocess):
    BENCH_FAMILY        postgresql | mysql | sqlite
    BENCH_SERVER        server URL without database (postgresql://postgres@127.0.0.1:5432), or the SQLite dir
    BENCH_SYNC_DRIVER   psycopg | pymysql | pysqlite
    BENCH_ASYNC_DRIVER  asyncpg | psycopg_async | asyncmy | aiosqlite
    BENCH_LOOP          function | session: the pytest-asyncio loop scope of the run
    BENCH_DB            the database this run may create and drop (each run gets its own name)
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

FAMILY = os.environ.get("BENCH_FAMILY", "postgresql")
SERVER = os.environ.get("BENCH_SERVER", "postgresql://postgres@127.0.0.1:5432")
SYNC_DRIVER = os.environ.get("BENCH_SYNC_DRIVER", "psycopg")
ASYNC_DRIVER = os.environ.get("BENCH_ASYNC_DRIVER", "asyncpg")
LOOP = os.environ.get("BENCH_LOOP", "function")
DB = os.environ.get("BENCH_DB", "bench")
BACKEND = {"postgresql": "postgresql", "mysql": "mysql", "sqlite": "sqlite"}[FAMILY]


def url_for(dbname: str, *, async_: bool = False) -> URL:
    driver = ASYNC_DRIVER if async_ else SYNC_DRIVER
    if FAMILY == "sqlite":
        return make_url(f"sqlite+{driver}:///{Path(SERVER) / (dbname + '.db')}")
    return make_url(SERVER).set(drivername=f"{BACKEND}+{driver}", database=dbname)


def _sqlite_recipe(engine: Engine) -> None:
    """SQLAlchemy's documented pysqlite/aiosqlite recipe (SAVEPOINTs inside a real BEGIN); foreign keys on."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")  # as sqlsandbox's SQLite engines do
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN")


def sync_engine(dbname: str, **kw: Any) -> Engine:
    engine = create_engine(url_for(dbname), **kw)
    if FAMILY == "sqlite":
        _sqlite_recipe(engine)
    return engine


def async_engine(dbname: str, **kw: Any) -> AsyncEngine:
    """An asyncio-driver connection belongs to its loop: with function-scoped loops nothing may be pooled."""
    if LOOP == "function":
        kw.setdefault("poolclass", NullPool)
    engine = create_async_engine(url_for(dbname, async_=True), **kw)
    if FAMILY == "sqlite":
        _sqlite_recipe(engine.sync_engine)
    return engine


def _admin() -> Engine:
    if FAMILY == "postgresql":
        url = make_url(SERVER).set(drivername="postgresql+psycopg", database="postgres")
    else:
        url = make_url(SERVER).set(drivername="mysql+pymysql")
    return create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")


def _check_name(name: str) -> str:
    if not re.fullmatch(r"bench_[a-z0-9_]+", name):
        raise ValueError(f"refusing to touch database {name!r}: benchmark databases are named bench_*")
    return name


def db_exists(name: str) -> bool:
    _check_name(name)
    if FAMILY == "sqlite":
        return Path(SERVER, name + ".db").exists()
    sql = (
        "SELECT 1 FROM pg_database WHERE datname = :n"
        if FAMILY == "postgresql"
        else "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = :n"
    )
    engine = _admin()
    try:
        with engine.connect() as conn:
            return conn.execute(text(sql), {"n": name}).first() is not None
    finally:
        engine.dispose()


def create_db(name: str, template: str | None = None) -> None:
    """CREATE DATABASE (dropping a leftover of the same bench_* name first)."""
    drop_db(name)
    if FAMILY == "sqlite":
        return
    engine = _admin()
    try:
        with engine.connect() as conn:
            if FAMILY == "postgresql":
                tpl = f' TEMPLATE "{_check_name(template)}"' if template else ""
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"{tpl}')
            else:
                conn.exec_driver_sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    finally:
        engine.dispose()


def drop_db(name: str) -> None:
    _check_name(name)
    if FAMILY == "sqlite":
        for suffix in (".db", ".db-journal", ".db-wal", ".db-shm"):
            Path(SERVER, name + suffix).unlink(missing_ok=True)
        return
    engine = _admin()
    try:
        with engine.connect() as conn:
            if FAMILY == "postgresql":
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            else:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        engine.dispose()


def build_schema(dbname: str) -> None:
    """create_all (the models' after_create listeners insert the seed rows)."""
    from bench_models import Base

    engine = sync_engine(dbname, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            Base.metadata.create_all(conn)
    finally:
        engine.dispose()


def provisioned_engines(*, with_schema: bool = True) -> Iterator[SimpleNamespace]:
    """The benchmark database for a strategy's session fixture: created (with the schema unless the
    strategy builds it per test), its engines yielded, then dropped."""
    create_db(DB)
    if with_schema:
        build_schema(DB)
    engines = SimpleNamespace(sync=sync_engine(DB), async_=async_engine(DB))
    yield engines
    engines.sync.dispose()
    drop_db(DB)
