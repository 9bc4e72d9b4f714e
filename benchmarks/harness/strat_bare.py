"""The bare SQLAlchemy recipe sqlsandbox is measured against ("Joining a Session into an External Transaction").

Per test: connection = engine.connect(); trans = connection.begin();
Session(bind=connection, join_transaction_mode="create_savepoint"); at teardown close the session, roll the
transaction back, close the connection. Async: the same on an AsyncEngine. With function-scoped loops the
async engine has no pool (an asyncio driver connection cannot outlive its loop): a new connection per test.
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
    connection = bench_engines.sync.connect()
    trans = connection.begin()
    session = Session(bind=connection, join_transaction_mode="create_savepoint")
    yield session
    session.close()
    trans.rollback()
    connection.close()


@pytest.fixture
async def async_db_session(bench_engines: SimpleNamespace) -> AsyncIterator[AsyncSession]:
    connection = await bench_engines.async_.connect()
    trans = await connection.begin()
    session = AsyncSession(bind=connection, join_transaction_mode="create_savepoint")
    yield session
    await session.close()
    await trans.rollback()
    await connection.close()
