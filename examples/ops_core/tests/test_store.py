"""SqlMetadataStore, with the test's session and with sessions of its own."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ops_core.metadata import SqlMetadataStore, TaskNotFoundError, TaskStatusConflictError
from ops_core.models import Task
from taskdata import load_task, make_task


async def test_store_create_and_get(async_db_session: AsyncSession) -> None:
    store = SqlMetadataStore(async_db_session)

    created = await store.create_task("agent", {"b": 2, "a": 1}, agent_name="indexer")
    fetched = await store.get_task(created.id)

    assert fetched.id == created.id
    assert (fetched.task_type, fetched.status) == ("agent", "pending")
    assert fetched.agent_name == "indexer"
    assert json.loads(fetched.input_json) == {"a": 1, "b": 2}
    assert fetched.result is None
    assert fetched.created_at is not None
    count = await async_db_session.scalar(select(func.count()).select_from(Task))
    assert count == 1


async def test_store_get_task_not_found(async_db_session: AsyncSession) -> None:
    store = SqlMetadataStore(async_db_session)

    with pytest.raises(TaskNotFoundError) as excinfo:
        await store.get_task("8d6f7a1e-0000-4000-8000-000000000000")

    assert excinfo.value.task_id == "8d6f7a1e-0000-4000-8000-000000000000"


async def test_store_own_session_get_task_not_found(async_db_session: AsyncSession) -> None:
    async_db_session.add(make_task(1))
    await async_db_session.commit()
    store = SqlMetadataStore()

    with pytest.raises(TaskNotFoundError):
        await store.get_task("missing")
    assert (await store.get_task(make_task(1).id)).status == "done"


async def test_store_update_status_not_found(async_db_session: AsyncSession) -> None:
    with pytest.raises(TaskNotFoundError):
        await SqlMetadataStore(async_db_session).update_status("missing", "done")


async def test_store_update_status(async_db_session: AsyncSession) -> None:
    store = SqlMetadataStore(async_db_session)
    task = await store.create_task("non_agent", {"x": 1})

    running = await store.update_status(task.id, "running", expected_status="pending")
    assert running.status == "running"
    done = await store.update_status(task.id, "done", result="42", expected_status="running")

    assert (done.status, done.result) == ("done", "42")
    row = await load_task(async_db_session, task.id)
    assert row is not None
    assert (row.status, row.result) == ("done", "42")
    assert row.updated_at >= row.created_at


async def test_store_update_status_conflict(async_db_session: AsyncSession) -> None:
    store = SqlMetadataStore(async_db_session)
    task = await store.create_task("non_agent")
    await store.update_status(task.id, "running", expected_status="pending")

    with pytest.raises(TaskStatusConflictError) as excinfo:
        await store.update_status(task.id, "running", expected_status="pending")

    assert excinfo.value.actual == "running"
    row = await load_task(async_db_session, task.id)
    assert row is not None
    assert row.status == "running"


async def test_store_rejects_invalid_tasks(async_db_session: AsyncSession) -> None:
    store = SqlMetadataStore(async_db_session)

    with pytest.raises(ValueError, match="agent_name"):
        await store.create_task("agent", {})
    with pytest.raises(ValueError):
        await store.create_task("cron", {})
    with pytest.raises(ValueError):
        await store.list_tasks(limit=0)

    assert await async_db_session.scalar(select(func.count()).select_from(Task)) == 0


async def test_store_list_tasks(async_db_session: AsyncSession) -> None:
    async_db_session.add_all(
        [make_task(n, status="done" if n < 3 else "pending") for n in (4, 1, 3, 2)]
    )
    await async_db_session.commit()
    store = SqlMetadataStore(async_db_session)

    everything = await store.list_tasks()
    pending = await store.list_tasks(status="pending")
    second_page = await store.list_tasks(limit=2, offset=2)

    assert [t.id for t in everything] == [make_task(n).id for n in (1, 2, 3, 4)]
    assert [t.id for t in pending] == [make_task(n).id for n in (3, 4)]
    assert [t.id for t in second_page] == [make_task(n).id for n in (3, 4)]


async def test_store_with_own_sessions_commits(async_db_session: AsyncSession) -> None:
    """Without a session the store opens and commits its own (as the scheduler and gRPC do)."""
    store = SqlMetadataStore()

    created = await store.create_task("non_agent", {"via": "SessionLocal"})
    await store.update_status(created.id, "failed", result="nope")

    row = await load_task(async_db_session, created.id)
    assert row is not None
    assert (row.status, row.result) == ("failed", "nope")
    assert [t.id for t in await store.list_tasks(status="failed")] == [created.id]


async def test_store_caller_rollback_discards_the_task(async_db_session: AsyncSession) -> None:
    store = SqlMetadataStore(async_db_session)
    kept_id = (await store.create_task("non_agent", {"keep": True})).id
    await async_db_session.commit()
    dropped_id = (await store.create_task("non_agent", {"keep": False})).id

    await async_db_session.rollback()

    assert (await store.get_task(kept_id)).id == kept_id
    assert (await SqlMetadataStore().get_task(kept_id)).id == kept_id
    with pytest.raises(TaskNotFoundError):
        await store.get_task(dropped_id)
    with pytest.raises(TaskNotFoundError):
        await SqlMetadataStore().get_task(dropped_id)


async def test_store_nested_transaction_rollback(async_db_session: AsyncSession) -> None:
    store = SqlMetadataStore(async_db_session)
    outer_id = (await store.create_task("non_agent", {"level": "outer"})).id

    savepoint = await async_db_session.begin_nested()
    inner_id = (await store.create_task("non_agent", {"level": "inner"})).id
    await savepoint.rollback()
    await async_db_session.commit()

    assert [t.id for t in await SqlMetadataStore().list_tasks()] == [outer_id]
    with pytest.raises(TaskNotFoundError):
        await store.get_task(inner_id)


@pytest.mark.parametrize("via", ["test_session", "store_session"])
async def test_committed_rows_do_not_outlive_the_test(
    async_db_session: AsyncSession, via: str
) -> None:
    """Both runs commit a task with the same primary key: the second would fail on a real
    database if the first one's commit had survived its test."""
    assert await load_task(async_db_session, make_task(99).id) is None
    if via == "test_session":
        async_db_session.add(make_task(99))
        await async_db_session.commit()
    else:
        store = SqlMetadataStore()
        task = await store.create_task("non_agent", {"n": 99})
        async_db_session.add(make_task(99))
        await async_db_session.commit()
        assert (await store.get_task(task.id)).status == "pending"
    assert (await SqlMetadataStore().get_task(make_task(99).id)).status == "done"
