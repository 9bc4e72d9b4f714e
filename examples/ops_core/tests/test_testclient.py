"""Seeds 002 and 004 as their tests were first written: Starlette's TestClient, which runs the app
(its lifespan and scheduler included) on a loop of its own in another thread, next to the test's own
session.

With every async driver sqlsandbox supports, the sandbox's async connection serves every loop,
so this passes as written. Only a driver sqlsandbox does not know would belong to the loop that
opened it: there these tests are skipped (the README's "Async drivers and event loops" says why;
the same tests through asgi_client are test_api_tasks.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.ext.asyncio import AsyncSession

from ops_core.api import app
from taskdata import make_task

TASKS = "/api/v1/tasks"


@pytest.fixture
def client(sandbox) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    if not sandbox.db.async_loop_free:
        pytest.skip("this async driver's connection belongs to one loop: use asgi_client instead")
    with TestClient(app) as client:
        yield client


def test_get_task_not_found(client: TestClient) -> None:
    response = client.get(f"{TASKS}/00000000-0000-4000-8000-000000000000")
    assert response.status_code == 404


def test_list_tasks_success_empty(client: TestClient) -> None:
    response = client.get(TASKS)
    assert response.status_code == 200
    assert response.json() == []


async def test_list_tasks_success_with_data(
    client: TestClient, async_db_session: AsyncSession
) -> None:
    async_db_session.add_all([make_task(1), make_task(2)])
    await async_db_session.commit()

    response = client.get(TASKS)

    assert response.status_code == 200
    assert sorted(task["id"] for task in response.json()) == [make_task(1).id, make_task(2).id]


def test_rest_api_submit_non_agent_task(client: TestClient) -> None:
    """Seed 004's 'Future attached to a different loop': the request and the scheduler, both on
    TestClient's loop, and the test's thread reading the outcome."""
    payload = {"task_type": "non_agent", "input": {"query": "disk usage"}}
    submitted = client.post(TASKS, json=payload)
    assert submitted.status_code == 201
    assert client.portal is not None
    # on the app's loop, where the scheduler runs
    client.portal.call(app.state.scheduler.wait_idle, 30)

    fetched = client.get(f"{TASKS}/{submitted.json()['id']}")

    assert fetched.status_code == 200
    assert fetched.json()["status"] == "done"
    assert fetched.json()["input"] == {"query": "disk usage"}
