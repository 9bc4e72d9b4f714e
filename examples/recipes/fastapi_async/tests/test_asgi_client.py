"""The async app through sqlsandbox's `asgi_client` (httpx over ASGI, in the test's own event loop), with the
test reading and seeding through `async_db_session`, on the same sandbox connection as the app's sessions."""

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from notes.models import Author, Note


async def test_create_author(asgi_client: httpx.AsyncClient, async_db_session: AsyncSession):
    response = await asgi_client.post("/authors", json={"email": "ann@example.com", "name": "Ann"})
    assert response.status_code == 201
    body = response.json()
    assert body["email"] == "ann@example.com"
    # what the route committed is in the database, in this test
    author = await async_db_session.get(Author, body["id"])
    assert author is not None
    assert author.name == "Ann"


async def test_the_same_email_in_another_test(asgi_client: httpx.AsyncClient):
    # test_create_author registered ann@example.com too; in any order both pass
    response = await asgi_client.post("/authors", json={"email": "ann@example.com", "name": "Another Ann"})
    assert response.status_code == 201


async def test_each_test_starts_empty(asgi_client: httpx.AsyncClient, async_db_session: AsyncSession):
    assert (await asgi_client.get("/authors")).json() == []
    assert await async_db_session.scalar(select(func.count()).select_from(Author)) == 0


async def test_duplicate_email_is_409_and_the_first_stays(asgi_client: httpx.AsyncClient):
    first = await asgi_client.post("/authors", json={"email": "bob@example.com", "name": "Bob"})
    second = await asgi_client.post("/authors", json={"email": "bob@example.com", "name": "Bobby"})
    assert second.status_code == 409
    assert [a["id"] for a in (await asgi_client.get("/authors")).json()] == [first.json()["id"]]


async def test_invalid_email_is_422(asgi_client: httpx.AsyncClient, async_db_session: AsyncSession):
    response = await asgi_client.post("/authors", json={"email": "not an email", "name": "X"})
    assert response.status_code == 422
    assert await async_db_session.scalar(select(func.count()).select_from(Author)) == 0


async def test_missing_author_is_404(asgi_client: httpx.AsyncClient):
    assert (await asgi_client.get("/authors/999999")).status_code == 404
    response = await asgi_client.post("/authors/999999/notes", json={"text": "orphan"})
    assert response.status_code == 404


async def test_notes_of_an_author_seeded_by_the_test(
    asgi_client: httpx.AsyncClient, async_db_session: AsyncSession
):
    author = Author(email="cy@example.com", name="Cy", notes=[Note(text="first")])
    async_db_session.add(author)
    await async_db_session.flush()
    author_id = author.id  # read before commit(): async_db_session expires its objects on commit
    await async_db_session.commit()  # commit before calling the app, as against a real server

    added = await asgi_client.post(f"/authors/{author_id}/notes", json={"text": "second"})
    assert added.status_code == 201

    notes = (await asgi_client.get(f"/authors/{author_id}/notes")).json()
    assert [n["text"] for n in notes] == ["first", "second"]
    listed = (await asgi_client.get("/authors")).json()
    assert listed == [{"id": author_id, "email": "cy@example.com", "name": "Cy", "note_count": 2}]


async def test_delete_author_takes_the_notes(asgi_client: httpx.AsyncClient, async_db_session: AsyncSession):
    author_id = (await asgi_client.post("/authors", json={"email": "d@example.com", "name": "D"})).json()["id"]
    await asgi_client.post(f"/authors/{author_id}/notes", json={"text": "bye"})

    assert (await asgi_client.delete(f"/authors/{author_id}")).status_code == 204

    assert await async_db_session.scalar(select(func.count()).select_from(Note)) == 0
    assert (await asgi_client.get(f"/authors/{author_id}")).status_code == 404
