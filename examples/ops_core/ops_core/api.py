"""REST API (FastAPI). The app's lifespan runs the task scheduler."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request, status
from pydantic import BaseModel, Field, model_validator
from sqlalchemy.ext.asyncio import AsyncSession

from ops_core.db import SessionLocal
from ops_core.metadata.base import TaskNotFoundError
from ops_core.metadata.store import MAX_LIST_LIMIT, SqlMetadataStore
from ops_core.models import Task, TaskStatus
from ops_core.scheduler import Scheduler

logger = logging.getLogger(__name__)


class TaskCreate(BaseModel):
    task_type: Literal["agent", "non_agent"]
    input: dict[str, Any] = Field(default_factory=dict)
    agent_name: str | None = Field(default=None, min_length=1, max_length=100)

    @model_validator(mode="after")
    def _agent_needs_name(self) -> TaskCreate:
        if self.task_type == "agent" and self.agent_name is None:
            raise ValueError("agent tasks need an agent_name")
        return self


class TaskRead(BaseModel):
    id: str
    task_type: str
    status: str
    input: dict[str, Any]
    result: str | None
    agent_name: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_task(cls, task: Task) -> TaskRead:
        return cls(
            id=task.id,
            task_type=task.task_type,
            status=task.status,
            input=json.loads(task.input_json),
            result=task.result,
            agent_name=task.agent_name,
            created_at=task.created_at,
            updated_at=task.updated_at,
        )


async def get_db_session() -> AsyncIterator[AsyncSession]:
    """One session per request, committed when the endpoint succeeds."""
    async with SessionLocal() as session:
        try:
            yield session
        except Exception:
            await session.rollback()
            raise
        await session.commit()


# scope="function": commit before the response is sent, so a 201 means the row is stored.
DbSession = Annotated[AsyncSession, Depends(get_db_session, scope="function")]


async def get_metadata_store(session: DbSession) -> SqlMetadataStore:
    return SqlMetadataStore(session)


Store = Annotated[SqlMetadataStore, Depends(get_metadata_store)]


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    scheduler = Scheduler(poll_interval=float(os.environ.get("OPS_CORE_POLL_INTERVAL", "0.5")))
    await scheduler.start()
    app.state.scheduler = scheduler
    try:
        yield
    finally:
        await scheduler.stop()


app = FastAPI(title="ops_core", lifespan=lifespan)


@app.get("/healthz")
async def healthz(request: Request) -> dict[str, str]:
    scheduler: Scheduler | None = getattr(request.app.state, "scheduler", None)
    running = scheduler is not None and scheduler.running
    return {"status": "ok", "scheduler": "running" if running else "stopped"}


@app.post("/api/v1/tasks", status_code=status.HTTP_201_CREATED, response_model=TaskRead)
async def create_task(body: TaskCreate, store: Store) -> TaskRead:
    task = await store.create_task(body.task_type, body.input, agent_name=body.agent_name)
    logger.info("task %s submitted over REST", task.id)
    return TaskRead.from_task(task)


@app.get("/api/v1/tasks/{task_id}", response_model=TaskRead)
async def get_task(task_id: str, store: Store) -> TaskRead:
    try:
        task = await store.get_task(task_id)
    except TaskNotFoundError as exc:
        raise HTTPException(status_code=status.HTTP_404_NOT_FOUND, detail=str(exc)) from exc
    return TaskRead.from_task(task)


@app.get("/api/v1/tasks", response_model=list[TaskRead])
async def list_tasks(
    store: Store,
    task_status: Annotated[TaskStatus | None, Query(alias="status")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[TaskRead]:
    tasks = await store.list_tasks(status=task_status, limit=limit, offset=offset)
    return [TaskRead.from_task(task) for task in tasks]
