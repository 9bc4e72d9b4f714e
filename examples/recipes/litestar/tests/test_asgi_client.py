"""The same app through sqlsandbox's client for any ASGI app, sandbox.asgi_client(app) (httpx over ASGI in
the test's loop, the app's lifespan running from the first request until the test ends)."""

import pytest


@pytest.fixture
def client(sandbox, app):  # overrides conftest's AsyncTestClient for this module
    return sandbox.asgi_client(app)


async def test_create_then_list(client):
    assert (await client.post("/authors", json={"name": "N. K. Jemisin"})).status_code == 201
    assert [a["name"] for a in (await client.get("/authors")).json()] == ["N. K. Jemisin"]


async def test_nothing_left_from_the_other_test(client):
    assert (await client.get("/stats")).json() == {"authors": 0, "names": []}
