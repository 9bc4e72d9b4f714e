"""REST endpoints /api/v1/tasks (the failures of seed 002, without any dependency override)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from ops_core.models import Task
from taskdata import load_all, load_task, make_task

TASKS = "/api/v1/tasks"


async def test_create_task_success(
    asgi_client: httpx.AsyncClient, async_db_session: AsyncSession
) -> None:
    response = await asgi_client.post(
        TASKS, json={"task_type": "non_agent", "input": {"query": "disk usage", "hosts": 3}}
    )

    assert response.status_code == 201
    body = response.json()
    assert uuid.UUID(body["id"])
    assert body["task_type"] == "non_agent"
    assert body["status"] == "pending"
    assert body["input"] == {"query": "disk usage", "hosts": 3}
    assert body["result"] is None
    assert body["agent_name"] is None
    row = await load_task(async_db_session, body["id"])
    assert row is not None
    assert row.task_type == "non_agent"
    assert json.loads(row.input_json) == {"query": "disk usage", "hosts": 3}


async def test_create_then_get_returns_the_same_task(asgi_client: httpx.AsyncClient) -> None:
    created = await asgi_client.post(
        TASKS, json={"task_type": "agent", "agent_name": "planner", "input": {"goal": "x"}}
    )
    assert created.status_code == 201

    fetched = await asgi_client.get(f"{TASKS}/{created.json()['id']}")

    assert fetched.status_code == 200
    body = fetched.json()
    assert body["id"] == created.json()["id"]
    assert body["agent_name"] == "planner"
    assert body["input"] == {"goal": "x"}
    assert body["status"] in {"pending", "running", "done"}  # the scheduler may have run it


async def test_create_task_rejects_invalid_requests(
    asgi_client: httpx.AsyncClient, async_db_session: AsyncSession
) -> None:
    bad_bodies = [
        {"task_type": "agent", "input": {}},  # agent without agent_name
        {"task_type": "cron", "input": {}},
        {"task_type": "non_agent", "input": [1, 2]},
        {"input": {}},
    ]
    for body in bad_bodies:
        response = await asgi_client.post(TASKS, json=body)
        assert response.status_code == 422, body

    assert await load_all(async_db_session) == []


async def test_get_task_success(
    asgi_client: httpx.AsyncClient, async_db_session: AsyncSession
) -> None:
    def seeded() -> Task:
        return make_task(
            1, task_type="agent", agent_name="triage", input_data={"ticket": 42}, result='{"ok": 1}'
        )

    async_db_session.add(seeded())
    await async_db_session.commit()
    expected = seeded()

    response = await asgi_client.get(f"{TASKS}/{expected.id}")

    assert response.status_code == 200
    assert response.json() == {
        "id": expected.id,
        "task_type": "agent",
        "status": "done",
        "input": {"ticket": 42},
        "result": '{"ok": 1}',
        "agent_name": "triage",
        "created_at": expected.created_at.isoformat(),
        "updated_at": expected.updated_at.isoformat(),
    }


async def test_get_task_not_found(asgi_client: httpx.AsyncClient) -> None:
    missing = str(uuid.uuid4())

    response = await asgi_client.get(f"{TASKS}/{missing}")

    assert response.status_code == 404
    assert missing in response.json()["detail"]


async def test_list_tasks_success_empty(asgi_client: httpx.AsyncClient) -> None:
    # Other tests commit tasks; each runs in its own rolled-back sandbox, so none is left here.
    response = await asgi_client.get(TASKS)

    assert response.status_code == 200
    assert response.json() == []


async def test_list_tasks_success_with_data(
    asgi_client: httpx.AsyncClient, async_db_session: AsyncSession
) -> None:
    async_db_session.add_all(
        [
            make_task(3, status="failed", result="boom"),
            make_task(1, status="done", result="{}"),
            make_task(2, task_type="agent", agent_name="a1", status="done", result="{}"),
        ]
    )
    await async_db_session.commit()

    response = await asgi_client.get(TASKS)

    assert response.status_code == 200
    body = response.json()
    assert [t["id"] for t in body] == [make_task(n).id for n in (1, 2, 3)]  # oldest first
    assert [t["status"] for t in body] == ["done", "done", "failed"]
    assert [t["input"] for t in body] == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert datetime.fromisoformat(body[0]["created_at"]) == make_task(1).created_at


async def test_list_tasks_filters_and_pages(
    asgi_client: httpx.AsyncClient, async_db_session: AsyncSession
) -> None:
    async_db_session.add_all(
        [make_task(n, status="failed" if n % 2 else "done", result="r") for n in range(1, 8)]
    )
    await async_db_session.commit()

    failed = await asgi_client.get(TASKS, params={"status": "failed"})
    page = await asgi_client.get(TASKS, params={"limit": 2, "offset": 3})
    bad = await asgi_client.get(TASKS, params={"status": "sleeping"})

    assert failed.status_code == 200
    assert [t["id"] for t in failed.json()] == [make_task(n).id for n in (1, 3, 5, 7)]
    assert page.status_code == 200
    assert [t["id"] for t in page.json()] == [make_task(n).id for n in (4, 5)]
    assert bad.status_code == 422


async def test_api_sees_rows_seeded_by_the_test(
    asgi_client: httpx.AsyncClient, async_db_session: AsyncSession
) -> None:
    """Rows committed by the test's session are what the app's own sessions read."""
    seeded = {make_task(n).id: f"r{n}" for n in range(10, 15)}
    async_db_session.add_all([make_task(n, status="done", result=f"r{n}") for n in range(10, 15)])
    await async_db_session.commit()

    listed = await asgi_client.get(TASKS)
    singles = {task_id: await asgi_client.get(f"{TASKS}/{task_id}") for task_id in seeded}

    assert listed.status_code == 200
    assert {t["id"]: t["result"] for t in listed.json()} == seeded
    assert {i: s.status_code for i, s in singles.items()} == dict.fromkeys(seeded, 200)
    assert {i: s.json()["result"] for i, s in singles.items()} == seeded
