"""Strategy 4: a new database cloned from a template for every test (as pytest-postgresql and PMR do).

The template (schema + seed rows) is built once and kept across runs under a name derived from the schema
source, so a later run starts warm; run.py drops it before a cold run. Per test:
- PostgreSQL: CREATE DATABASE ... TEMPLATE on a session-long admin connection, DROP ... WITH (FORCE) after;
- MariaDB (no CREATE DATABASE ... TEMPLATE): CREATE DATABASE, the template's SHOW CREATE TABLE DDL for the 20
  tables, INSERT ... SELECT of the seed rows; DROP DATABASE after;
- SQLite: a copy of the template file.
Each test gets engines of its own on its database (NullPool), disposed before the drop.
"""

from __future__ import annotations

import hashlib
import itertools
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import bench_common as bc
import bench_models
import pytest
from bench_models import Base
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

_HASH = hashlib.sha1(Path(bench_models.__file__).read_bytes()).hexdigest()[:10]
TEMPLATE = f"bench_tpl_{bc.FAMILY[:2]}_{_HASH}"
_counter = itertools.count()


@pytest.fixture(scope="session")
def _admin() -> Iterator[Connection | None]:
    if bc.FAMILY == "sqlite":
        yield None
        return
    if not bc.db_exists(TEMPLATE):
        if bc.FAMILY == "postgresql":  # build under another name, so a killed build is never taken as done
            building = TEMPLATE + "_build"
            bc.create_db(building)
            bc.build_schema(building)
            engine = bc._admin()
            with engine.connect() as conn:
                conn.exec_driver_sql(f'ALTER DATABASE "{building}" RENAME TO "{TEMPLATE}"')
            engine.dispose()
        else:
            bc.create_db(TEMPLATE)
            bc.build_schema(TEMPLATE)
    url = make_url(bc.SERVER)
    url = (
        url.set(drivername="postgresql+psycopg", database="postgres")
        if bc.FAMILY == "postgresql"
        else url.set(drivername="mysql+pymysql")
    )
    engine = create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    conn = engine.connect()
    yield conn
    conn.close()
    engine.dispose()


_MYSQL_DDL: list[tuple[str, str]] = []


def _clone_mysql(conn: Connection, target: str) -> None:
    """What CREATE DATABASE ... TEMPLATE does on PostgreSQL: the template's DDL, then its rows."""
    if not _MYSQL_DDL:
        for table in Base.metadata.sorted_tables:
            row = conn.exec_driver_sql(f"SHOW CREATE TABLE `{TEMPLATE}`.`{table.name}`").one()
            _MYSQL_DDL.append((table.name, row[1]))
    conn.exec_driver_sql(f"USE `{target}`")
    for name, create in _MYSQL_DDL:
        conn.exec_driver_sql(create)
        conn.exec_driver_sql(f"INSERT INTO `{target}`.`{name}` SELECT * FROM `{TEMPLATE}`.`{name}`")


@pytest.fixture
def clone_db(_admin: Connection | None) -> Iterator[str]:
    name = f"{bc.DB}_c{next(_counter)}"
    if bc.FAMILY == "postgresql":
        assert _admin is not None
        _admin.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
        yield name
        _admin.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
    elif bc.FAMILY == "mysql":
        assert _admin is not None
        _admin.exec_driver_sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        _clone_mysql(_admin, name)
        yield name
        _admin.exec_driver_sql(f"DROP DATABASE `{name}`")
    else:
        template = Path(bc.SERVER, TEMPLATE + ".db")
        if not template.exists():
            bc.build_schema(TEMPLATE + "_build")
            Path(bc.SERVER, TEMPLATE + "_build.db").rename(template)
        shutil.copyfile(template, Path(bc.SERVER, name + ".db"))
        yield name
        bc.drop_db(name)


@pytest.fixture
def db_session(clone_db: str) -> Iterator[Session]:
    engine = bc.sync_engine(clone_db, poolclass=NullPool)
    with Session(engine) as session:
        session.connection()  # check the connection out here, as sqlsandbox's lazy open is counted
        yield session
    engine.dispose()


@pytest.fixture
async def async_db_session(clone_db: str) -> AsyncIterator[AsyncSession]:
    engine = bc.async_engine(clone_db, poolclass=NullPool)
    async with AsyncSession(engine) as session:
        await session.connection()
        yield session
    await engine.dispose()
