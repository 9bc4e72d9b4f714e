"""Helpers for the ops_core tests: rows as the service stores them, fresh reads."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ops_core.models import Task

BASE_TIME = datetime(2025, 4, 10, 17, 37, 0, 123456)


def make_task(
    n: int,
    *,
    status: str = "done",
    task_type: str = "non_agent",
    input_data: dict[str, Any] | None = None,
    agent_name: str | None = None,
    result: str | None = None,
) -> Task:
    """A task row as the service would have stored it; ``n`` orders created_at."""
    created = BASE_TIME + timedelta(seconds=n)
    return Task(
        id=f"00000000-0000-4000-8000-{n:012d}",
        task_type=task_type,
        status=status,
        input_json=json.dumps(input_data if input_data is not None else {"n": n}),
        result=result,
        agent_name=agent_name,
        created_at=created,
        updated_at=created,
    )


async def load_task(session: AsyncSession, task_id: str) -> Task | None:
    """Read a row as it is in the database now, in a short transaction of its own.

    The transaction is ended before returning (as the contract asks of a test's session before
    it awaits work in other tasks); the row is detached, with its attributes loaded.
    """
    task = await session.get(Task, task_id, populate_existing=True)
    if task is not None:
        session.expunge(task)
    await session.commit()
    return task


async def load_all(session: AsyncSession) -> list[Task]:
    """All rows, oldest first, read like ``load_task``."""
    stmt = select(Task).order_by(Task.created_at).execution_options(populate_existing=True)
    tasks = list(await session.scalars(stmt))
    for task in tasks:
        session.expunge(task)
    await session.commit()
    return tasks
