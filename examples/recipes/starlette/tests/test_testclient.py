"""Starlette's own TestClient, as its testing docs write it. The app is async: a test that also reads or seeds
the database itself must be `async def` and use async_db_session (one test is one connection, and the app's
first use makes it an async one); tests that only go through the app stay plain `def`."""

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.testclient import TestClient

from todo.app import app
from todo.db import AuditEntry, Item, TodoList

client = TestClient(app)


async def test_create_list_and_its_audit_entry(async_db_session: AsyncSession):
    response = client.post("/lists", json={"slug": "groceries"})
    assert response.status_code == 201
    # the route's commit and the background task's are both in the database, in this test
    assert (await async_db_session.scalars(select(TodoList.slug))).all() == ["groceries"]
    assert (await async_db_session.scalars(select(AuditEntry.action))).all() == ["created groceries"]


def test_the_same_slug_in_another_test():
    assert client.post("/lists", json={"slug": "groceries"}).status_code == 201


async def test_duplicate_slug_is_409_and_writes_no_audit(async_db_session: AsyncSession):
    client.post("/lists", json={"slug": "chores"})
    assert client.post("/lists", json={"slug": "chores"}).status_code == 409
    assert (await async_db_session.scalars(select(AuditEntry.action))).all() == ["created chores"]


def test_bad_slug_is_400():
    assert client.post("/lists", json={"slug": "not a slug"}).status_code == 400


def test_missing_list_is_404():
    assert client.get("/lists/nope/items").status_code == 404
    assert client.post("/items/999999/done").status_code == 404


async def test_items_of_a_list_seeded_by_the_test(async_db_session: AsyncSession):
    todo_list = TodoList(slug="work")
    async_db_session.add(todo_list)
    await async_db_session.flush()
    async_db_session.add(Item(list_id=todo_list.id, text="write recipe"))
    await async_db_session.commit()  # commit before calling the app, as against a real server

    assert client.post("/lists/work/items", json={"text": "test recipe"}).status_code == 200
    items = client.get("/lists/work/items").json()
    assert [i["text"] for i in items] == ["write recipe", "test recipe"]

    assert client.post(f"/items/{items[0]['id']}/done").status_code == 204
    done = await async_db_session.scalars(select(Item.text).where(Item.done))
    assert done.all() == ["write recipe"]


def test_nothing_left_over():
    assert client.get("/lists/groceries/items").status_code == 404
    assert client.get("/lists/work/items").status_code == 404
