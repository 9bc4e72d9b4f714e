"""pytest-mock-resources itself, pointed at the benchmark's PostgreSQL server instead of a docker container.

create_postgres_fixture(Base) runs create_all once into a template database, then for every test creates a
database from it (CREATE DATABASE ... template=) and yields an engine on it; the database is dropped after the
test. Sync tests use that engine; async tests get an AsyncEngine (the run's async driver) on the same database.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import bench_common as bc
import pytest
from bench_models import Base
from pytest_mock_resources import create_postgres_fixture
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

_server = make_url(bc.SERVER)


# PMR reads PMR_POSTGRES_* before its defaults (a docker container on port 5532): point it at our server.
# (Overriding the pmr_postgres_config fixture from a -p plugin does not win over PMR's own.)
for _key, _value in {
    "HOST": _server.host,
    "PORT": str(_server.port or 5432),
    "USERNAME": _server.username,
    "PASSWORD": _server.password or "",
    "ROOT_DATABASE": "postgres",
    "DRIVERNAME": "postgresql+psycopg",
}.items():
    os.environ.setdefault(f"PMR_POSTGRES_{_key}", str(_value))

pmr_engine = create_postgres_fixture(Base)


@pytest.fixture
def db_session(pmr_engine: Engine) -> Iterator[Session]:
    with Session(pmr_engine) as session:
        session.connection()  # check the connection out here, as sqlsandbox's lazy open is counted
        yield session


@pytest.fixture
async def async_db_session(pmr_engine: Engine) -> AsyncIterator[AsyncSession]:
    engine = bc.async_engine(str(pmr_engine.url.database), poolclass=NullPool)
    async with AsyncSession(engine) as session:
        await session.connection()
        yield session
    await engine.dispose()
