"""Binding only the app's engines (sqladmin builds its own sessionmaker from `Admin(engine=...)`): a Session of
the app's own factory keeps one connection, and so one transaction, for its whole life, as it would in
production; and `sessionmaker(bind=async_engine, class_=AsyncSession)` makes working AsyncSessions."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, func, inspect, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, sessionmaker

from sqlsandbox import Sandbox, SandboxEscapeError
from tests.models import Owner, Pet

NOWHERE = "/nonexistent-dir/engine_only.db"  # opening it would fail loudly


@pytest.fixture
def app_engine(sandbox: Sandbox) -> sessionmaker[Session]:
    """An app whose engine alone is bound, and whose sessionmaker is its own."""
    engine = create_engine(f"sqlite:///{NOWHERE}")
    sandbox.bind(engine)
    return sessionmaker(bind=engine)


@pytest.fixture
def app_async_engine(sandbox: Sandbox) -> async_sessionmaker[AsyncSession]:
    engine = create_async_engine(f"sqlite+aiosqlite:///{NOWHERE}")
    sandbox.bind(engine)
    return async_sessionmaker(bind=engine, expire_on_commit=False)


def _owner_with_pet(session: Session | AsyncSession, name: str) -> Owner:
    owner = Owner(name=name)
    session.add(owner)
    session.add(Pet(name=f"{name}'s cat", owner=owner))
    return owner


def test_a_session_of_a_bound_engine_keeps_one_connection(app_engine: sessionmaker[Session]) -> None:
    with app_engine() as session:
        assert session.connection() is session.connection()
        _owner_with_pet(session, "ann")
        session.flush()  # the pet's foreign key needs the owner's row, in the same transaction
        assert session.scalar(select(func.count()).select_from(Owner)) == 1
        session.rollback()
        assert session.scalar(select(func.count()).select_from(Owner)) == 0  # one transaction: all undone
        _owner_with_pet(session, "bob")
        session.commit()
    with app_engine() as other:
        assert other.scalars(select(Pet.name)).all() == ["bob's cat"]


def test_the_guards_watch_the_sessions_of_a_bound_engine(
    sandbox: Sandbox, app_engine: sessionmaker[Session]
) -> None:
    """Its connection reports the app's engine, and still runs the sandbox's checks and records."""
    with app_engine() as session:
        session.add(Owner(name="ann"))
        with sandbox.queries.assert_num_queries(1, match="INSERT"):
            session.flush()
        with pytest.raises(SandboxEscapeError, match=r"COMMIT issued as SQL at .*test_engine_binding"):
            session.execute(text("COMMIT"))
    assert len(sandbox.problems) == 1
    sandbox.problems.clear()


@pytest.mark.sqlsandbox(committed=True)
def test_committed_mode_with_a_bound_engine_keeps_one_transaction(app_engine: sessionmaker[Session]) -> None:
    with app_engine() as session:
        assert session.connection() is session.connection()
        _owner_with_pet(session, "ann")
        session.flush()
        assert session.scalar(select(func.count()).select_from(Owner)) == 1
        session.commit()
    with app_engine() as other:
        assert other.scalars(select(Pet.name)).all() == ["ann's cat"]


async def test_an_async_session_of_a_bound_engine_keeps_one_connection(
    app_async_engine: async_sessionmaker[AsyncSession],
) -> None:
    async with app_async_engine() as session:
        first = await session.connection()
        assert (await session.connection()).sync_connection is first.sync_connection
        await session.execute(select(1))
        await session.execute(select(func.count()).select_from(Owner))  # not a second unit waiting on the first
        _owner_with_pet(session, "ann")
        await session.commit()
    async with app_async_engine() as other:
        assert (await other.scalars(select(Pet.name))).all() == ["ann's cat"]


@pytest.mark.sqlsandbox(committed=True)
async def test_committed_mode_with_a_bound_async_engine(
    app_async_engine: async_sessionmaker[AsyncSession],
) -> None:
    async with app_async_engine() as session:
        _owner_with_pet(session, "ann")
        await session.flush()
        assert await session.scalar(select(func.count()).select_from(Owner)) == 1
        await session.commit()
    async with app_async_engine() as other:
        assert await other.scalar(select(func.count()).select_from(Pet)) == 1


async def test_a_sessionmaker_of_async_sessions_binds_to_the_async_engine(
    sandbox: Sandbox, async_db_session: AsyncSession
) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{NOWHERE}")
    factory = sessionmaker(bind=engine, class_=AsyncSession, expire_on_commit=False)  # type: ignore[call-overload]
    sandbox.bind(factory)
    async with factory() as session:
        _owner_with_pet(session, "ann")
        await session.commit()
    assert (await async_db_session.scalars(select(Owner.name))).all() == ["ann"]


def test_inspecting_a_connection_of_a_bound_engine(app_engine: sessionmaker[Session]) -> None:
    """inspect() asks the connection's engine for its dialect: the one connected to the test database."""
    with app_engine() as session:
        columns = {c["name"] for c in inspect(session.connection()).get_columns("owners")}
    assert {"id", "name"} <= columns
