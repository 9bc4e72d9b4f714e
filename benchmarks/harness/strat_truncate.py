"""Strategy 3: empty every table after each test and reload the seed rows (Django TransactionTestCase style).

PostgreSQL: one TRUNCATE ... RESTART IDENTITY CASCADE of all 20 tables; MariaDB: TRUNCATE TABLE each with
foreign key checks off (what Django's flush emits there); SQLite: DELETE FROM each (Django's sqlite flush).
Then the seed rows are inserted again, so the next test starts from the same data.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace

import bench_common as bc
import pytest
from bench_models import Base, seed
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session


@pytest.fixture(scope="session")
def bench_engines() -> Iterator[SimpleNamespace]:
    yield from bc.provisioned_engines()


def flush_and_reseed(engine) -> None:  # type: ignore[no-untyped-def]
    tables = Base.metadata.sorted_tables
    with engine.begin() as conn:
        if bc.FAMILY == "postgresql":
            names = ", ".join(f'"{t.name}"' for t in tables)
            conn.exec_driver_sql(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
        elif bc.FAMILY == "mysql":
            conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS = 0")
            for t in tables:
                conn.exec_driver_sql(f"TRUNCATE TABLE `{t.name}`")
            conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS = 1")
        else:
            for t in reversed(tables):
                conn.exec_driver_sql(f'DELETE FROM "{t.name}"')
        seed(conn)


@pytest.fixture
def _flushed(bench_engines: SimpleNamespace) -> Iterator[None]:
    yield
    flush_and_reseed(bench_engines.sync)


@pytest.fixture
def db_session(_flushed: None, bench_engines: SimpleNamespace) -> Iterator[Session]:
    with Session(bench_engines.sync) as session:
        session.connection()  # check the connection out here, as sqlsandbox's lazy open is counted
        yield session


@pytest.fixture
async def async_db_session(_flushed: None, bench_engines: SimpleNamespace) -> AsyncIterator[AsyncSession]:
    async with AsyncSession(bench_engines.async_) as session:
        await session.connection()
        yield session
