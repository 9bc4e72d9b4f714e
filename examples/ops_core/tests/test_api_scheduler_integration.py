"""REST and gRPC submission, run by the real scheduler (the failures of seed 004).

The app's lifespan scheduler, the gRPC servicer and the REST handlers all open their own sessions
from ``SessionLocal``; no session is injected anywhere.
"""

from __future__ import annotations

import json

import grpc
import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from ops_core import tasks_pb2, tasks_pb2_grpc
from ops_core.models import Task
from ops_core.scheduler import Scheduler
from taskdata import load_task

TASKS = "/api/v1/tasks"


async def test_rest_api_submit_non_agent_task(
    asgi_client: httpx.AsyncClient, app_scheduler: Scheduler, async_db_session: AsyncSession
) -> None:
    response = await asgi_client.post(
        TASKS, json={"task_type": "non_agent", "input": {"cmd": "rotate-logs"}}
    )
    assert response.status_code == 201
    task_id = response.json()["id"]
    assert response.json()["status"] == "pending"

    await app_scheduler.wait_idle()

    fetched = await asgi_client.get(f"{TASKS}/{task_id}")
    assert fetched.status_code == 200
    assert fetched.json()["status"] == "done"
    assert json.loads(fetched.json()["result"]) == {"echo": {"cmd": "rotate-logs"}}
    row = await load_task(async_db_session, task_id)
    assert row is not None
    assert row.status == "done"
    assert row.updated_at >= row.created_at


async def test_rest_api_submit_agent_task(
    asgi_client: httpx.AsyncClient, app_scheduler: Scheduler, async_db_session: AsyncSession
) -> None:
    response = await asgi_client.post(
        TASKS,
        json={"task_type": "agent", "agent_name": "summarizer", "input": {"doc": "a", "n": 2}},
    )
    assert response.status_code == 201
    body = response.json()
    assert body["task_type"] == "agent"
    assert body["agent_name"] == "summarizer"

    await app_scheduler.wait_idle()

    fetched = (await asgi_client.get(f"{TASKS}/{body['id']}")).json()
    assert fetched["status"] == "done"
    assert json.loads(fetched["result"]) == {
        "agent": "summarizer",
        "output": "summarizer handled 2 field(s)",
    }
    row = await load_task(async_db_session, body["id"])
    assert row is not None
    assert (row.status, row.agent_name) == ("done", "summarizer")


async def test_rest_api_failed_task(
    asgi_client: httpx.AsyncClient, app_scheduler: Scheduler
) -> None:
    response = await asgi_client.post(
        TASKS, json={"task_type": "non_agent", "input": {"fail": True, "reason": "disk full"}}
    )
    assert response.status_code == 201

    await app_scheduler.wait_idle()

    fetched = (await asgi_client.get(f"{TASKS}/{response.json()['id']}")).json()
    assert fetched["status"] == "failed"
    assert fetched["result"] == "disk full"
    assert app_scheduler.failed_total == 1


async def test_grpc_api_submit_non_agent_task(
    task_stub: tasks_pb2_grpc.TaskServiceStub, worker: Scheduler, async_db_session: AsyncSession
) -> None:
    submitted = await task_stub.SubmitTask(
        tasks_pb2.SubmitTaskRequest(task_type="non_agent", input_json='{"ping": "db-1"}')
    )
    assert submitted.status == "pending"
    assert not submitted.HasField("result")
    row = await load_task(async_db_session, submitted.id)
    assert row is not None
    assert row.status == "pending"

    assert await worker.run_once() == 1

    fetched = await task_stub.GetTask(tasks_pb2.GetTaskRequest(task_id=submitted.id))
    assert fetched.status == "done"
    assert json.loads(fetched.result) == {"echo": {"ping": "db-1"}}
    assert fetched.created_at.ToDatetime() == submitted.created_at.ToDatetime()
    row = await load_task(async_db_session, submitted.id)
    assert row is not None
    assert row.status == "done"


async def test_grpc_api_submit_agent_task(
    task_stub: tasks_pb2_grpc.TaskServiceStub, worker: Scheduler, async_db_session: AsyncSession
) -> None:
    submitted = await task_stub.SubmitTask(
        tasks_pb2.SubmitTaskRequest(
            task_type="agent", agent_name="oncall-bot", input_json='{"alert": "cpu"}'
        )
    )
    assert submitted.task_type == "agent"
    assert submitted.agent_name == "oncall-bot"

    assert await worker.run_once() == 1
    assert await worker.run_once() == 0

    fetched = await task_stub.GetTask(tasks_pb2.GetTaskRequest(task_id=submitted.id))
    assert fetched.status == "done"
    assert json.loads(fetched.result)["agent"] == "oncall-bot"
    row = await load_task(async_db_session, submitted.id)
    assert row is not None
    assert row.status == "done"
    assert row.result == fetched.result


async def test_grpc_get_task_not_found(task_stub: tasks_pb2_grpc.TaskServiceStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as excinfo:
        await task_stub.GetTask(tasks_pb2.GetTaskRequest(task_id="no-such-task"))

    assert excinfo.value.code() == grpc.StatusCode.NOT_FOUND


async def test_grpc_submit_rejects_invalid_requests(
    task_stub: tasks_pb2_grpc.TaskServiceStub, async_db_session: AsyncSession
) -> None:
    requests = [
        tasks_pb2.SubmitTaskRequest(task_type="cron"),
        tasks_pb2.SubmitTaskRequest(task_type="non_agent", input_json="[1]"),
        tasks_pb2.SubmitTaskRequest(task_type="non_agent", input_json="{not json"),
        tasks_pb2.SubmitTaskRequest(task_type="agent", input_json="{}"),  # no agent_name
    ]
    for request in requests:
        with pytest.raises(grpc.aio.AioRpcError) as excinfo:
            await task_stub.SubmitTask(request)
        assert excinfo.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    assert await async_db_session.scalar(select(func.count()).select_from(Task)) == 0


async def test_rest_submit_scheduler_runs_it_grpc_reads_it(
    asgi_client: httpx.AsyncClient,
    app_scheduler: Scheduler,
    task_stub: tasks_pb2_grpc.TaskServiceStub,
) -> None:
    response = await asgi_client.post(
        TASKS, json={"task_type": "agent", "agent_name": "deployer", "input": {"svc": "api"}}
    )
    assert response.status_code == 201
    task_id = response.json()["id"]

    await app_scheduler.wait_idle()

    fetched = await task_stub.GetTask(tasks_pb2.GetTaskRequest(task_id=task_id))
    assert fetched.id == task_id
    assert fetched.status == "done"
    assert fetched.agent_name == "deployer"
    assert json.loads(fetched.input_json) == {"svc": "api"}
    assert json.loads(fetched.result)["output"] == "deployer handled 1 field(s)"


async def test_grpc_submit_app_scheduler_runs_it_rest_reads_it(
    asgi_client: httpx.AsyncClient,
    app_scheduler: Scheduler,
    task_stub: tasks_pb2_grpc.TaskServiceStub,
) -> None:
    submitted = await task_stub.SubmitTask(
        tasks_pb2.SubmitTaskRequest(task_type="non_agent", input_json='{"k": [1, 2]}')
    )

    await app_scheduler.wait_idle()

    fetched = await asgi_client.get(f"{TASKS}/{submitted.id}")
    assert fetched.status_code == 200
    assert fetched.json()["status"] == "done"
    assert fetched.json()["input"] == {"k": [1, 2]}
