"""The admin on an async engine, through asgi_client in the test's own loop."""

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from main import User


async def test_create_and_list(asgi_client: httpx.AsyncClient, async_db_session: AsyncSession):
    response = await asgi_client.post("/admin/user/create", data={"name": "gus", "email": "gus@example.com"})
    assert response.status_code == 302
    assert (await async_db_session.scalars(select(User.email))).all() == ["gus@example.com"]
    assert "gus@example.com" in (await asgi_client.get("/admin/user/list")).text


async def test_the_same_name_in_another_test(asgi_client: httpx.AsyncClient):
    response = await asgi_client.post("/admin/user/create", data={"name": "gus", "email": "other@example.com"})
    assert response.status_code == 302


async def test_duplicate_is_400(asgi_client: httpx.AsyncClient, async_db_session: AsyncSession):
    await asgi_client.post("/admin/user/create", data={"name": "hal", "email": "first@example.com"})
    response = await asgi_client.post("/admin/user/create", data={"name": "hal", "email": "second@example.com"})
    assert response.status_code == 400
    assert (await async_db_session.scalars(select(User.email))).all() == ["first@example.com"]


async def test_missing_row_is_404(asgi_client: httpx.AsyncClient):
    assert (await asgi_client.get("/admin/user/details/999999")).status_code == 404
