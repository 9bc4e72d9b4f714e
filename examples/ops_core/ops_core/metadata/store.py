"""SQL implementation of the task metadata store."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from ops_core.db import SessionLocal
from ops_core.metadata.base import MetadataStore, TaskNotFoundError, TaskStatusConflictError
from ops_core.models import Task, TaskStatus, TaskType, utcnow

MAX_LIST_LIMIT = 1000


class SqlMetadataStore(MetadataStore):
    """Task store over an ``AsyncSession``.

    With a session passed in, the caller owns the transaction: the store only flushes.
    Without one, every call opens its own session from ``SessionLocal`` and commits.
    """

    def __init__(self, session: AsyncSession | None = None) -> None:
        self._session = session

    @asynccontextmanager
    async def _use_session(self) -> AsyncIterator[AsyncSession]:
        if self._session is not None:
            yield self._session
            await self._session.flush()
            return
        async with SessionLocal() as session, session.begin():
            yield session

    async def create_task(
        self,
        task_type: str,
        input_data: Mapping[str, Any] | None = None,
        agent_name: str | None = None,
    ) -> Task:
        task_type = TaskType(task_type).value  # ValueError for an unknown type
        if task_type == TaskType.AGENT and not agent_name:
            raise ValueError("agent tasks need an agent_name")
        task = Task(
            task_type=task_type,
            status=TaskStatus.PENDING.value,
            input_json=json.dumps(dict(input_data or {}), sort_keys=True),
            agent_name=agent_name,
        )
        async with self._use_session() as session:
            session.add(task)
        return task

    async def get_task(self, task_id: str) -> Task:
        async with self._use_session() as session:
            task = await session.get(Task, task_id, populate_existing=True)
        if task is None:
            raise TaskNotFoundError(task_id)
        return task

    async def list_tasks(
        self, status: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[Task]:
        if not 0 < limit <= MAX_LIST_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIST_LIMIT}")
        stmt = select(Task).order_by(Task.created_at, Task.id).limit(limit).offset(offset)
        if status is not None:
            stmt = stmt.where(Task.status == TaskStatus(status).value)
        async with self._use_session() as session:
            result = await session.scalars(stmt.execution_options(populate_existing=True))
            return list(result)

    async def update_status(
        self,
        task_id: str,
        status: str,
        *,
        result: str | None = None,
        expected_status: str | None = None,
    ) -> Task:
        """Move a task to ``status``; with ``expected_status`` only if it is still in that one.

        The check and the change are one UPDATE, so two workers cannot both claim a task.
        """
        values: dict[str, Any] = {"status": TaskStatus(status).value, "updated_at": utcnow()}
        if result is not None:
            values["result"] = result
        stmt = update(Task).where(Task.id == task_id).values(**values)
        if expected_status is not None:
            stmt = stmt.where(Task.status == TaskStatus(expected_status).value)
        async with self._use_session() as session:
            cursor = cast(
                CursorResult[Any],
                await session.execute(stmt.execution_options(synchronize_session=False)),
            )
            changed = cursor.rowcount
            task = await session.get(Task, task_id, populate_existing=True)
        if task is None:
            raise TaskNotFoundError(task_id)
        if changed != 1 and expected_status is not None:
            raise TaskStatusConflictError(task_id, expected_status, task.status)
        return task
