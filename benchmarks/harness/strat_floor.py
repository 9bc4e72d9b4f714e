"""Strategy 5, the floor: the same tests with no isolation at all.

One database per run, schema and seed rows built once; each test gets a plain Session / AsyncSession on the
run's engines and its commits are real. Rows pile up across tests (the tests never depend on that).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace

import bench_common as bc
import pytest
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session


@pytest.fixture(scope="session")
def bench_engines() -> Iterator[SimpleNamespace]:
    yield from bc.provisioned_engines()


@pytest.fixture
def db_session(bench_engines: SimpleNamespace) -> Iterator[Session]:
    with Session(bench_engines.sync) as session:
        session.connection()  # check the connection out here, as sqlsandbox's lazy open is counted
        yield session


@pytest.fixture
async def async_db_session(bench_engines: SimpleNamespace) -> AsyncIterator[AsyncSession]:
    async with AsyncSession(bench_engines.async_) as session:
        await session.connection()
        yield session
