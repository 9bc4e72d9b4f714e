"""The same app through sqlsandbox's asgi_client, in the test's own loop, reading through async_db_session."""

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from todo.db import AuditEntry, TodoList


async def test_create_list(asgi_client: httpx.AsyncClient, async_db_session: AsyncSession):
    assert (await asgi_client.post("/lists", json={"slug": "groceries"})).status_code == 201
    assert (await async_db_session.scalars(select(TodoList.slug))).all() == ["groceries"]
    assert (await async_db_session.scalars(select(AuditEntry.action))).all() == ["created groceries"]


async def test_the_same_slug_again(asgi_client: httpx.AsyncClient):
    assert (await asgi_client.post("/lists", json={"slug": "groceries"})).status_code == 201
    assert (await asgi_client.post("/lists", json={"slug": "groceries"})).status_code == 409


async def test_items_and_404(asgi_client: httpx.AsyncClient):
    await asgi_client.post("/lists", json={"slug": "work"})
    await asgi_client.post("/lists/work/items", json={"text": "a"})
    assert [i["text"] for i in (await asgi_client.get("/lists/work/items")).json()] == ["a"]
    assert (await asgi_client.get("/lists/home/items")).status_code == 404
