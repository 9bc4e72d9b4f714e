"""Litestar's AsyncTestClient against the app built on the test database; the test reads through
async_db_session, on the same sandbox connection as the plugin's sessions."""

from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from library.models import Author, Book

Client = AsyncTestClient[Litestar]


async def test_create_author(client: Client, async_db_session: AsyncSession):
    response = await client.post("/authors", json={"name": "Ursula K. Le Guin"})
    assert response.status_code == 201
    # what the plugin committed is in the database, in this test
    author = await async_db_session.get(Author, response.json()["id"])
    assert author is not None
    assert author.name == "Ursula K. Le Guin"
    assert author.created_at is not None  # the audit columns are filled in


async def test_the_same_name_in_another_test(client: Client):
    # test_create_author added this name too; in any order both pass
    assert (await client.post("/authors", json={"name": "Ursula K. Le Guin"})).status_code == 201


async def test_each_test_starts_empty(client: Client, async_db_session: AsyncSession):
    assert (await client.get("/authors")).json() == []
    assert await async_db_session.scalar(select(func.count()).select_from(Author)) == 0


async def test_duplicate_name_is_409_and_the_first_stays(client: Client):
    first = await client.post("/authors", json={"name": "Octavia E. Butler"})
    second = await client.post("/authors", json={"name": "Octavia E. Butler"})
    assert second.status_code == 409
    # the plugin rolled back the failed request's session only
    assert [a["id"] for a in (await client.get("/authors")).json()] == [first.json()["id"]]


async def test_missing_author_is_404(client: Client):
    assert (await client.get("/authors/999999")).status_code == 404
    assert (await client.delete("/authors/999999")).status_code == 404


async def test_invalid_body_is_400(client: Client, async_db_session: AsyncSession):
    assert (await client.post("/authors", json={"nom": "x"})).status_code == 400
    assert await async_db_session.scalar(select(func.count()).select_from(Author)) == 0


async def test_book_for_an_author_seeded_by_the_test(client: Client, async_db_session: AsyncSession):
    author = Author(name="Stanisław Lem")
    async_db_session.add(author)
    await async_db_session.flush()
    author_id = author.id  # read before commit(): async_db_session expires its objects on commit
    await async_db_session.commit()  # commit before calling the app, as against a real server

    created = await client.post("/books", json={"title": "Solaris", "author_id": author_id})
    assert created.status_code == 201
    assert created.json()["author_name"] == "Stanisław Lem"
    assert (await client.get(f"/authors/{author_id}")).json()["book_titles"] == ["Solaris"]
    assert await async_db_session.scalar(select(Book.title)) == "Solaris"


async def test_book_for_a_missing_author_is_409(client: Client, async_db_session: AsyncSession):
    # the foreign key is checked on every database (sqlsandbox turns SQLite's foreign keys on)
    response = await client.post("/books", json={"title": "Orphan", "author_id": 999999})
    assert response.status_code == 409
    assert await async_db_session.scalar(select(func.count()).select_from(Book)) == 0


async def test_plain_session_dependency(client: Client):
    await client.post("/authors", json={"name": "B"})
    await client.post("/authors", json={"name": "A"})
    assert (await client.get("/stats")).json() == {"authors": 2, "names": ["A", "B"]}
