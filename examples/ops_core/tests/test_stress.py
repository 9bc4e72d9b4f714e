"""200 concurrent REST submissions while two schedulers run them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from ops_core.scheduler import Scheduler
from taskdata import load_all

N_TASKS = 200
TICK_EVERY = 20


def payload(i: int) -> dict[str, object]:
    if i % 2:
        return {"task_type": "agent", "agent_name": f"agent-{i % 7}", "input": {"i": i}}
    return {"task_type": "non_agent", "input": {"i": i, "fail": i % 10 == 0}}


async def test_concurrent_rest_posts_with_scheduler_ticks(
    asgi_client: httpx.AsyncClient,
    app_scheduler: Scheduler,
    worker: Scheduler,
    async_db_session: AsyncSession,
) -> None:
    async def submit(i: int) -> httpx.Response:
        return await asgi_client.post("/api/v1/tasks", json=payload(i))

    jobs: list[Awaitable[object]] = []
    for i in range(N_TASKS):
        jobs.append(submit(i))
        if i % TICK_EVERY == 0:
            jobs.append(worker.run_once())  # a second worker, next to the app's own scheduler
    outcomes = await asyncio.gather(*jobs)
    await app_scheduler.wait_idle(timeout=120)

    responses = [o for o in outcomes if isinstance(o, httpx.Response)]
    assert len(responses) == N_TASKS
    assert [r.status_code for r in responses] == [201] * N_TASKS
    submitted = {r.json()["id"]: r.json()["input"]["i"] for r in responses}
    assert len(submitted) == N_TASKS

    rows = await load_all(async_db_session)
    assert {row.id for row in rows} == set(submitted)
    for row in rows:
        i = submitted[row.id]
        assert json.loads(row.input_json)["i"] == i
        if i % 10 == 0:
            assert (row.status, row.result) == ("failed", "task input asked to fail"), i
        else:
            assert row.status == "done", i
            assert row.result is not None
        assert row.task_type == ("agent" if i % 2 else "non_agent")

    # Every task ran exactly once, split between the two schedulers, and no tick failed.
    assert worker.processed_total + app_scheduler.processed_total == N_TASKS
    assert worker.failed_total + app_scheduler.failed_total == N_TASKS // 10
    assert worker.tick_errors == app_scheduler.tick_errors == 0
    assert await worker.run_once() == 0
