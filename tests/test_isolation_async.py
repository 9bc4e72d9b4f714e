"""Async code tries hard to break isolation: commits, rollbacks, savepoints, exceptions, unclosed sessions,
bound engines, sync code through run_sync, and many tasks using the one sandbox connection at once."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Session

from tests import app
from tests.models import Owner, Pet


async def count(session: AsyncSession | AsyncConnection, model=Owner) -> int:
    return (await session.execute(select(func.count()).select_from(model))).scalar_one()


async def test_app_commit_is_seen_and_undone_after(async_db_session: AsyncSession) -> None:
    assert await count(async_db_session) == 0
    await app.acreate_owner("ann")
    assert await app.aowner_names() == ["ann"]
    assert await count(async_db_session) == 1


async def test_test_session_commit_then_app_reads(async_db_session: AsyncSession) -> None:
    async_db_session.add(Owner(name="ann", pets=[Pet(name="rex")]))
    await async_db_session.commit()
    assert await app.aowner_names() == ["ann"]


async def test_exception_after_flush_discards_that_session(async_db_session: AsyncSession) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        await app.acreate_and_fail("ann")
    assert await count(async_db_session) == 0
    await app.acreate_owner("ann")
    assert await count(async_db_session) == 1


async def test_nested_savepoints(async_db_session: AsyncSession) -> None:
    async with app.AsyncSessionLocal() as session:
        session.add(Owner(name="ann"))
        async with session.begin_nested():
            session.add(Owner(name="bob"))
        nested = await session.begin_nested()
        session.add(Owner(name="cid"))
        await session.flush()
        await nested.rollback()
        await session.commit()
    assert await app.aowner_names() == ["ann", "bob"]


async def test_integrity_error_and_recovery(async_db_session: AsyncSession) -> None:
    await app.acreate_owner("ann")
    with pytest.raises(IntegrityError):
        await app.acreate_owner("ann")
    await app.acreate_owner("bob")
    assert await app.aowner_names() == ["ann", "bob"]


async def test_unclosed_async_sessions(async_db_session: AsyncSession) -> None:
    leaked = app.AsyncSessionLocal()
    leaked.add(Owner(name="ann"))
    await leaked.flush()  # never committed or closed
    assert await count(async_db_session) == 1


async def test_async_engine_begin_and_connect(async_db_connection: AsyncConnection) -> None:
    await app.acreate_owner_core("ann")
    async with app.async_engine.connect() as conn:
        await conn.execute(insert(Owner).values(name="bob"))
        await conn.commit()
        await conn.execute(insert(Owner).values(name="cid"))
    assert await count(async_db_connection) == 2


async def test_async_db_connection_commit_rollback(async_db_connection: AsyncConnection) -> None:
    await async_db_connection.execute(insert(Owner).values(name="ann"))
    await async_db_connection.commit()
    await async_db_connection.execute(insert(Owner).values(name="bob"))
    await async_db_connection.rollback()
    assert await count(async_db_connection) == 1


async def test_sync_app_code_through_run_sync(async_db_session: AsyncSession) -> None:
    def sync_work(session: Session) -> list[str]:
        app.sync_create_in_session(session, "ann")
        app.create_owner("bob")  # the app's own sync sessionmaker, inside run_sync
        return app.owner_names()

    assert await async_db_session.run_sync(sync_work) == ["ann", "bob"]
    assert await app.aowner_names() == ["ann", "bob"]


async def test_many_tasks_at_once(async_db_session: AsyncSession) -> None:
    names = [f"user{i:03d}" for i in range(50)]
    ids = await asyncio.gather(*(app.acreate_owner(name) for name in names))
    assert len(set(ids)) == 50
    assert await app.aowner_names() == names


async def test_concurrent_tasks_with_failures_and_savepoints(async_db_session: AsyncSession) -> None:
    async def writer(i: int) -> str:
        async with app.AsyncSessionLocal() as session:
            session.add(Owner(name=f"w{i:02d}"))
            async with session.begin_nested():
                session.add(Owner(name=f"n{i:02d}"))
            if i % 3 == 0:
                await session.rollback()
                return "rolled back"
            await session.commit()
            return "committed"

    results = await asyncio.gather(*(writer(i) for i in range(30)))
    committed = sorted(f"{p}{i:02d}" for i, r in enumerate(results) if r == "committed" for p in "nw")
    assert await app.aowner_names() == committed


async def test_test_session_stays_open_while_tasks_commit(async_db_session: AsyncSession) -> None:
    async_db_session.add(Owner(name="seed"))
    await async_db_session.flush()  # the test's transaction stays open across the gather
    await asyncio.gather(*(app.acreate_owner(f"t{i}") for i in range(10)))
    assert await count(async_db_session) == 11


async def test_rollback_that_would_discard_others_commits_is_explained(
    async_db_session: AsyncSession,
) -> None:
    from sqlsandbox import SandboxInterleavingError

    async_db_session.add(Owner(name="seed"))
    await async_db_session.flush()
    await app.acreate_owner("other")  # commits while the test's transaction is open
    with pytest.raises(SandboxInterleavingError, match="also discarded work that other sessions"):
        await async_db_session.rollback()


async def test_raw_commit_is_refused(sandbox, async_db_session: AsyncSession) -> None:
    from sqlsandbox import SandboxEscapeError

    with pytest.raises(SandboxEscapeError):
        await async_db_session.execute(text("COMMIT"))
    assert sandbox.problems
    sandbox.problems.clear()


async def test_expired_attribute_after_commit_is_explained(async_db_session: AsyncSession) -> None:
    from sqlsandbox import SandboxLoopError

    owner = Owner(name="ann")
    async_db_session.add(owner)
    await async_db_session.commit()
    with pytest.raises(SandboxLoopError, match=r"from sync code at .*test_isolation_async.py:\d+") as raised:
        _ = owner.name  # expired by commit: a lazy load with sync IO
    assert "expire_on_commit=False" in str(raised.value)
    await async_db_session.refresh(owner)
    assert owner.name == "ann"


async def test_a_read_only_unit_does_not_block_a_task_that_writes(async_db_session: AsyncSession) -> None:
    """The task is started before the test's transaction, so it does not inherit it: it must wait for it,
    unless a transaction that only read lets it through, as it does."""
    go = asyncio.Event()

    async def writer() -> None:
        await go.wait()
        await app.acreate_owner("ann")

    task = asyncio.create_task(writer())
    assert await count(async_db_session) == 0  # the test's session has begun, and only read
    go.set()
    await asyncio.wait_for(task, timeout=30)
    assert await count(async_db_session) == 1  # the same transaction, still open, sees the commit
    async_db_session.add(Owner(name="bob"))
    await async_db_session.commit()
    assert sorted(await app.aowner_names()) == ["ann", "bob"]
