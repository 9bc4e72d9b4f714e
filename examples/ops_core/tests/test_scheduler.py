"""The scheduler against the database: ticks driven by the test, and the background loop."""

from __future__ import annotations

import asyncio
import json

from sqlalchemy.ext.asyncio import AsyncSession

from ops_core.metadata import SqlMetadataStore
from ops_core.scheduler import Scheduler
from taskdata import load_all, load_task, make_task


async def test_run_once_with_nothing_pending(
    worker: Scheduler, async_db_session: AsyncSession
) -> None:
    async_db_session.add_all([make_task(1, status="done"), make_task(2, status="failed")])
    await async_db_session.commit()

    assert await worker.run_once() == 0

    assert [row.status for row in await load_all(async_db_session)] == ["done", "failed"]


async def test_run_once_runs_pending_tasks(
    worker: Scheduler, async_db_session: AsyncSession
) -> None:
    async_db_session.add_all(
        [
            make_task(1, status="pending", input_data={"a": 1}),
            make_task(2, status="pending", task_type="agent", agent_name="bot", input_data={}),
            make_task(3, status="pending", input_data={"fail": True, "reason": "no quota"}),
            make_task(4, status="done", result="earlier"),
        ]
    )
    await async_db_session.commit()

    assert await worker.run_once() == 3

    rows = {row.id: row for row in await load_all(async_db_session)}
    assert rows[make_task(1).id].status == "done"
    assert json.loads(rows[make_task(1).id].result or "") == {"echo": {"a": 1}}
    assert rows[make_task(2).id].status == "done"
    assert json.loads(rows[make_task(2).id].result or "")["agent"] == "bot"
    assert (rows[make_task(3).id].status, rows[make_task(3).id].result) == ("failed", "no quota")
    assert (rows[make_task(4).id].status, rows[make_task(4).id].result) == ("done", "earlier")
    assert (worker.processed_total, worker.failed_total) == (3, 1)


async def test_run_once_does_not_touch_running_tasks(
    worker: Scheduler, async_db_session: AsyncSession
) -> None:
    async_db_session.add(make_task(1, status="running"))
    await async_db_session.commit()

    assert await worker.run_once() == 0

    row = await load_task(async_db_session, make_task(1).id)
    assert row is not None
    assert row.status == "running"


async def test_two_workers_never_run_a_task_twice(async_db_session: AsyncSession) -> None:
    first, second = Scheduler(batch_size=5), Scheduler(batch_size=5)
    async_db_session.add_all([make_task(n, status="pending") for n in range(30)])
    await async_db_session.commit()

    counts = await asyncio.gather(first.run_once(), second.run_once())

    assert sum(counts) == 30
    assert {row.status for row in await load_all(async_db_session)} == {"done"}


async def test_background_loop_runs_submitted_tasks(async_db_session: AsyncSession) -> None:
    scheduler = Scheduler(poll_interval=0.05)
    await scheduler.start()
    try:
        store = SqlMetadataStore()
        ids = [(await store.create_task("non_agent", {"i": i})).id for i in range(5)]
        await scheduler.wait_idle()
    finally:
        await scheduler.stop()

    assert not scheduler.running
    assert scheduler.tick_errors == 0
    for task_id in ids:
        row = await load_task(async_db_session, task_id)
        assert row is not None
        assert row.status == "done"


async def test_wait_idle_without_loop_runs_ticks_itself(
    worker: Scheduler, async_db_session: AsyncSession
) -> None:
    async_db_session.add_all([make_task(n, status="pending") for n in range(3)])
    await async_db_session.commit()

    await worker.wait_idle()

    assert worker.processed_total == 3
    assert {row.status for row in await load_all(async_db_session)} == {"done"}
