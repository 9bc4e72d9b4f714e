"""pytest-postgresql itself (noproc mode, against the benchmark's PostgreSQL server).

postgresql_noproc builds the template database once per run (load=[build]); its `postgresql` fixture
creates the test database from that template for every test (terminating connections to the template first),
hands a psycopg connection, and drops the database afterwards. The tests get SQLAlchemy sessions on engines
made for that database. (postgresql_proc, which starts its own server with pg_ctl, cannot run here: initdb
refuses to run as root.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import bench_common as bc
import pytest
from bench_models import Base
from pytest_postgresql import factories
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

_server = make_url(bc.SERVER)


def build(host: str, port: Any, user: str, dbname: str, password: str | None, **_: Any) -> None:
    url = make_url(f"postgresql+psycopg://{user}@{host}:{port}/{dbname}")
    engine = create_engine(url.set(password=password), poolclass=NullPool)
    with engine.begin() as conn:
        Base.metadata.create_all(conn)
    engine.dispose()


bench_pg_noproc = factories.postgresql_noproc(
    host=_server.host, port=_server.port, user=_server.username, dbname=bc.DB, load=[build]
)
bench_pg = factories.postgresql("bench_pg_noproc")


@pytest.fixture
def clone_db(bench_pg: Any) -> str:
    return str(bench_pg.info.dbname)


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
