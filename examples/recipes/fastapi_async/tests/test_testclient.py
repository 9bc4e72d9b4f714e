"""The same async app through Starlette's TestClient, as FastAPI's testing docs write it: plain `def` tests.
TestClient runs the app on an event loop of its own in another thread; the app's AsyncSessions still join
the test's sandbox there."""

from fastapi.testclient import TestClient

from notes.main import app

client = TestClient(app)


def test_create_and_read_author():
    created = client.post("/authors", json={"email": "ann@example.com", "name": "Ann"})
    assert created.status_code == 201
    fetched = client.get(f"/authors/{created.json()['id']}")
    assert fetched.status_code == 200
    assert fetched.json()["name"] == "Ann"


def test_the_same_email_in_another_test():
    assert client.post("/authors", json={"email": "ann@example.com", "name": "Ann"}).status_code == 201
    assert client.get("/authors").json()[0]["email"] == "ann@example.com"
    assert len(client.get("/authors").json()) == 1


def test_starts_empty():
    assert client.get("/authors").json() == []


def test_notes_and_404():
    author_id = client.post("/authors", json={"email": "e@example.com", "name": "E"}).json()["id"]
    assert client.post(f"/authors/{author_id}/notes", json={"text": "hello"}).status_code == 201
    assert [n["text"] for n in client.get(f"/authors/{author_id}/notes").json()] == ["hello"]
    assert client.get(f"/authors/{author_id + 1000}/notes").status_code == 404


def test_validation_error():
    response = client.post("/authors", json={"email": "e@example.com", "name": ""})
    assert response.status_code == 422
    assert client.get("/authors").json() == []


async def test_seeded_by_an_async_test(async_db_session):
    # an async test may seed through async_db_session and then call the app through TestClient
    # (TestClient blocks this test's loop while the app runs on its own)
    from notes.models import Author

    async_db_session.add(Author(email="f@example.com", name="F"))
    await async_db_session.commit()
    assert [a["name"] for a in client.get("/authors").json()] == ["F"]
