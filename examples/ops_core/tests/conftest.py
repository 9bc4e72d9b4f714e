"""Fixtures built on the sqlsandbox plugin's ones (async_db_session, asgi_client, grpc_server).

Nothing in the app is overridden or mocked: the app opens its own sessions from
``ops_core.db.SessionLocal`` and the plugin puts them in each test's sandbox.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from ops_core import tasks_pb2_grpc
from ops_core.api import app
from ops_core.grpc_service import TaskServicer
from ops_core.scheduler import Scheduler


@pytest.fixture
async def app_scheduler(asgi_client: httpx.AsyncClient) -> Scheduler:
    """The scheduler started by the app's lifespan (the app is up once it answers /healthz)."""
    health = await asgi_client.get("/healthz")
    assert health.json() == {"status": "ok", "scheduler": "running"}
    scheduler = app.state.scheduler
    assert isinstance(scheduler, Scheduler)
    return scheduler


@pytest.fixture
def worker() -> Scheduler:
    """A second scheduler, not started: tests drive it with ``run_once()``."""
    return Scheduler()


@pytest.fixture
async def task_stub(grpc_server: Any) -> tasks_pb2_grpc.TaskServiceStub:
    grpc_server.add(tasks_pb2_grpc.add_TaskServiceServicer_to_server, TaskServicer())
    stub: tasks_pb2_grpc.TaskServiceStub = await grpc_server.stub(tasks_pb2_grpc.TaskServiceStub)
    return stub
