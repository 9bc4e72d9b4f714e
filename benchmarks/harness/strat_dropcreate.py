"""Strategy 2: metadata.create_all() before each test (seed rows included) and drop_all() after it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace

import bench_common as bc
import pytest
from bench_models import Base
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session


@pytest.fixture(scope="session")
def bench_engines() -> Iterator[SimpleNamespace]:
    yield from bc.provisioned_engines(with_schema=False)  # each test builds it


@pytest.fixture
def _schema(bench_engines: SimpleNamespace) -> Iterator[None]:
    with bench_engines.sync.begin() as conn:
        Base.metadata.create_all(conn)
    yield
    with bench_engines.sync.begin() as conn:
        Base.metadata.drop_all(conn)


@pytest.fixture
def db_session(_schema: None, bench_engines: SimpleNamespace) -> Iterator[Session]:
    with Session(bench_engines.sync) as session:
        session.connection()  # check the connection out here, as sqlsandbox's lazy open is counted
        yield session


@pytest.fixture
async def async_db_session(_schema: None, bench_engines: SimpleNamespace) -> AsyncIterator[AsyncSession]:
    async with AsyncSession(bench_engines.async_) as session:
        await session.connection()
        yield session
